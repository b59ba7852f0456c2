//! Wiring: the command line, the projections and what each command does with them.

use crate::config::Config;
use crate::db::RepairNote;
use crate::orders::OrderProjection;
use crate::projection::{Progress, Projection};
use crate::returns::ReturnProjection;
use crate::runtime::{Runtime, Switched};
use crate::ProjectorError;
use anyhow::Context;
use event_store::Position;
use futures::future::{BoxFuture, FutureExt, Shared};
use service_kit::shutdown_signal;
use uuid::Uuid;

/// Every projection this binary keeps: adding one is one line here and its descriptor in
/// [`crate::PROJECTIONS`].
pub async fn register(config: &Config) -> Result<Vec<Box<dyn Registered>>, ProjectorError> {
    let registered = vec![
        start(
            config,
            OrderProjection::new(config.deadlines.clone())
                .with_reminder_spacing(config.reminder_spacing),
        )
        .await?,
        start(
            config,
            ReturnProjection::from_env()?.with_reminder_spacing(config.reminder_spacing),
        )
        .await?,
    ];
    let names: Vec<&str> = registered.iter().map(|p| p.name()).collect();
    let described: Vec<&str> = crate::PROJECTIONS.iter().map(|d| d.name).collect();
    if names != described {
        return Err(ProjectorError::Corrupt(format!(
            "the projections started ({names:?}) are not the ones described in PROJECTIONS ({described:?})"
        )));
    }
    Ok(registered)
}

async fn start<P: Projection>(
    config: &Config,
    projection: P,
) -> Result<Box<dyn Registered>, ProjectorError> {
    Ok(Box::new(Runtime::start(config.clone(), projection).await?))
}

/// A shutdown signal every projection's live loop waits on.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// A registered projection's runtime, whatever its projection.
pub trait Registered: Send + Sync {
    fn name(&self) -> &'static str;
    fn checkpoint(&self) -> BoxFuture<'_, Result<Option<Position>, ProjectorError>>;
    fn run(&self, shutdown: Shutdown) -> BoxFuture<'_, ()>;
    fn rebuild<'a>(
        &'a self,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> BoxFuture<'a, Result<u64, ProjectorError>>;
    /// [`Runtime::rebuild_blue_green`].
    fn rebuild_blue_green<'a>(
        &'a self,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> BoxFuture<'a, Result<Switched, ProjectorError>>;
    /// [`Runtime::rollback`].
    fn rollback<'a>(
        &'a self,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> BoxFuture<'a, Result<Switched, ProjectorError>>;
    fn retry<'a>(
        &'a self,
        id: Uuid,
        note: &'a RepairNote,
    ) -> BoxFuture<'a, Result<usize, ProjectorError>>;
    fn sample_metrics(&self) -> BoxFuture<'_, Result<(), ProjectorError>>;
}

impl<P: Projection> Registered for Runtime<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn checkpoint(&self) -> BoxFuture<'_, Result<Option<Position>, ProjectorError>> {
        Runtime::checkpoint(self).boxed()
    }
    fn run(&self, shutdown: Shutdown) -> BoxFuture<'_, ()> {
        Runtime::run(self, shutdown).boxed()
    }
    fn rebuild<'a>(
        &'a self,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> BoxFuture<'a, Result<u64, ProjectorError>> {
        Runtime::rebuild(self, progress).boxed()
    }
    fn rebuild_blue_green<'a>(
        &'a self,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> BoxFuture<'a, Result<Switched, ProjectorError>> {
        Runtime::rebuild_blue_green(self, progress).boxed()
    }
    fn rollback<'a>(
        &'a self,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> BoxFuture<'a, Result<Switched, ProjectorError>> {
        Runtime::rollback(self, progress).boxed()
    }
    fn retry<'a>(
        &'a self,
        id: Uuid,
        note: &'a RepairNote,
    ) -> BoxFuture<'a, Result<usize, ProjectorError>> {
        Runtime::retry_parked_noting(self, id, note).boxed()
    }
    fn sample_metrics(&self) -> BoxFuture<'_, Result<(), ProjectorError>> {
        Runtime::sample_metrics(self).boxed()
    }
}

