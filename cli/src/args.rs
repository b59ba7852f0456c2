//! The command line's grammar.

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use event_store::Position;
use service_kit::SecretUrl;
use std::path::PathBuf;

/// Replay, export and time-travel over Milestone's event streams.
#[derive(Debug, Parser)]
#[command(name = "milestone", version, about, long_about = None)]
pub struct Cli {
    /// The event store: postgres://... or kurrentdb://...
    /// Example: --store-url postgres://postgres:postgres@127.0.0.1:5432/milestone
    #[arg(
        long,
        env = "MILESTONE_EVENT_STORE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/milestone",
        hide_env_values = true,
        global = true
    )]
    pub store_url: SecretUrl,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print one instance's events in order (an order's by default): revision, position, time,
    /// type, correlation, causation and a summary.
    /// Example: milestone history 0b6f1c9e-2d43-4a1e-8f55-8d2b8e3c7a10 --json
    History {
        /// The instance's id (a UUID).
        id: String,
        #[command(flatten)]
        workflow: WorkflowArg,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export the event log as JSON Lines, CSV or Parquet.
    /// Example: milestone export --format parquet --out events.parquet --since 2026-01-01T00:00:00Z --type OrderPlaced
    Export(ExportArgs),
    /// Show an instance's state (an order's by default) as of a revision or a moment.
    /// Example: milestone state 0b6f1c9e-2d43-4a1e-8f55-8d2b8e3c7a10 --at 3
    /// Example: milestone state 0b6f1c9e-2d43-4a1e-8f55-8d2b8e3c7a10 --at 2026-03-01T12:00:00Z
    State {
        /// The instance's id (a UUID).
        id: String,
        #[command(flatten)]
        workflow: WorkflowArg,
        /// A stream revision (0 is the first event) or an RFC 3339 time; default: now.
        #[arg(long, value_parser = parse_at)]
        at: Option<At>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a projection's read models from the log, with progress.
    ///
    /// Without a flag, in place (for development): the read models are emptied and the whole
    /// log replayed into them, with the projector stopped; queries see empty or partial answers
    /// until it is done. With --blue-green (for production): the new version is built into
    /// shadow tables while the live one keeps serving and its projector keeps running, then
    /// switched in at once; the replaced version is kept. With --rollback: the kept version is
    /// caught up with the log and switched back in the same way.
    /// Uses MILESTONE_READ_MODEL_URL for the read models (default: the store URL).
    /// Example: milestone rebuild order_status --blue-green
    Rebuild {
        /// The projection, one of the projector's (order_status, return_status).
        projection: String,
        /// Build the new version beside the live one and switch it in; no downtime.
        #[arg(long, conflicts_with = "rollback")]
        blue_green: bool,
        /// Put back the version the last blue/green rebuild replaced.
        #[arg(long)]
        rollback: bool,
        /// The read-model database.
        /// Example: --read-model-url postgres://postgres:postgres@127.0.0.1:5432/milestone
        #[arg(long, env = "MILESTONE_READ_MODEL_URL", hide_env_values = true)]
        read_model_url: Option<SecretUrl>,
    },
}

/// `--workflow <name>`: which workflow an instance id belongs to.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkflowArg {
    /// The workflow (see `crate::workflows::WORKFLOWS`). Example: --workflow orders
    #[arg(long = "workflow", default_value = "orders")]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write to this file (through a temporary file renamed when complete); default: stdout.
    /// Example: --out events.csv
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start strictly after this log position (a consistency token, or the position printed by
    /// an interrupted export). Example: --after 4234154-1
    #[arg(long, value_parser = parse_position)]
    pub after: Option<Position>,
    /// Stop at this log position (inclusive). Example: --until-position 4300000-9
    #[arg(long, value_parser = parse_position)]
    pub until_position: Option<Position>,
    /// Only events that occurred at or after this RFC 3339 time. Example: --since 2026-01-01T00:00:00Z
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only events that occurred before this RFC 3339 time. Example: --until 2026-02-01T00:00:00Z
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only these event types (repeat the flag). Example: --type OrderPlaced --type OrderShipped
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only this workflow's streams (its stream prefix); default: orders, unless
    /// --stream-prefix is given. Example: --workflow orders
    #[arg(long, conflicts_with = "stream_prefix")]
    pub workflow: Option<String>,
    /// Only streams whose name starts with this; "" for every stream. Example: --stream-prefix order-
    #[arg(long)]
    pub stream_prefix: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A point in an order's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    Revision(u64),
    Time(DateTime<Utc>),
}

fn parse_at(s: &str) -> Result<At, String> {
    if let Ok(r) = s.parse::<u64>() {
        return Ok(At::Revision(r));
    }
    parse_time(s).map(At::Time).map_err(|_| {
        format!(
            "'{s}' is neither a revision (0, 1, ...) nor an RFC 3339 time (2026-03-01T12:00:00Z)"
        )
    })
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("'{s}' is not an RFC 3339 time such as 2026-03-01T12:00:00Z: {e}"))
}

fn parse_position(s: &str) -> Result<Position, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a log position such as 4234154-1"))
}
