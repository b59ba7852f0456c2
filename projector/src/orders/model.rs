//! How one event changes an order's rows. Pure: no database here.
//!
//! A row carries the domain's aggregate state (`state`), so applying the next event is
//! `evolve` plus copying the derived fields; nothing depends on the wall clock or on batch
//! boundaries, which is what makes a rebuild identical to the incremental run.

use super::columns::{OrderRow, ORDER_STATE_VERSION};
use crate::config::Deadlines;
use chrono::{DateTime, Utc};
use domain::{evolve, EventContract, Inventory, Order, OrderEvent, OrderState, Payment, Stage};
use event_store::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

/// Why an event cannot be applied to an order's row; the event is dead-lettered with this text.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("malformed {event_type} event: {reason}")]
    Malformed { event_type: String, reason: String },
    #[error("stream '{0}' is not an order stream")]
    NotAnOrderStream(String),
    #[error("revision out of range")]
    RevisionOutOfRange,
    #[error("revision gap: the read model is at revision {at}, this event is revision {revision}")]
    RevisionGap { at: i64, revision: i64 },
    #[error("the read model has no row for this order, but this event is revision {0}")]
    NoRow(i64),
    #[error(transparent)]
    Decode(#[from] domain::DecodeError),
    #[error("{0} cannot be an order's first event; OrderPlaced must come first")]
    NotFirst(String),
    #[error("stored state of the order does not load: {0}")]
    StateDoesNotLoad(#[source] serde_json::Error),
    #[error(
        "stored state of the order is in version {stored} of its form, this projector reads \
         version {ORDER_STATE_VERSION}: rebuild the projection (`projector rebuild`)"
    )]
    StateVersion { stored: i32 },
    #[error("the order does not serialise")]
    Serialise(#[source] serde_json::Error),
}

impl OrderRow {
    /// Writes the working aggregate back into `state`, in the current version of its form,
    /// before the row is stored.
    ///
    /// # Errors
    /// When the state does not serialise (it always does for domain types).
    pub fn seal(&mut self) -> Result<(), ApplyError> {
        if let Some(order) = &self.order {
            self.state = serde_json::to_string(order).map_err(ApplyError::Serialise)?;
            self.state_version = ORDER_STATE_VERSION;
        }
        Ok(())
    }
}

/// A row of `order_timeline`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub order_id: Uuid,
    pub revision: i64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub position: String,
    pub event_id: Uuid,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub summary: String,
}

/// The order id of an `order-<uuid>` stream.
pub fn order_id_of(stream_id: &str) -> Option<Uuid> {
    stream_id
        .strip_prefix(domain::ORDER_STREAM_PREFIX)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// When the event happened: the command's time if it carried one, else when it was stored.
fn occurred_at(event: &RecordedEvent) -> DateTime<Utc> {
    event.metadata.occurred_at.unwrap_or(event.recorded_at)
}

/// Applies one event to an order's row in place (`None` before its first event) and returns
/// its timeline entry, or `None` when the event was applied before (its revision is not newer
/// than the row's).
///
/// # Errors
/// Why the event cannot be applied: it does not decode, it is not the next revision, an
/// order's first event is not `OrderPlaced`, or the stored state is in another version. The row is then unchanged and the
/// caller dead-letters the event.
pub fn apply(
    slot: &mut Option<OrderRow>,
    event: &RecordedEvent,
    deadlines: &Deadlines,
) -> Result<Option<TimelineRow>, ApplyError> {
    if let Some(reason) = &event.malformed {
        return Err(ApplyError::Malformed {
            event_type: event.event_type.clone(),
            reason: reason.clone(),
        });
    }
    let order_id = order_id_of(&event.stream_id)
        .ok_or_else(|| ApplyError::NotAnOrderStream(event.stream_id.clone()))?;
    let revision = i64::try_from(event.revision).map_err(|_| ApplyError::RevisionOutOfRange)?;
    if let Some(row) = slot.as_ref() {
        if revision <= row.stream_revision {
            return Ok(None);
        }
        if revision != row.stream_revision + 1 {
            return Err(ApplyError::RevisionGap {
                at: row.stream_revision,
                revision,
            });
        }
    } else if revision != 0 {
        return Err(ApplyError::NoRow(revision));
    }
    let decoded = OrderEvent::decode(&event.event_type, event.schema_version, &event.data)?;
    let at = occurred_at(event);
    let row = match slot {
        Some(row) => {
            let order = match row.order.take() {
                Some(order) => order,
                None if row.state_version != ORDER_STATE_VERSION => {
                    return Err(ApplyError::StateVersion {
                        stored: row.state_version,
                    })
                }
                None => serde_json::from_str::<Order>(&row.state)
                    .map_err(ApplyError::StateDoesNotLoad)?,
            };
            // A placed order stays placed whatever the event.
            row.order = evolve(OrderState::Placed(Box::new(order)), &decoded)
                .into_order()
                .map(|order| *order);
            row
        }
        None => {
            let Some(order) = evolve(OrderState::NotPlaced, &decoded).into_order() else {
                return Err(ApplyError::NotFirst(event.event_type.clone()));
            };
            slot.insert(new_row(order_id, *order, at)?)
        }
    };
    stamp_milestone(row, &decoded, at);
    derive(row, at, deadlines);
    let position = event.position.to_string();
    row.stream_revision = revision;
    row.last_position.clone_from(&position);
    row.last_position_commit = event.position.commit as i64;
    row.last_position_prepare = event.position.prepare as i64;
    if row.correlation_id.is_none() {
        row.correlation_id
            .clone_from(&event.metadata.correlation_id);
    }
    Ok(Some(TimelineRow {
        order_id,
        revision,
        event_type: event.event_type.clone(),
        occurred_at: at,
        recorded_at: event.recorded_at,
        position,
        event_id: event.id,
        correlation_id: event.metadata.correlation_id.clone(),
        causation_id: event.metadata.causation_id.clone(),
        summary: decoded.summary(),
    }))
}

fn new_row(order_id: Uuid, order: Order, at: DateTime<Utc>) -> Result<OrderRow, ApplyError> {
    Ok(OrderRow {
        order_id,
        status: String::new(),
        customer_id: order.customer_id.to_string(),
        currency: order.currency.code().to_owned(),
        total_minor: order.total_minor,
        line_count: order.lines.len() as i32,
        lines: to_json(&order.lines)?,
        shipping_address: to_json(&order.shipping_address)?,
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

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, ApplyError> {
    serde_json::to_value(value).map_err(ApplyError::Serialise)
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
    row.pending_actions = order
        .pending_actions()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    row.compensations_owed = order
        .compensations_owed()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    row.compensations_done = order
        .compensations_done()
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
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
