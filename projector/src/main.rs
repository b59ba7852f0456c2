//! `projector [run]`, `projector rebuild`, `projector retry <order-id> [--reason <text>]`:
//! see [`projector::startup::Command`].

use clap::Parser;
use projector::startup::{init_logs, Application, Cli};
use projector::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logs();
    let cli = Cli::parse();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    Application::build(config).await?.execute(cli.command).await
}
