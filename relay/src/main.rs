//! `relay`: publishes the order and return workflows' integration events and work requests to
//! NATS JetStream (see the README's integration section). Configuration: [`relay::Config`];
//! `/metrics` on `MILESTONE_RELAY_METRICS_ADDR` when it is set.

use domain::{Orders, Returns};
use relay::{Config, Relay};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let store = event_store::connect(
        config.event_store_url.expose(),
        &event_store::StoreOptions {
            pool_size: config.pool_size,
        },
    )
    .await?;
    let jetstream = relay::publisher::connect_configured(&config).await?;
    let owner = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".to_owned()),
        std::process::id()
    );
    let orders =
        Arc::new(Relay::<Orders>::start(config.clone(), store.clone(), jetstream.clone()).await?);
    let returns = Arc::new(Relay::<Returns>::start(config, store, jetstream).await?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let o = {
        let (relay, owner, w) = (orders.clone(), owner.clone(), wait(stopped.clone()));
        tokio::spawn(async move { relay.run(&owner, w).await })
    };
    let r = {
        let (relay, owner, w) = (returns.clone(), owner.clone(), wait(stopped.clone()));
        tokio::spawn(async move { relay.run(&owner, w).await })
    };
    relay::metrics::register();
    let listener =
        service_kit::metrics::http::MetricsServer::from_env(relay::metrics::METRICS_ADDR_VAR)?;
    let sampler = listener.as_ref().map(|_| {
        let (orders, returns) = (orders.clone(), returns.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(relay::metrics::SAMPLE_EVERY);
            loop {
                every.tick().await;
                for sampled in [
                    orders.sample_metrics().await,
                    returns.sample_metrics().await,
                ] {
                    if let Err(e) = sampled {
                        tracing::debug!(error = %e, "cannot measure the relay's lag");
                    }
                }
            }
        })
    });
    service_kit::shutdown_signal().await;
    let _ = stop.send(true);
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    o.await??;
    r.await??;
    tracing::info!("relay stopped");
    service_kit::shutdown_tracing();
    Ok(())
}
