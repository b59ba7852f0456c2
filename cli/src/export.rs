//! `milestone export`: the log, filtered, as JSON Lines, CSV or Parquet. A file is written
//! through a temporary file in the same directory and renamed only when complete, so a failed
//! export leaves nothing behind. Ctrl-C ends the export cleanly at an event boundary and prints
//! the position to continue from with `--after`.
//!
//! Each event of a registered workflow is exported as its type's current version: an event
//! stored in an older version is upcast (its `schema_version` and `data` are the current ones),
//! so every row of one type has one layout. An event that cannot be upcast (malformed, unknown
//! type) is exported as stored.

use crate::args::{ExportArgs, Format};
use crate::workflows::{CliWorkflow, WORKFLOWS};
use crate::{occurred_at, CliError};
use arrow_array::builder::{
    StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use event_store::{EventStore, Position, RecordedEvent};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::sync::Arc;

/// How an export ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub exported: u64,
    pub scanned: u64,
    /// The last position read; pass it to `--after` to continue.
    pub last_position: Option<Position>,
    pub interrupted: bool,
}

/// Writes rows in one format.
trait Sink {
    fn write(&mut self, e: &RecordedEvent) -> Result<(), String>;
    fn finish(self: Box<Self>) -> Result<(), String>;
}

fn row_json(e: &RecordedEvent) -> serde_json::Value {
    serde_json::json!({
        "position": e.position.to_string(),
        "stream_id": e.stream_id,
        "revision": e.revision,
        "event_id": e.id,
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "occurred_at": occurred_at(e),
        "recorded_at": e.recorded_at,
        "correlation_id": e.metadata.correlation_id,
        "causation_id": e.metadata.causation_id,
        "data": e.data,
        "principal_subject": principal_subject(e),
        "principal_role": principal_role(e),
        "principal_client": principal_client(e),
    })
}

/// The parts of the principal who caused `e`, each exported as a column of its own (empty or
/// null when the event names none).
fn principal_subject(e: &RecordedEvent) -> Option<&str> {
    e.metadata.principal.as_ref().map(|p| p.subject.as_str())
}

fn principal_role(e: &RecordedEvent) -> Option<&str> {
    e.metadata.principal.as_ref().map(|p| p.role.as_str())
}

fn principal_client(e: &RecordedEvent) -> Option<&str> {
    e.metadata.principal.as_ref()?.client.as_deref()
}

struct Jsonl<W: Write>(W);

impl<W: Write> Sink for Jsonl<W> {
    fn write(&mut self, e: &RecordedEvent) -> Result<(), String> {
        serde_json::to_writer(&mut self.0, &row_json(e)).map_err(|e| e.to_string())?;
        self.0.write_all(b"\n").map_err(|e| e.to_string())
    }
    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.0.flush().map_err(|e| e.to_string())
    }
}

const CSV_HEADER: [&str; 14] = [
    "position",
    "stream_id",
    "revision",
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "correlation_id",
    "causation_id",
    "data",
    "principal_subject",
    "principal_role",
    "principal_client",
];

struct Csv<W: Write>(csv::Writer<W>);

impl<W: Write> Sink for Csv<W> {
    fn write(&mut self, e: &RecordedEvent) -> Result<(), String> {
        self.0
            .write_record([
                e.position.to_string(),
                e.stream_id.clone(),
                e.revision.to_string(),
                e.id.to_string(),
                e.event_type.clone(),
                e.schema_version.to_string(),
                occurred_at(e).to_rfc3339(),
                e.recorded_at.to_rfc3339(),
                e.metadata.correlation_id.clone().unwrap_or_default(),
                e.metadata.causation_id.clone().unwrap_or_default(),
                e.data.to_string(),
                principal_subject(e).unwrap_or_default().to_owned(),
                principal_role(e).unwrap_or_default().to_owned(),
                principal_client(e).unwrap_or_default().to_owned(),
            ])
            .map_err(|e| e.to_string())
    }
    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.0.flush().map_err(|e| e.to_string())
    }
}

