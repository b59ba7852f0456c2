//! The reconciler: the asynchronous tempo's clock. Every interval it reads the instances whose
//! next reminder is due from the read models (`next_reminder_at`, which the projector derives
//! from the same deadlines as the stalled lists), and for each, through the command API's own
//! pipeline, records the next reminder of every pending action, or escalates the instance once
//! K reminders went unanswered. Each command's causation is the run's id, its correlation the
//! instance's own.
//!
//! The workflow's rules make a repeat harmless (a reminder names its attempt and is recorded
//! once; a step is escalated once), so a crash mid-run and a restart record nothing twice. A
//! lease keeps a single instance active anyway, with hot standbys like the projector's.
//! `metrics` counts the reminders, escalations and failures.

#![forbid(unsafe_code)]

pub mod chased;
pub mod config;
pub mod metrics;

pub use chased::Chased;
pub use config::{Config, ConfigError};

use crate::metrics::{ChasedLabels, METRICS};

use chrono::{DateTime, Utc};
use command_api::error::ApiError;
use command_api::service::{command_span, decode, execute, CommandContext};
use domain::{Label, Orders, Reason, Returns};
use event_store::{
    read_whole_stream, EventStore, Principal, RecordedEvent, StoreError, StoreOptions,
};
use projector::lease::Lease;
use service_kit::trace::{self, TraceContext};
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

/// The lease's name in `projection_leases`.
pub const LEASE: &str = "reconciler";

/// Who the reconciler's events are recorded as caused by: the service itself.
pub fn principal() -> Principal {
    Principal {
        subject: "reconciler".to_owned(),
        role: "service".to_owned(),
        client: None,
    }
}

