//! `milestone history <id> [--workflow <name>]`. Rows show each event as stored (its schema
//! version and data) and who caused it (the principal in its metadata); the summary reads it as
//! the current version.

use crate::workflows::CliWorkflow;
use crate::{instance_events, occurred_at, CliError};
use event_store::{EventStore, Principal};
use std::io::Write;

/// A principal as the table shows it: `subject (role)`, with `via client` when it names one;
/// `-` for none.
fn who(principal: Option<&Principal>) -> String {
    match principal {
        None => "-".to_owned(),
        Some(Principal {
            subject,
            role,
            client: None,
        }) => format!("{subject} ({role})"),
        Some(Principal {
            subject,
            role,
            client: Some(client),
        }) => format!("{subject} ({role}) via {client}"),
    }
}

/// Writes the instance's history as a table, or as JSON Lines.
///
/// # Errors
/// Unknown instance, store errors, or a closed output.
pub async fn run(
    store: &dyn EventStore,
    workflow: &CliWorkflow,
    id: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let events = instance_events(store, workflow, id).await?;
    let io = |e: std::io::Error| CliError::Output(format!("cannot write the history: {e}"));
    if !json {
        writeln!(
            out,
            "{:>3}  {:<20}  {:<24}  {:<26}  {:<36}  {:<36}  {:<24}  summary",
            "rev", "position", "occurred at", "type", "correlation", "causation", "principal"
        )
        .map_err(io)?;
    }
    for e in &events {
        let when = occurred_at(e).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let correlation = e.metadata.correlation_id.as_deref().unwrap_or("-");
        let causation = e.metadata.causation_id.as_deref().unwrap_or("-");
        if json {
            let line = serde_json::json!({
                "revision": e.revision,
                "position": e.position.to_string(),
                "occurred_at": when,
                "recorded_at": e.recorded_at,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "event_id": e.id,
                "correlation_id": e.metadata.correlation_id,
                "causation_id": e.metadata.causation_id,
                "principal": e.metadata.principal,
                "summary": workflow.summary(e),
                "data": e.data,
            });
            writeln!(out, "{line}").map_err(io)?;
        } else {
            writeln!(
                out,
                "{:>3}  {:<20}  {:<24}  {:<26}  {:<36}  {:<36}  {:<24}  {}",
                e.revision,
                e.position.to_string(),
                when,
                e.event_type,
                correlation,
                causation,
                who(e.metadata.principal.as_ref()),
                workflow.summary(e)
            )
            .map_err(io)?;
        }
    }
    Ok(())
}
