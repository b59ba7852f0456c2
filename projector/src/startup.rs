//! Wiring: the command line, the logs, the projections and what each command does with them.

use crate::config::Config;
use crate::db::RepairNote;
use crate::projection::{Progress, Projector};
use anyhow::Context;
use uuid::Uuid;

/// `projector [run | rebuild | retry <order-id> [--reason <text>]]`.
#[derive(Debug, clap::Parser)]
#[command(name = "projector", about = "Keeps Milestone's read models")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Follow the log and keep the read models (standby while another instance runs).
    Run,
    /// Empty the read models and replay the whole log, with progress.
    Rebuild,
    /// Re-apply an order's dead-lettered events after a fix; an edited payload is kept as a
    /// correction (by `$USER`, for the reason given).
    Retry {
        /// The parked order's id.
        id: Uuid,
        /// Why the events were edited, kept with the correction.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// JSON logs on stderr, `RUST_LOG` or `info`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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

/// The connected projections, ready for a command.
pub struct Application {
    projector: Projector,
}

impl Application {
    /// Connects to the event store and the read-model database and applies the migrations.
    ///
    /// # Errors
    /// When either cannot be reached or a migration fails.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let projector = Projector::connect(config)
            .await
            .context("starting the projector")?;
        Ok(Self { projector })
    }

    /// Carries out `command` (`run` when none is given).
    ///
    /// # Errors
    /// What the command ran into, with its context.
    pub async fn execute(self, command: Option<Command>) -> anyhow::Result<()> {
        match command.unwrap_or(Command::Run) {
            Command::Run => {
                // A checkpoint from the other event store is a configuration error: say so and stop.
                self.projector
                    .checkpoint()
                    .await
                    .context("resuming the projection")?;
                self.projector.run(shutdown_signal()).await;
                tracing::info!("projector stopped");
            }
            Command::Rebuild => {
                let total = self
                    .projector
                    .rebuild(print_progress)
                    .await
                    .context("rebuilding the read models")?;
                println!("rebuild done: {total} events replayed");
            }
            Command::Retry { id, reason } => {
                let note = RepairNote {
                    by: std::env::var("USER").ok(),
                    reason,
                };
                let applied = self
                    .projector
                    .retry_parked_noting(id, &note)
                    .await
                    .context("retrying the parked order")?;
                println!(
                    "order {id}: {applied} parked event(s) applied; the order is no longer parked"
                );
            }
        }
        Ok(())
    }
}

fn print_progress(p: Progress) {
    let rate = p.events as f64 / p.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "rebuild: {} events, {rate:.0} events/s, at {:?}",
        p.events,
        p.position.map(|p| p.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn no_command_means_run() {
        let cli = Cli::try_parse_from(["projector"]).unwrap();
        assert_eq!(cli.command, None);
        let cli = Cli::try_parse_from(["projector", "run"]).unwrap();
        assert_eq!(cli.command, Some(Command::Run));
    }

    #[test]
    fn retry_takes_an_order_id_and_an_optional_reason() {
        let id = Uuid::new_v4();
        let cli = Cli::try_parse_from([
            "projector",
            "retry",
            &id.to_string(),
            "--reason",
            "fixed the amount",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Retry {
                id,
                reason: Some("fixed the amount".into())
            })
        );
    }

    #[test]
    fn retry_of_something_that_is_not_an_order_id_is_refused_naming_the_argument() {
        let err = Cli::try_parse_from(["projector", "retry", "order-7"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("order-7"), "{err}");
    }
}