/// The Parquet file's columns.
pub fn parquet_schema() -> Arc<Schema> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("position", DataType::Utf8, false),
        Field::new("position_commit", DataType::UInt64, false),
        Field::new("position_prepare", DataType::UInt64, false),
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("revision", DataType::UInt64, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("schema_version", DataType::UInt32, false),
        Field::new("occurred_at", ts.clone(), false),
        Field::new("recorded_at", ts, false),
        Field::new("correlation_id", DataType::Utf8, true),
        Field::new("causation_id", DataType::Utf8, true),
        Field::new("data", DataType::Utf8, false),
        Field::new("principal_subject", DataType::Utf8, true),
        Field::new("principal_role", DataType::Utf8, true),
        Field::new("principal_client", DataType::Utf8, true),
    ]))
}

const PARQUET_BATCH: usize = 16_384;

struct Parquet<W: Write + Send> {
    writer: parquet::arrow::ArrowWriter<W>,
    rows: Vec<RecordedEvent>,
}

impl<W: Write + Send> Parquet<W> {
    fn flush_rows(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let mut position = StringBuilder::with_capacity(n, n * 16);
        let mut commit = UInt64Builder::with_capacity(n);
        let mut prepare = UInt64Builder::with_capacity(n);
        let mut stream = StringBuilder::with_capacity(n, n * 42);
        let mut revision = UInt64Builder::with_capacity(n);
        let mut event_id = StringBuilder::with_capacity(n, n * 36);
        let mut event_type = StringBuilder::with_capacity(n, n * 16);
        let mut version = UInt32Builder::with_capacity(n);
        let mut occurred = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut recorded = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut correlation = StringBuilder::with_capacity(n, n * 36);
        let mut causation = StringBuilder::with_capacity(n, n * 36);
        let mut data = StringBuilder::with_capacity(n, n * 200);
        let mut subject = StringBuilder::with_capacity(n, n * 16);
        let mut role = StringBuilder::with_capacity(n, n * 8);
        let mut client = StringBuilder::with_capacity(n, n * 16);
        for e in &self.rows {
            position.append_value(e.position.to_string());
            commit.append_value(e.position.commit);
            prepare.append_value(e.position.prepare);
            stream.append_value(&e.stream_id);
            revision.append_value(e.revision);
            event_id.append_value(e.id.to_string());
            event_type.append_value(&e.event_type);
            version.append_value(e.schema_version);
            occurred.append_value(occurred_at(e).timestamp_micros());
            recorded.append_value(e.recorded_at.timestamp_micros());
            correlation.append_option(e.metadata.correlation_id.as_deref());
            causation.append_option(e.metadata.causation_id.as_deref());
            data.append_value(e.data.to_string());
            subject.append_option(principal_subject(e));
            role.append_option(principal_role(e));
            client.append_option(principal_client(e));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(position.finish()),
            Arc::new(commit.finish()),
            Arc::new(prepare.finish()),
            Arc::new(stream.finish()),
            Arc::new(revision.finish()),
            Arc::new(event_id.finish()),
            Arc::new(event_type.finish()),
            Arc::new(version.finish()),
            Arc::new(occurred.finish()),
            Arc::new(recorded.finish()),
            Arc::new(correlation.finish()),
            Arc::new(causation.finish()),
            Arc::new(data.finish()),
            Arc::new(subject.finish()),
            Arc::new(role.finish()),
            Arc::new(client.finish()),
        ];
        let batch = RecordBatch::try_new(parquet_schema(), columns).map_err(|e| e.to_string())?;
        self.writer.write(&batch).map_err(|e| e.to_string())?;
        self.rows.clear();
        Ok(())
    }
}

impl<W: Write + Send> Sink for Parquet<W> {
    fn write(&mut self, e: &RecordedEvent) -> Result<(), String> {
        self.rows.push(e.clone());
        if self.rows.len() >= PARQUET_BATCH {
            self.flush_rows()?;
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.flush_rows()?;
        self.writer.close().map(|_| ()).map_err(|e| e.to_string())
    }
}

fn sink<'a, W: Write + Send + 'a>(format: Format, out: W) -> Result<Box<dyn Sink + 'a>, String> {
    Ok(match format {
        Format::Jsonl => Box::new(Jsonl(std::io::BufWriter::with_capacity(1 << 20, out))),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, out));
            w.write_record(CSV_HEADER).map_err(|e| e.to_string())?;
            Box::new(Csv(w))
        }
        Format::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build();
            let writer = parquet::arrow::ArrowWriter::try_new(out, parquet_schema(), Some(props))
                .map_err(|e| e.to_string())?;
            Box::new(Parquet {
                writer,
                rows: Vec::with_capacity(PARQUET_BATCH),
            })
        }
    })
}