/// Why a run or the start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcilerError {
    #[error("the event store cannot be reached")]
    Store(#[from] StoreError),
    #[error("the read-model database cannot be set up")]
    Pool(#[from] service_kit::postgres::PoolSetupError),
    #[error("the read-model database cannot be reached")]
    Connection(#[from] deadpool_postgres::PoolError),
    #[error("the read models cannot be read (has the projector created them?)")]
    ReadModels(#[from] tokio_postgres::Error),
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Reminders recorded.
    pub reminders: usize,
    /// Escalations recorded.
    pub escalations: usize,
    /// Instances due whose command was refused or failed (logged; chased again next run).
    pub failures: usize,
}

/// A connected reconciler.
pub struct Reconciler {
    config: Config,
    store: Arc<dyn EventStore>,
    read_models: deadpool_postgres::Pool,
    lease_config: tokio_postgres::Config,
}

impl Reconciler {
    /// Connects to the event store and the read-model database (lazily for the latter).
    ///
    /// # Errors
    /// When the event store cannot be reached or a URL does not parse.
    pub async fn connect(config: Config) -> Result<Self, ReconcilerError> {
        let store = event_store::connect(
            config.event_store_url.expose(),
            &StoreOptions {
                pool_size: config.pool_size,
            },
        )
        .await?;
        let (read_models, lease_config) =
            service_kit::postgres::build_pool(config.read_model_url.expose(), config.pool_size)?;
        Ok(Self {
            config,
            store,
            read_models,
            lease_config,
        })
    }

    /// Runs until `shutdown` resolves: waits for the lease (standing by while another
    /// reconciler holds it), then runs every interval while the lease is held. A run in
    /// progress finishes before shutting down; the lease is released on the way out.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let lease = tokio::select! {
                lease = Lease::acquire(
                    &self.lease_config,
                    LEASE,
                    self.config.lease_ttl,
                    self.config.standby_poll,
                ) => lease,
                () = &mut shutdown => return,
            };
            tracing::info!(token = lease.token(), "active reconciler");
            loop {
                if !lease.is_held() {
                    break;
                }
                match self.run_once().await {
                    Ok(report) if report != RunReport::default() => {
                        tracing::info!(?report, "reconciliation run")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reconciliation run failed; retrying"),
                }
                tokio::select! {
                    () = tokio::time::sleep(self.config.interval) => {}
                    () = lease.lost() => break,
                    () = &mut shutdown => return,
                }
            }
            tracing::warn!("the reconciler's lease was lost; standing by");
        }
    }

    /// One reconciliation run over every workflow.
    ///
    /// # Errors
    /// When the read models cannot be read; a single instance's failure is counted instead.
    pub async fn run_once(&self) -> Result<RunReport, ReconcilerError> {
        let run = Uuid::new_v4();
        let span = tracing::info_span!(
            parent: None,
            "reconciler.run",
            run = %run,
            reminders = tracing::field::Empty,
            escalations = tracing::field::Empty,
            failures = tracing::field::Empty,
        );
        let mut report = RunReport::default();
        async {
            self.chase_all::<Orders>(run, &mut report).await?;
            self.chase_all::<Returns>(run, &mut report).await
        }
        .instrument(span.clone())
        .await?;
        span.record("reminders", report.reminders);
        span.record("escalations", report.escalations);
        span.record("failures", report.failures);
        Ok(report)
    }

    /// Chases every instance of `W` that is due, `batch_size` at a time, in
    /// order of `(next_reminder_at, id)`: each page starts after the last row of the one
    /// before, so rows skipped every run (a parked stream, a row trailing its stream, an
    /// instance refused) cannot fill every page and keep later ones from being chased.
    async fn chase_all<W: Chased>(
        &self,
        run: Uuid,
        report: &mut RunReport,
    ) -> Result<(), ReconcilerError> {
        let mut after: Option<(DateTime<Utc>, Uuid)> = None;
        loop {
            let client = self.read_models.get().await?;
            let page = client
                .query(
                    &format!(
                        "select order_id, stream_revision, next_reminder_at from {}
                         where next_reminder_at <= now()
                           and ($2::timestamptz is null or (next_reminder_at, order_id) > ($2, $3))
                         order by next_reminder_at, order_id limit $1",
                        W::STATUS_TABLE
                    ),
                    &[
                        &self.config.batch_size,
                        &after.map(|(at, _)| at),
                        &after.map(|(_, id)| id),
                    ],
                )
                .await?;
            drop(client);
            for row in &page {
                let uuid = row.get::<_, Uuid>("order_id");
                let id = W::id_from_uuid(uuid);
                let seen = row.get::<_, i64>("stream_revision");
                after = Some((row.get("next_reminder_at"), uuid));
                if let Err(e) = self.chase::<W>(id, seen, run, report).await {
                    report.failures += 1;
                    METRICS.failures.get_or_create(&Self::labels::<W>()).inc();
                    tracing::warn!(workflow = W::NAME, instance = %id, error = %e, "cannot chase");
                }
            }
            if page.len() < usize::try_from(self.config.batch_size).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
    }

    /// Records what is due for one instance, decided on its stream as it is now. The read
    /// model said it was due at its revision `seen`; when the stream has moved on since (the
    /// projector has not applied the latest events yet), its deadline may have moved too, and
    /// the instance waits for the next run.
    fn labels<W: Chased>() -> ChasedLabels {
        ChasedLabels { workflow: W::NAME }
    }

    async fn chase<W: Chased>(
        &self,
        id: W::Id,
        seen: i64,
        run: Uuid,
        report: &mut RunReport,
    ) -> Result<(), ApiError> {
        let history = read_whole_stream(self.store.as_ref(), &W::stream_name(id)).await?;
        if history.last().map(|e| e.revision) != u64::try_from(seen).ok() {
            return Ok(());
        }
        let span = chase_span::<W>(id, &history);
        self.remind_or_escalate::<W>(id, &history, run, report)
            .instrument(span)
            .await
    }

    /// What [`Reconciler::chase`] records, decided on the instance's `history`.
    async fn remind_or_escalate<W: Chased>(
        &self,
        id: W::Id,
        history: &[RecordedEvent],
        run: Uuid,
        report: &mut RunReport,
    ) -> Result<(), ApiError> {
        let events = decode::<W>(id, history)?;
        let state = W::rebuild(&events);
        let (Some(follow_up), Some(step)) = (W::follow_up(&state), W::deadline_step(&state)) else {
            return Ok(());
        };
        if follow_up.escalated_in(Some(step)) {
            return Ok(());
        }
        let reminders = follow_up.reminders();
        if reminders > 0 {
            // The last reminder's time, from the stream: the read model may not show it yet.
            let last = history
                .iter()
                .zip(&events)
                .rev()
                .find(|(_, e)| W::reminder(e).is_some())
                .map(|(r, _)| r.metadata.occurred_at.unwrap_or(r.recorded_at));
            if last.is_some_and(|last| Utc::now() < last + self.config.reminder_spacing) {
                return Ok(());
            }
        }
        let ctx = CommandContext {
            idempotency_key: None,
            if_match: None,
            correlation_id: history
                .first()
                .and_then(|e| e.metadata.correlation_id.clone())
                .unwrap_or_else(|| run.to_string()),
            request_hash: None,
            causation_id: Some(run.to_string()),
            principal: Some(principal()),
        };
        let pending = W::pending_actions(&state);
        if reminders >= self.config.max_reminders {
            let reason = escalation_reason(&pending, self.config.max_reminders);
            let done = execute(self.store.as_ref(), id, W::escalate(reason), &ctx)
                .instrument(command_span(id, &ctx))
                .await?;
            report.escalations += done.outcome.events.len();
            METRICS
                .escalations
                .get_or_create(&Self::labels::<W>())
                .inc_by(done.outcome.events.len() as u64);
            return Ok(());
        }
        for action in pending {
            if follow_up.attempt(action) - domain::kernel::FIRST_ATTEMPT
                >= self.config.max_reminders
            {
                continue;
            }
            let attempt = follow_up.next_attempt(action);
            let done = execute(self.store.as_ref(), id, W::remind(action, attempt), &ctx)
                .instrument(command_span(id, &ctx))
                .await?;
            report.reminders += done.outcome.events.len();
            METRICS
                .reminders
                .get_or_create(&Self::labels::<W>())
                .inc_by(done.outcome.events.len() as u64);
        }
        Ok(())
    }
}

/// The span of chasing one instance: it continues the trace of the instance's latest command
/// (so a reminder shows in the trace of the order it chases) and links to the run that chases
/// it; without a trace to continue, it is a child of the run.
fn chase_span<W: Chased>(id: W::Id, history: &[RecordedEvent]) -> tracing::Span {
    let correlation = history
        .first()
        .and_then(|e| e.metadata.correlation_id.as_deref());
    let span = tracing::info_span!(
        "reconciler.chase",
        workflow = W::NAME,
        instance = %id,
        correlation_id = correlation,
    );
    let latest = history.iter().rev().find_map(|e| {
        let traceparent = e.metadata.traceparent.clone()?;
        Some(TraceContext::new(
            traceparent,
            e.metadata.tracestate.clone(),
        ))
    });
    if let Some(latest) = latest {
        if let Some(run) = trace::current() {
            trace::link(&span, &run);
        }
        trace::continue_trace(&span, &latest);
    }
    span
}

/// Why an instance is escalated, in words.
fn escalation_reason<A: Label>(pending: &[A], max_reminders: u32) -> Reason {
    let actions: Vec<&str> = pending.iter().map(Label::as_str).collect();
    let text = match max_reminders {
        0 => format!("{} unanswered at the deadline", actions.join(", ")),
        k => format!("{} unanswered after {k} reminder(s)", actions.join(", ")),
    };
    Reason::parse(&text).unwrap_or_else(|_| {
        Reason::parse("pending work unanswered after its reminders").expect("a valid reason")
    })
}
