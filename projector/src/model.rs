//! The rows of the read models and how one event changes them. Pure: no database here.
//!
//! A row carries the domain's aggregate state (`state`), so applying the next event is
//! `evolve` plus copying the derived fields; nothing depends on the wall clock or on batch
//! boundaries, which is what makes a rebuild identical to the incremental run.

use crate::config::Deadlines;
use chrono::{DateTime, Utc};
use domain::{evolve, EventContract, Inventory, Order, OrderEvent, OrderState, Payment, Stage};
use event_store::{Metadata, RecordedEvent};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use uuid::Uuid;

/// A row of `order_status`; field names are the column names.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub status: String,
    pub customer_id: String,
    pub currency: String,
    pub total_minor: i64,
    pub line_count: i32,
    pub lines: serde_json::Value,
    pub shipping_address: serde_json::Value,
    pub last_milestone: String,
    pub last_milestone_at: DateTime<Utc>,
    pub pending_actions: Vec<String>,
    pub failure_reason: Option<String>,
    pub compensations_owed: Vec<String>,
    pub compensations_done: Vec<String>,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub payment_authorized_at: Option<DateTime<Utc>>,
    pub inventory_reserved_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub fulfillment_started_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub payment_voided_at: Option<DateTime<Utc>>,
    pub inventory_released_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub escalation_count: i32,
    pub escalation_reason: Option<String>,
    pub correlation_id: Option<String>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub stream_revision: i64,
    pub last_position: String,
    pub last_position_commit: i64,
    pub last_position_prepare: i64,
    pub state: String,
    /// The parsed `state`, kept while a batch works on the row so that each event does not
    /// parse and serialise it again; [`OrderRow::seal`] writes it back.
    pub order: Option<Order>,
}

impl OrderRow {
    /// Writes the working aggregate back into `state`, before the row is stored.
    ///
    /// # Errors
    /// When the state does not serialise (it always does for domain types).
    pub fn seal(&mut self) -> Result<(), String> {
        if let Some(order) = &self.order {
            self.state = serde_json::to_string(order).map_err(|e| e.to_string())?;
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

/// An operator's repair of a logged event: what the projection applies in its place (a row
/// of `projection_corrections`).
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: Metadata,
}

impl Correction {
    /// The repair `fixed` carries, or `None` when it is the same as the `logged` event. A
    /// malformed logged event always needs one: what the dead letter holds (the fields that
    /// decoded) is the repair, or every replay would dead-letter the logged event again.
    pub fn of(fixed: &RecordedEvent, logged: Option<&RecordedEvent>) -> Option<Self> {
        let unchanged = logged.is_some_and(|logged| {
            logged.malformed.is_none()
                && (
                    &logged.event_type,
                    logged.schema_version,
                    &logged.data,
                    &logged.metadata,
                ) == (
                    &fixed.event_type,
                    fixed.schema_version,
                    &fixed.data,
                    &fixed.metadata,
                )
        });
        (!unchanged).then(|| Self {
            event_type: fixed.event_type.clone(),
            schema_version: fixed.schema_version,
            data: fixed.data.clone(),
            metadata: fixed.metadata.clone(),
        })
    }
}

/// `event` as the projection applies it: its correction when it has one, else as logged.
pub fn corrected<'a>(
    corrections: &HashMap<Uuid, Correction>,
    event: &'a RecordedEvent,
) -> Cow<'a, RecordedEvent> {
    match corrections.get(&event.id) {
        None => Cow::Borrowed(event),
        Some(c) => Cow::Owned(RecordedEvent {
            event_type: c.event_type.clone(),
            schema_version: c.schema_version,
            data: c.data.clone(),
            metadata: c.metadata.clone(),
            // The correction is what an operator made of it: well formed by construction.
            malformed: None,
            ..event.clone()
        }),
    }
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
/// A message saying why the event cannot be applied: it does not decode, it is not the next
/// revision, or an order's first event is not `OrderPlaced`. The row is then unchanged and the
/// caller dead-letters the event.
pub fn apply(
    slot: &mut Option<OrderRow>,
    event: &RecordedEvent,
    deadlines: &Deadlines,
) -> Result<Option<TimelineRow>, String> {
    if let Some(reason) = &event.malformed {
        return Err(format!("malformed {} event: {reason}", event.event_type));
    }
    let order_id = order_id_of(&event.stream_id)
        .ok_or_else(|| format!("stream '{}' is not an order stream", event.stream_id))?;
    let revision = i64::try_from(event.revision).map_err(|_| "revision out of range".to_owned())?;
    if let Some(row) = slot.as_ref() {
        if revision <= row.stream_revision {
            return Ok(None);
        }
        if revision != row.stream_revision + 1 {
            return Err(format!(
                "revision gap: the read model is at revision {}, this event is revision {revision}",
                row.stream_revision
            ));
        }
    } else if revision != 0 {
        return Err(format!(
            "the read model has no row for this order, but this event is revision {revision}"
        ));
    }
    let decoded = OrderEvent::decode(&event.event_type, event.schema_version, &event.data)
        .map_err(|e| e.to_string())?;
    let at = occurred_at(event);
    let row = match slot {
        Some(row) => {
            let order = match row.order.take() {
                Some(order) => order,
                None => serde_json::from_str::<Order>(&row.state)
                    .map_err(|e| format!("stored state of the order does not load: {e}"))?,
            };
            // A placed order stays placed whatever the event.
            row.order = evolve(OrderState::Placed(Box::new(order)), &decoded)
                .into_order()
                .map(|order| *order);
            row
        }
        None => {
            let Some(order) = evolve(OrderState::NotPlaced, &decoded).into_order() else {
                return Err(format!(
                    "{} cannot be an order's first event; OrderPlaced must come first",
                    event.event_type
                ));
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

fn new_row(order_id: Uuid, order: Order, at: DateTime<Utc>) -> Result<OrderRow, String> {
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
        order: Some(order),
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
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
