//! `milestone state <id> [--workflow <name>] --at <revision | time>`: the instance as it stood
//! then.

use crate::args::At;
use crate::workflows::CliWorkflow;
use crate::{instance_events, occurred_at, CliError};
use event_store::EventStore;
use std::io::Write;

/// The instance's state as of `at`, folded from its history: up to a revision, or up to the
/// last event that happened by a moment.
///
/// # Errors
/// Unknown instance; a revision beyond the stream or a time before the instance existed; an
/// event that does not decode.
pub async fn state_at(
    store: &dyn EventStore,
    workflow: &CliWorkflow,
    id: &str,
    at: Option<At>,
) -> Result<serde_json::Value, CliError> {
    let events = instance_events(store, workflow, id).await?;
    let noun = workflow.instance;
    let upto: Vec<_> = match at {
        None => events.iter().collect(),
        Some(At::Revision(r)) => {
            let last = events.last().map(|e| e.revision).unwrap_or_default();
            if r > last {
                return Err(CliError::Usage(format!(
                    "revision {r} is beyond the {noun}'s last revision {last}"
                )));
            }
            events.iter().filter(|e| e.revision <= r).collect()
        }
        Some(At::Time(t)) => {
            // Instances' clocks differ, so times need not rise with revisions: the instance at
            // `t` is its history up to the last event that happened by then, every earlier
            // revision included.
            let Some(last) = events.iter().rposition(|e| occurred_at(e) <= t) else {
                return Err(CliError::Usage(format!(
                    "the {noun} did not exist yet at {t}; its first event happened at {}",
                    occurred_at(&events[0])
                )));
            };
            events[..=last].iter().collect()
        }
    };
    workflow.fold(&upto)
}

/// Prints [`state_at`] as text or JSON.
///
/// # Errors
/// As [`state_at`], or a closed output.
pub async fn run(
    store: &dyn EventStore,
    workflow: &CliWorkflow,
    id: &str,
    at: Option<At>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let state = state_at(store, workflow, id, at).await?;
    let io = |e: std::io::Error| CliError::Output(format!("cannot write the state: {e}"));
    if json {
        writeln!(out, "{state}").map_err(io)?;
        return Ok(());
    }
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())
    };
    let id_key = format!("{}_id", workflow.instance);
    let mut lines = vec![
        (
            workflow.instance,
            state[&id_key].as_str().unwrap_or("-").to_owned(),
        ),
        (
            "as of",
            format!(
                "revision {} ({}), {}",
                state["as_of_revision"],
                state["last_event"].as_str().unwrap_or(""),
                state["as_of"].as_str().unwrap_or("")
            ),
        ),
        ("status", state["status"].as_str().unwrap_or("-").to_owned()),
        ("pending actions", list(&state["pending_actions"])),
        ("compensations owed", list(&state["compensations_owed"])),
        ("compensations done", list(&state["compensations_done"])),
    ];
    lines.extend(workflow.extra_text(&state));
    for (label, value) in lines {
        writeln!(out, "{label:<18} {value}").map_err(io)?;
    }
    Ok(())
}
