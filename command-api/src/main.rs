use anyhow::Context;
use command_api::{config::Config, startup::Application};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let app = Application::build(config.clone())
        .await
        .context("starting the command API")?;
    tracing::info!(addr = %config.listen, port = app.port(), "command API listening");
    app.run_until_stopped().await?;
    tracing::info!("command API stopped");
    service_kit::shutdown_tracing();
    Ok(())
}
