//! `projector [run]`, `projector rebuild`, `projector retry <order-id> [--reason <text>]`:
//! see [`projector::startup::Command`].

use clap::Parser;
use projector::startup::{Application, Cli};
use projector::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let cli = Cli::parse();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let outcome = Application::build(config).await?.execute(cli.command).await;
    service_kit::shutdown_tracing();
    outcome
}
