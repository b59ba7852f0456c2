//! How one event changes an order's rows. Pure: no database here.
//!
//! A row carries the domain's aggregate state (`state`), so applying the next event is
//! `evolve` plus copying the derived fields; nothing depends on the wall clock or on batch
//! boundaries, which is what makes a rebuild identical to the incremental run.

use super::columns::{OrderRow, ORDER_STATE_VERSION};
use crate::config::Deadlines;
use crate::status_table::follow_up::Chase;
use crate::status_table::{
    apply_event, labels, ApplyError, Applying, Noun, StatusRow, TimelineRow,
};
use chrono::{DateTime, Utc};
use domain::{
    evolve, EventContract, Inventory, Order, OrderEvent, OrderState, Orders, Payment, Stage,
    Workflow,
};
use event_store::RecordedEvent;
use uuid::Uuid;

const ORDER: Noun = Noun {
    noun: "order",
    a_noun: "an order",
    first: "OrderPlaced",
};

impl OrderRow {
    /// Writes the working aggregate back into `state`, in the current version of its form,
    /// before the row is stored.
    ///
    /// # Errors
    /// When the state does not serialise (it always does for domain types).
    pub fn seal(&mut self) -> Result<(), ApplyError> {
        if let Some(order) = &self.order {
            self.state = ORDER.to_json_string(order)?;
            self.state_version = ORDER_STATE_VERSION;
        }
        Ok(())
    }
}

/// Applies one event to the row of order `id` (from the event's stream) in place (`None`
/// before its first event) and returns its timeline entry, or `None` when the event was
/// applied before (its revision is not newer than the row's).
///
/// # Errors
/// Why the event cannot be applied: the checks every status table shares
/// ([`apply_event`]), it does not decode, an order's first event is not `OrderPlaced`, or the
/// stored state is in another version. The row is then unchanged and the caller dead-letters
/// the event.
pub fn apply(
    slot: &mut Option<OrderRow>,
    id: Option<Uuid>,
    event: &RecordedEvent,
    deadlines: &Deadlines,
    reminder_spacing: chrono::Duration,
) -> Result<Option<TimelineRow>, ApplyError> {
    apply_event(slot, id, event, ORDER, |slot, Applying { id, at, .. }| {
        let decoded = OrderEvent::decode(&event.event_type, event.schema_version, &event.data)?;
        let row = match slot {
            Some(row) => {
                let order = match row.order.take() {
                    Some(order) => order,
                    None => ORDER.stored_state::<Order>(
                        &row.state,
                        row.state_version,
                        ORDER_STATE_VERSION,
                    )?,
                };
                // A placed order stays placed whatever the event.
                row.order = evolve(OrderState::Placed(Box::new(order)), &decoded)
                    .into_order()
                    .map(|order| *order);
                row
            }
            None => {
                let Some(order) = evolve(OrderState::NotPlaced, &decoded).into_order() else {
                    return Err(ORDER.not_first(event));
                };
                slot.insert(new_row(id, *order, at)?)
            }
        };
        stamp_milestone(row, &decoded, at);
        derive(row, at, deadlines);
        let working = row.order.take();
        if let Some(order) = &working {
            Chase {
                follow_up: &order.follow_up,
                step: order.deadline_step(),
                reminded: Orders::reminder(&decoded).is_some(),
                at,
                deadline_at: row.deadline_at,
                spacing: reminder_spacing,
            }
            .derive(row.follow_up_columns());
        }
        row.order = working;
        Ok(decoded.summary())
    })
}

