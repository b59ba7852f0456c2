//! How one event changes a return's rows. Pure: no database here.
//!
//! A row carries the domain's return case (`state`), so applying the next event is `evolve`
//! plus copying the derived fields; nothing depends on the wall clock or on batch boundaries,
//! which is what makes a rebuild identical to the incremental run.

use super::columns::{ReturnRow, RETURN_STATE_VERSION};
use super::deadlines::ReturnDeadlines;
use crate::status_table::follow_up::Chase;
use crate::status_table::{
    apply_event, labels, ApplyError, Applying, Noun, StatusRow, TimelineRow,
};
use chrono::{DateTime, Utc};
use domain::{
    EventContract, InspectionOutcome, ReturnCase, ReturnEvent, ReturnStage, ReturnState, Returns,
    Workflow,
};
use event_store::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

const RETURN: Noun = Noun {
    noun: "return",
    a_noun: "a return",
    first: "ReturnRequested",
};

impl ReturnRow {
    /// Writes the working return case back into `state`, in the current version of its form,
    /// before the row is stored.
    ///
    /// # Errors
    /// When the state does not serialise (it always does for domain types).
    pub fn seal(&mut self) -> Result<(), ApplyError> {
        if let Some(case) = self.case.as_ref().and_then(ReturnState::case) {
            self.state = RETURN.to_json_string(case)?;
            self.state_version = RETURN_STATE_VERSION;
        }
        Ok(())
    }
}

/// Applies one event to the row of the return of order `id` (from the event's stream) in place
/// (`None` before its first event) and returns its timeline entry, or `None` when the event was
/// applied before (its revision is not newer than the row's).
///
/// # Errors
/// Why the event cannot be applied: the checks every status table shares
/// ([`apply_event`]), it does not decode, a return's first event is not `ReturnRequested`, or
/// the stored state is in another version. The row is then unchanged and the caller
/// dead-letters the event.
pub fn apply(
    slot: &mut Option<ReturnRow>,
    id: Option<Uuid>,
    event: &RecordedEvent,
    deadlines: &ReturnDeadlines,
    reminder_spacing: chrono::Duration,
) -> Result<Option<TimelineRow>, ApplyError> {
    apply_event(slot, id, event, RETURN, |slot, Applying { id, at, .. }| {
        let decoded = ReturnEvent::decode(&event.event_type, event.schema_version, &event.data)?;
        let (row, step_before) = match slot {
            Some(row) => {
                let state = match row.case.take() {
                    Some(state) => state,
                    None => ReturnState::Requested(Box::new(RETURN.stored_state::<ReturnCase>(
                        &row.state,
                        row.state_version,
                        RETURN_STATE_VERSION,
                    )?)),
                };
                let step_before = Returns::deadline_step(&state);
                // A requested return stays requested whatever the event.
                row.case = Some(Returns::evolve(state, &decoded));
                (row, step_before)
            }
            None => {
                let state = Returns::evolve(ReturnState::NotRequested, &decoded);
                if state.case().is_none() {
                    return Err(RETURN.not_first(event));
                }
                (slot.insert(new_row(id, state, at)), None)
            }
        };
        stamp_milestone(row, &decoded, at);
        derive(row, step_before, at, deadlines)?;
        let working = row.case.take();
        if let Some(case) = working.as_ref().and_then(ReturnState::case) {
            Chase {
                follow_up: &case.follow_up,
                step: case.deadline_step(),
                reminded: Returns::reminder(&decoded).is_some(),
                at,
                deadline_at: row.deadline_at,
                spacing: reminder_spacing,
            }
            .derive(row.follow_up_columns());
        }
        row.case = working;
        Ok(decoded.summary())
    })
}

/// A new row for a just-requested return; `derive` fills in what depends on the case.
fn new_row(order_id: Uuid, state: ReturnState, at: DateTime<Utc>) -> ReturnRow {
    ReturnRow {
        order_id,
        status: String::new(),
        currency: String::new(),
        reason: String::new(),
        lines: serde_json::Value::Null,
        line_count: 0,
        refund_due_minor: 0,
        refund_accepted_minor: None,
        refunded_minor: 0,
        refund_id: None,
        rma_number: None,
        last_milestone: String::new(),
        last_milestone_at: at,
        pending_actions: Vec::new(),
        failure_reason: None,
        compensations_owed: Vec::new(),
        compensations_done: Vec::new(),
        requested_at: at,
        approved_at: None,
        rejected_at: None,
        received_at: None,
        refunded_at: None,
        cancelled_at: None,
        shipped_back_at: None,
        escalated_at: None,
        escalation_count: 0,
        escalation_reason: None,
        reminder_attempts: 0,
        last_reminder_at: None,
        next_reminder_at: None,
        correlation_id: None,
        deadline_at: None,
        stream_revision: -1,
        last_position: String::new(),
        last_position_commit: 0,
        last_position_prepare: 0,
        state: String::new(),
        state_version: RETURN_STATE_VERSION,
        case: Some(state),
    }
}

