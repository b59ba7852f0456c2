//! `reconciler`: chases overdue instances until SIGINT/SIGTERM; see [`reconciler::Config`] for
//! its settings; `/metrics` on `MILESTONE_RECONCILER_METRICS_ADDR` when it is set.

use anyhow::Context;
use reconciler::{Config, Reconciler};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let config = Config::from_env().context("reading the reconciler's settings")?;
    let reconciler = Reconciler::connect(config)
        .await
        .context("starting the reconciler")?;
    reconciler::metrics::register();
    let listener =
        service_kit::metrics::http::MetricsServer::from_env(reconciler::metrics::METRICS_ADDR_VAR)?;
    reconciler.run(service_kit::shutdown_signal()).await;
    if let Some(listener) = listener {
        listener.stop().await;
    }
    tracing::info!("reconciler stopped");
    service_kit::shutdown_tracing();
    Ok(())
}