fn new_row(order_id: Uuid, order: Order, at: DateTime<Utc>) -> Result<OrderRow, ApplyError> {
    Ok(OrderRow {
        order_id,
        status: String::new(),
        customer_id: order.customer_id.to_string(),
        currency: order.currency.code().to_owned(),
        total_minor: order.total_minor,
        line_count: order.lines.len() as i32,
        lines: ORDER.to_json(&order.lines)?,
        shipping_address: ORDER.to_json(&order.shipping_address)?,
        last_milestone: String::new(),
        last_milestone_at: at,
        pending_actions: Vec::new(),
        failure_reason: None,
        compensations_owed: Vec::new(),
        compensations_done: Vec::new(),
        payment_id: None,
        reservation_id: None,
        carrier: None,
        tracking_number: None,
        placed_at: at,
        payment_authorized_at: None,
        inventory_reserved_at: None,
        accepted_at: None,
        rejected_at: None,
        fulfillment_started_at: None,
        shipped_at: None,
        delivered_at: None,
        cancelled_at: None,
        payment_voided_at: None,
        inventory_released_at: None,
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
        state_version: ORDER_STATE_VERSION,
        order: Some(order),
    })
}

fn stamp_milestone(row: &mut OrderRow, event: &OrderEvent, at: DateTime<Utc>) {
    match event {
        OrderEvent::OrderPlaced { .. } => row.placed_at = at,
        OrderEvent::PaymentAuthorized { .. } => row.payment_authorized_at = Some(at),
        OrderEvent::PaymentDeclined { .. } | OrderEvent::InventoryReservationFailed { .. } => {}
        OrderEvent::InventoryReserved { .. } => row.inventory_reserved_at = Some(at),
        OrderEvent::OrderAccepted {} => row.accepted_at = Some(at),
        OrderEvent::OrderRejected { .. } => row.rejected_at = Some(at),
        OrderEvent::FulfillmentStarted {} => row.fulfillment_started_at = Some(at),
        OrderEvent::OrderShipped { .. } => row.shipped_at = Some(at),
        OrderEvent::OrderDelivered {} => row.delivered_at = Some(at),
        OrderEvent::OrderCancelled { .. } => row.cancelled_at = Some(at),
        OrderEvent::PaymentVoided { .. } => row.payment_voided_at = Some(at),
        OrderEvent::InventoryReleased { .. } => row.inventory_released_at = Some(at),
        OrderEvent::OrderEscalated { reason } => {
            row.escalated_at = Some(at);
            row.escalation_count += 1;
            row.escalation_reason = Some(reason.to_string());
        }
        OrderEvent::OrderReminded { .. } => {}
    }
    row.last_milestone = event.event_type().to_owned();
    row.last_milestone_at = at;
}

/// Copies what the aggregate knows into the row's derived columns.
fn derive(row: &mut OrderRow, at: DateTime<Utc>, deadlines: &Deadlines) {
    let Some(order) = &row.order else { return };
    let status = order.status();
    let status_changed = row.status != status.as_str();
    row.status = status.as_str().to_owned();
    row.pending_actions = labels(&order.pending_actions());
    row.compensations_owed = labels(&order.compensations_owed());
    row.compensations_done = labels(&order.compensations_done());
    row.failure_reason = match &order.stage {
        Stage::Rejected { reason, .. } => Some(reason.to_string()),
        Stage::Cancelled { reason } => Some(format!("cancelled: {reason}")),
        _ => None,
    };
    row.payment_id = match &order.payment {
        Payment::Pending => None,
        Payment::Authorized { payment_id, .. }
        | Payment::Declined { payment_id }
        | Payment::Voided { payment_id } => Some(payment_id.to_string()),
    };
    row.reservation_id = match &order.inventory {
        Inventory::Pending => None,
        Inventory::Reserved { reservation_id }
        | Inventory::Short { reservation_id }
        | Inventory::Released { reservation_id } => Some(reservation_id.to_string()),
    };
    if let Stage::Shipped {
        carrier,
        tracking_number,
    }
    | Stage::Delivered {
        carrier,
        tracking_number,
    } = &order.stage
    {
        row.carrier = Some(carrier.to_string());
        row.tracking_number = Some(tracking_number.as_str().to_owned());
    }
    // The clock for the next step starts when the order enters a status, or when an
    // obligation appears (a late fact after cancellation).
    let waits = !row.pending_actions.is_empty();
    row.deadline_at = if !waits {
        None
    } else if status_changed || row.deadline_at.is_none() {
        Some(at + deadlines.for_status(status, !row.compensations_owed.is_empty()))
    } else {
        row.deadline_at
    };
}
