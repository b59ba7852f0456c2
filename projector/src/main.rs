//! `projector`            follow the log and keep the read models (standby if another runs)
//! `projector rebuild`    empty the read models and replay the whole log, with progress
//! `projector retry <id> [--reason <text>]`
//!                        re-apply an order's dead-lettered events after a fix; an edited
//!                        payload is kept as a correction (by `$USER`, for the reason given)

use anyhow::Context;
use projector::{Config, Projector};

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logs();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let projector = Projector::connect(config)
        .await
        .context("starting the projector")?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["run"] => {
            // A checkpoint from the other event store is a configuration error: say so and stop.
            projector
                .checkpoint()
                .await
                .context("resuming the projection")?;
            projector.run(shutdown_signal()).await;
            tracing::info!("projector stopped");
        }
        ["rebuild"] => {
            let total = projector
                .rebuild(|p| {
                    let rate = p.events as f64 / p.elapsed.as_secs_f64().max(1e-9);
                    eprintln!(
                        "rebuild: {} events, {rate:.0} events/s, at {:?}",
                        p.events,
                        p.position.map(|p| p.to_string())
                    );
                })
                .await
                .context("rebuilding the read models")?;
            println!("rebuild done: {total} events replayed");
        }
        ["retry", id, rest @ ..] => {
            let id = uuid::Uuid::parse_str(id)
                .with_context(|| format!("'{id}' is not an order id (a UUID)"))?;
            let reason = match rest {
                [] => None,
                ["--reason", reason] => Some((*reason).to_owned()),
                _ => anyhow::bail!("usage: projector retry <order-id> [--reason <text>]"),
            };
            let note = projector::db::RepairNote {
                by: std::env::var("USER").ok(),
                reason,
            };
            let applied = projector
                .retry_parked_noting(id, &note)
                .await
                .context("retrying the parked order")?;
            println!(
                "order {id}: {applied} parked event(s) applied; the order is no longer parked"
            );
        }
        _ => anyhow::bail!("usage: projector [run | rebuild | retry <order-id> [--reason <text>]]"),
    }
    Ok(())
}
