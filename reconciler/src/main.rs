//! `reconciler`: chases overdue instances until SIGINT/SIGTERM; see [`reconciler::Config`] for
//! its settings.

use anyhow::Context;
use reconciler::{Config, Reconciler};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let config = Config::from_env().context("reading the reconciler's settings")?;
    let reconciler = Reconciler::connect(config)
        .await
        .context("starting the reconciler")?;
    reconciler.run(service_kit::shutdown_signal()).await;
    service_kit::shutdown_tracing();
    Ok(())
}
