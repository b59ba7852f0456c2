use anyhow::Context;
use query_api::{config::Config, startup::Application};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let app = Application::build(config.clone()).context("starting the query API")?;
    tracing::info!(addr = %config.listen, port = app.port(), "query API listening");
    app.run_until_stopped().await?;
    tracing::info!("query API stopped");
    service_kit::shutdown_tracing();
    Ok(())
}