/// What a retry did in one projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The projection that had parked the instance, e.g. `order_status`.
    pub projection: &'static str,
    /// How many of its dead-lettered events applied.
    pub applied: usize,
}

/// Retries instance `id`'s dead-lettered events in every projection that parked it (an order
/// and its return case share their id), as the command line's `retry` and the query API's
/// repair do.
///
/// # Errors
/// [`ProjectorError::NotParked`] when no projection has it parked; the first other failure
/// ([`ProjectorError::StillFailing`], say), the projections before it retried already.
pub async fn retry_parked(
    projections: &[Box<dyn Registered>],
    id: Uuid,
    note: &RepairNote,
) -> Result<Vec<Retried>, ProjectorError> {
    let mut retried = Vec::new();
    for projection in projections {
        match projection.retry(id, note).await {
            Err(ProjectorError::NotParked(_)) => {}
            Err(e) => return Err(e),
            Ok(applied) => retried.push(Retried {
                projection: projection.name(),
                applied,
            }),
        }
    }
    if retried.is_empty() {
        return Err(ProjectorError::NotParked(id));
    }
    Ok(retried)
}

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

/// The connected projections, ready for a command.
pub struct Application {
    projections: Vec<Box<dyn Registered>>,
}

impl Application {
    /// Connects to the event store and the read-model database and applies the migrations.
    ///
    /// # Errors
    /// When either cannot be reached or a migration fails.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let projections = register(&config).await.context("starting the projector")?;
        Ok(Self { projections })
    }

    /// Carries out `command` (`run` when none is given).
    ///
    /// # Errors
    /// What the command ran into, with its context.
    pub async fn execute(self, command: Option<Command>) -> anyhow::Result<()> {
        match command.unwrap_or(Command::Run) {
            Command::Run => {
                // A checkpoint from the other event store is a configuration error: say so and stop.
                for projection in &self.projections {
                    projection
                        .checkpoint()
                        .await
                        .with_context(|| format!("resuming projection {}", projection.name()))?;
                }
                let shutdown: Shutdown = shutdown_signal().boxed().shared();
                crate::metrics::register();
                let listener = service_kit::metrics::http::MetricsServer::from_env(
                    crate::metrics::METRICS_ADDR_VAR,
                )?;
                let run = futures::future::join_all(
                    self.projections.iter().map(|p| p.run(shutdown.clone())),
                );
                match &listener {
                    Some(_) => {
                        tokio::select! {
                            _ = run => {}
                            () = sample_metrics_forever(&self.projections) => {}
                        }
                    }
                    None => {
                        run.await;
                    }
                }
                if let Some(listener) = listener {
                    listener.stop().await;
                }
                tracing::info!("projector stopped");
            }
            Command::Rebuild => {
                for projection in &self.projections {
                    let total = projection
                        .rebuild(&mut print_progress)
                        .await
                        .with_context(|| format!("rebuilding projection {}", projection.name()))?;
                    println!(
                        "rebuild of {} done: {total} events replayed",
                        projection.name()
                    );
                }
            }
            Command::Retry { id, reason } => {
                let note = RepairNote {
                    by: std::env::var("USER").ok(),
                    reason,
                };
                let retried = retry_parked(&self.projections, id, &note)
                    .await
                    .with_context(|| format!("retrying the parked events of {id}"))?;
                let applied: usize = retried.iter().map(|r| r.applied).sum();
                println!("{id}: {applied} parked event(s) applied; it is no longer parked");
            }
        }
        Ok(())
    }
}

/// Measures every projection's lag and parked streams for the metrics, every
/// [`crate::metrics::SAMPLE_EVERY`]; never returns.
async fn sample_metrics_forever(projections: &[Box<dyn Registered>]) {
    let mut every = tokio::time::interval(crate::metrics::SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for projection in projections {
            if let Err(e) = projection.sample_metrics().await {
                tracing::debug!(projection = projection.name(), error = %e, "cannot measure the projection's lag");
            }
        }
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