fn wanted(args: &ExportArgs, e: &RecordedEvent) -> bool {
    let at = occurred_at(e);
    !event_store::is_bookkeeping_stream(&e.stream_id)
        && args.since.is_none_or(|s| at >= s)
        && args.until.is_none_or(|u| at < u)
        && (args.types.is_empty() || args.types.contains(&e.event_type))
}

/// Runs an export to `args.out` (through a temporary file) or to stdout.
///
/// # Errors
/// A bad range, an unwritable output (nothing is left behind), store errors.
pub async fn run(
    store: &dyn EventStore,
    args: &ExportArgs,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<ExportSummary, CliError> {
    if let (Some(a), Some(u)) = (args.after, args.until_position) {
        if u <= a {
            return Err(CliError::Usage(format!(
                "--until-position {u} must be after --after {a}"
            )));
        }
    }
    if let (Some(s), Some(u)) = (args.since, args.until) {
        if u <= s {
            return Err(CliError::Usage(format!(
                "--until {u} must be after --since {s}"
            )));
        }
    }
    let prefix = stream_prefix(args)?;
    match &args.out {
        None => {
            let summary = pump(
                store,
                args,
                &prefix,
                sink(args.format, std::io::stdout()).map_err(CliError::Output)?,
                interrupt,
            )
            .await?;
            Ok(summary)
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let temp = tempfile::Builder::new()
                .prefix(".milestone-export-")
                .tempfile_in(dir)
                .map_err(|e| {
                    CliError::Output(format!("cannot write to {}: {e}", path.display()))
                })?;
            let file = temp.reopen().map_err(|e| {
                CliError::Output(format!("cannot write to {}: {e}", path.display()))
            })?;
            // On any error `temp` is dropped here and the partial file removed.
            let summary = pump(
                store,
                args,
                &prefix,
                sink(args.format, file).map_err(CliError::Output)?,
                interrupt,
            )
            .await?;
            temp.persist(path).map_err(|e| {
                CliError::Output(format!("cannot write {}: {}", path.display(), e.error))
            })?;
            Ok(summary)
        }
    }
}

/// The streams exported: `--workflow`'s, `--stream-prefix`, or the default workflow's.
fn stream_prefix(args: &ExportArgs) -> Result<String, CliError> {
    match (&args.workflow, &args.stream_prefix) {
        (Some(name), _) => Ok(CliWorkflow::named(name)?.stream_prefix.to_owned()),
        (None, Some(prefix)) => Ok(prefix.clone()),
        (None, None) => Ok(WORKFLOWS[0].stream_prefix.to_owned()),
    }
}

/// The event as its type's current version, when its workflow is known and it is older.
fn current(e: &RecordedEvent) -> Option<RecordedEvent> {
    let (schema_version, data) = CliWorkflow::of_stream(&e.stream_id)?.upcast(e).ok()??;
    Some(RecordedEvent {
        schema_version,
        data,
        ..e.clone()
    })
}

async fn pump(
    store: &dyn EventStore,
    args: &ExportArgs,
    prefix: &str,
    mut sink: Box<dyn Sink + '_>,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<ExportSummary, CliError> {
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {human_pos} events exported ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    tokio::pin!(interrupt);
    let mut summary = ExportSummary {
        exported: 0,
        scanned: 0,
        last_position: args.after,
        interrupted: false,
    };
    'pages: loop {
        let page = tokio::select! {
            () = &mut interrupt => { summary.interrupted = true; break 'pages; }
            page = store.read_all(summary.last_position, prefix, 5000) => page?,
        };
        if page.is_empty() {
            break;
        }
        for e in &page {
            if args.until_position.is_some_and(|u| e.position > u) {
                break 'pages;
            }
            summary.scanned += 1;
            summary.last_position = Some(e.position);
            if wanted(args, e) {
                let upcast = current(e);
                sink.write(upcast.as_ref().unwrap_or(e))
                    .map_err(|err| CliError::Output(format!("cannot write the export: {err}")))?;
                summary.exported += 1;
            }
        }
        bar.set_position(summary.exported);
        if let Some(p) = summary.last_position {
            bar.set_message(format!("at {p}"));
        }
    }
    sink.finish()
        .map_err(|err| CliError::Output(format!("cannot finish the export: {err}")))?;
    bar.finish_and_clear();
    Ok(summary)
}