fn stamp_milestone(row: &mut ReturnRow, event: &ReturnEvent, at: DateTime<Utc>) {
    match event {
        // The request's own time: the return window was checked against it.
        ReturnEvent::ReturnRequested { requested_at, .. } => row.requested_at = *requested_at,
        ReturnEvent::ReturnApproved { .. } => row.approved_at = Some(at),
        ReturnEvent::ReturnRejected { .. } => row.rejected_at = Some(at),
        ReturnEvent::ReturnItemsReceived { .. } => row.received_at = Some(at),
        ReturnEvent::RefundIssued { .. } => row.refunded_at = Some(at),
        ReturnEvent::ReturnCancelled { .. } => row.cancelled_at = Some(at),
        ReturnEvent::ReturnItemsShippedBack { .. } => row.shipped_back_at = Some(at),
        ReturnEvent::ReturnEscalated { reason } => {
            row.escalated_at = Some(at);
            row.escalation_count += 1;
            row.escalation_reason = Some(reason.to_string());
        }
        ReturnEvent::ReturnReminded { .. } => {}
    }
    row.last_milestone = event.event_type().to_owned();
    row.last_milestone_at = at;
}

/// One requested line as `return_status.lines` shows it.
#[derive(Serialize)]
struct LineView<'a> {
    sku: &'a str,
    quantity: u32,
    unit_price_minor: i64,
    accepted_quantity: Option<u32>,
    refused_quantity: Option<u32>,
}

fn lines_of(case: &ReturnCase) -> Result<serde_json::Value, ApplyError> {
    let lines: Vec<LineView<'_>> = case
        .lines
        .iter()
        .map(|line| {
            let outcome = case
                .inspections
                .as_deref()
                .and_then(|all| all.iter().find(|i| i.sku == line.sku))
                .map(|i| i.outcome);
            let quantity = line.quantity.get();
            let accepted = outcome.map(|o| match o {
                InspectionOutcome::Accepted => quantity,
                InspectionOutcome::Refused => 0,
            });
            LineView {
                sku: line.sku.as_str(),
                quantity,
                unit_price_minor: line.unit_price_minor,
                accepted_quantity: accepted,
                refused_quantity: accepted.map(|a| quantity - a),
            }
        })
        .collect();
    RETURN.to_json(&lines)
}

/// Copies what the return case knows into the row's derived columns.
/// `step_before` is the deadline step the return was in before the event.
fn derive(
    row: &mut ReturnRow,
    step_before: Option<&'static str>,
    at: DateTime<Utc>,
    deadlines: &ReturnDeadlines,
) -> Result<(), ApplyError> {
    let Some(state) = &row.case else {
        return Ok(());
    };
    let Some(case) = state.case() else {
        return Ok(());
    };
    let step = Returns::deadline_step(state);
    row.status = case.status().as_str().to_owned();
    row.currency = case.currency.code().to_owned();
    row.reason = case.reason.to_string();
    row.lines = lines_of(case)?;
    row.line_count = case.lines.len() as i32;
    row.refund_due_minor = case.refund_due_minor;
    row.refund_accepted_minor = case
        .inspections
        .as_ref()
        .map(|_| case.accepted_refund_minor());
    row.refunded_minor = case.refunded_minor();
    row.pending_actions = labels(&case.pending_actions());
    row.compensations_owed = labels(&case.compensations_owed());
    row.compensations_done = labels(&case.compensations_done());
    row.failure_reason = match &case.stage {
        ReturnStage::Rejected { reason } => Some(reason.to_string()),
        ReturnStage::Cancelled { reason } => Some(format!("cancelled: {reason}")),
        _ => None,
    };
    // A cancelled return keeps the RMA number it was approved with.
    match &case.stage {
        ReturnStage::Approved { rma_number } | ReturnStage::Received { rma_number } => {
            row.rma_number = Some(rma_number.to_string());
        }
        ReturnStage::Refunded {
            rma_number,
            refund_id,
            ..
        } => {
            row.rma_number = Some(rma_number.to_string());
            row.refund_id = Some(refund_id.to_string());
        }
        _ => {}
    }
    // The clock for the next step starts when the return enters a step (a status, or owing
    // items back after a late arrival); an escalation does not restart it.
    row.deadline_at = match step {
        None => None,
        Some(step) if step_before != Some(step) || row.deadline_at.is_none() => {
            Some(at + deadlines.for_step(step))
        }
        Some(_) => row.deadline_at,
    };
    Ok(())
}
