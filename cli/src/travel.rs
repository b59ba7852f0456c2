//! `milestone state <order-id> --at <revision | time>`: the order as it stood then.

use crate::args::At;
use crate::{decode, occurred_at, order_events, CliError};
use domain::{evolve, OrderState};
use event_store::EventStore;
use serde_json::json;
use std::io::Write;

/// The order's state as of `at`, folded from its history: up to a revision, or up to the last
/// event that happened by a moment.
///
/// # Errors
/// Unknown order; a revision beyond the stream or a time before the order existed; an event
/// that does not decode.
pub async fn state_at(
    store: &dyn EventStore,
    order_id: &str,
    at: Option<At>,
) -> Result<serde_json::Value, CliError> {
    let events = order_events(store, order_id).await?;
    let upto: Vec<_> = match at {
        None => events.iter().collect(),
        Some(At::Revision(r)) => {
            let last = events.last().map(|e| e.revision).unwrap_or_default();
            if r > last {
                return Err(CliError::Usage(format!(
                    "revision {r} is beyond the order's last revision {last}"
                )));
            }
            events.iter().filter(|e| e.revision <= r).collect()
        }
        Some(At::Time(t)) => {
            // Instances' clocks differ, so times need not rise with revisions: the order at `t`
            // is its history up to the last event that happened by then, every earlier
            // revision included.
            let Some(last) = events.iter().rposition(|e| occurred_at(e) <= t) else {
                return Err(CliError::Usage(format!(
                    "the order did not exist yet at {t}; it was placed at {}",
                    occurred_at(&events[0])
                )));
            };
            events[..=last].iter().collect()
        }
    };
    let mut state = OrderState::NotPlaced;
    for e in &upto {
        let decoded = decode(e).map_err(|err| {
            CliError::Failed(format!("revision {} cannot be decoded: {err}", e.revision))
        })?;
        state = evolve(state, &decoded);
    }
    let last = upto
        .last()
        .copied()
        .ok_or_else(|| CliError::Failed("no events".into()))?;
    let order = state.order();
    Ok(json!({
        "order_id": order.map(|o| o.id.to_string()),
        "as_of_revision": last.revision,
        "as_of": occurred_at(last),
        "status": state.status().map(|s| s.as_str()),
        "pending_actions": state.pending_actions().iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "compensations_owed": order.map(|o| o.compensations_owed().iter().map(|c| c.as_str()).collect::<Vec<_>>()),
        "compensations_done": order.map(|o| o.compensations_done().iter().map(|c| c.as_str()).collect::<Vec<_>>()),
        "total_minor": order.map(|o| o.total_minor),
        "currency": order.map(|o| o.currency.code()),
        "last_event": last.event_type,
    }))
}

/// Prints [`state_at`] as text or JSON.
///
/// # Errors
/// As [`state_at`], or a closed output.
pub async fn run(
    store: &dyn EventStore,
    order_id: &str,
    at: Option<At>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let state = state_at(store, order_id, at).await?;
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
    writeln!(
        out,
        "order              {}",
        state["order_id"].as_str().unwrap_or("-")
    )
    .map_err(io)?;
    writeln!(
        out,
        "as of              revision {} ({}), {}",
        state["as_of_revision"],
        state["last_event"].as_str().unwrap_or(""),
        state["as_of"].as_str().unwrap_or("")
    )
    .map_err(io)?;
    writeln!(
        out,
        "status             {}",
        state["status"].as_str().unwrap_or("-")
    )
    .map_err(io)?;
    writeln!(
        out,
        "pending actions    {}",
        list(&state["pending_actions"])
    )
    .map_err(io)?;
    writeln!(
        out,
        "compensations owed {}",
        list(&state["compensations_owed"])
    )
    .map_err(io)?;
    writeln!(
        out,
        "compensations done {}",
        list(&state["compensations_done"])
    )
    .map_err(io)?;
    writeln!(
        out,
        "total              {} {} (minor units)",
        state["total_minor"],
        state["currency"].as_str().unwrap_or("")
    )
    .map_err(io)?;
    Ok(())
}
