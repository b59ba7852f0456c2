use anyhow::Context;
use query_api::{config::Config, startup::Application};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let app = Application::build(config.clone()).context("starting the query API")?;
    tracing::info!(addr = %config.listen, port = app.port(), "query API listening");
    app.run_until_stopped().await?;
    tracing::info!("query API stopped");
    Ok(())
}
