//! One builder for a known event log: workflow commands decided by the domain on the rebuilt
//! state of their instance and appended at the expected revision with their metadata, exactly
//! as the command API would, plus raw appends for payloads the domain would never write.
//! The standard order and return commands live here too, so every crate's tests build the
//! same facts the same way.

use chrono::{DateTime, Duration, Utc};
use domain::*;
use event_store::{EventStore, ExpectedRevision, Metadata, NewEvent, Position, Principal};
use serde_json::Value;
use uuid::Uuid;

/// What one command appended: its events' count, the revision and log position of the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub events: usize,
    pub revision: u64,
    pub position: Position,
}

/// What one [`Log::record`] call appended, command by command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded(pub Vec<Appended>);

impl Recorded {
    /// How many events were written.
    pub fn events(&self) -> usize {
        self.0.iter().map(|a| a.events).sum()
    }

    /// The log position of the last event written: the consistency token of the last command.
    pub fn position(&self) -> Option<Position> {
        self.0.last().map(|a| a.position)
    }
}

/// Writes known histories into a store.
#[derive(Clone, Copy)]
pub struct Log<'a> {
    store: &'a dyn EventStore,
    /// When the first command of a `record` call occurred; each next one a minute later.
    /// `None` leaves `occurred_at` unset.
    at: Option<DateTime<Utc>>,
    /// Who the next commands are recorded as sent by; `None` records no principal.
    by: Option<&'a Principal>,
}

/// The correlation id the log gives an instance's events: `corr-<id>` for an order, and
/// `corr-<workflow>-<id>` for another workflow, whose instances share their order's id.
pub fn correlation_id<W: Workflow>(instance: Uuid) -> String {
    if W::NAME == Orders::NAME {
        format!("corr-{instance}")
    } else {
        format!("corr-{}-{instance}", W::NAME)
    }
}

impl<'a> Log<'a> {
    pub fn new(store: &'a dyn EventStore) -> Self {
        Self {
            store,
            at: None,
            by: None,
        }
    }

    /// The same log, recording its next commands as sent by `principal`.
    pub fn by(self, principal: &'a Principal) -> Self {
        Self {
            by: Some(principal),
            ..self
        }
    }

    /// The same log, recording its next commands as occurring from `time` on.
    pub fn at(self, time: DateTime<Utc>) -> Self {
        Self {
            at: Some(time),
            ..self
        }
    }

    /// Decides `commands` one by one on the instance's rebuilt state and appends each
    /// command's events in one append at the expected revision; a command that decides
    /// nothing appends nothing. Returns what each appending command wrote.
    ///
    /// # Panics
    /// When the store fails, a stored event does not decode or the workflow refuses a command:
    /// a fixture that cannot be built is a broken test.
    pub async fn record<W: Workflow>(&self, instance: Uuid, commands: Vec<W::Command>) -> Recorded {
        let stream = W::stream_name(instance);
        let history = event_store::read_whole_stream(self.store, &stream)
            .await
            .expect("read the instance's stream");
        let events: Vec<W::Event> = history
            .iter()
            .map(|e| W::Event::decode(&e.event_type, e.schema_version, &e.data).unwrap())
            .collect();
        let mut state = W::rebuild(&events);
        let mut revision = history.last().map(|e| e.revision);
        let mut appended = Vec::new();
        for (i, command) in commands.into_iter().enumerate() {
            let events = W::decide(&state, command.clone())
                .unwrap_or_else(|e| panic!("{} refuses {command:?}: {e}", W::NAME));
            if events.is_empty() {
                continue;
            }
            let metadata = Metadata {
                correlation_id: Some(correlation_id::<W>(instance)),
                causation_id: Some(format!("cmd-{i}")),
                occurred_at: self.at.map(|t| t + Duration::minutes(i as i64)),
                principal: self.by.cloned(),
                ..Metadata::default()
            };
            let new = events
                .iter()
                .map(|e| NewEvent {
                    id: Uuid::new_v4(),
                    event_type: e.event_type().into(),
                    schema_version: e.schema_version(),
                    data: e.data(),
                    metadata: metadata.clone(),
                })
                .collect();
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            let result = self
                .store
                .append(&stream, expected, new)
                .await
                .expect("append the decided events");
            revision = Some(result.next_expected_revision);
            appended.push(Appended {
                events: events.len(),
                revision: result.next_expected_revision,
                position: result.position,
            });
            state = events.iter().fold(state, W::evolve);
        }
        Recorded(appended)
    }

    /// Records order commands: [`Log::record`] for the order workflow.
    pub async fn order(&self, order_id: Uuid, commands: Vec<OrderCommand>) -> Recorded {
        self.record::<Orders>(order_id, commands).await
    }

    /// Places `order` and takes it through payment of its total, reservation, fulfilment,
    /// shipping and delivery (six commands, seven events).
    pub async fn delivered_order(&self, order: PlaceOrder) -> Recorded {
        let id = order.order_id.as_uuid();
        let total = order.lines.iter().map(|l| l.total_minor()).sum();
        self.order(
            id,
            vec![
                OrderCommand::PlaceOrder(order),
                authorize("pay-1", total),
                reserve("res-1"),
                OrderCommand::StartFulfillment,
                ship("UPS", "1Z999"),
                OrderCommand::ConfirmDelivery,
            ],
        )
        .await
    }

    /// Appends one event exactly as given, bypassing the domain: a payload the readers must
    /// survive, or an older schema version. Returns its position.
    ///
    /// # Panics
    /// When the store refuses the append (e.g. `expected` is not the stream's revision).
    pub async fn append_raw(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        event_type: &str,
        schema_version: u32,
        data: Value,
    ) -> Position {
        self.store
            .append(
                stream,
                expected,
                vec![NewEvent {
                    id: Uuid::new_v4(),
                    event_type: event_type.into(),
                    schema_version,
                    data,
                    metadata: Metadata::default(),
                }],
            )
            .await
            .expect("append the raw event")
            .position
    }
}

/// An order in EUR for `customer` of `lines` (sku, quantity, unit price in cents), shipped to
/// Ada, 1 Main St, Flat 2, 69001 Lyon, FR.
pub fn new_order(id: Uuid, customer: &str, lines: &[(&str, u32, i64)]) -> PlaceOrder {
    PlaceOrder {
        order_id: OrderId::new(id),
        customer_id: CustomerId::parse(customer).unwrap(),
        currency: eur(),
        lines: lines
            .iter()
            .map(|&(sku, quantity, unit_price_minor)| OrderLine {
                sku: Sku::parse(sku).unwrap(),
                quantity: Quantity::parse(i64::from(quantity)).unwrap(),
                unit_price_minor,
            })
            .collect(),
        shipping_address: ShippingAddress {
            name: AddressLine::parse("Ada").unwrap(),
            line1: AddressLine::parse("1 Main St").unwrap(),
            line2: Some(AddressLine::parse("Flat 2").unwrap()),
            city: AddressLine::parse("Lyon").unwrap(),
            postal_code: AddressLine::parse("69001").unwrap(),
            country: CountryCode::parse("FR").unwrap(),
        },
    }
}

/// Places [`new_order`].
pub fn place(id: Uuid, customer: &str, lines: &[(&str, u32, i64)]) -> OrderCommand {
    OrderCommand::PlaceOrder(new_order(id, customer, lines))
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn euros(amount_minor: i64) -> Money {
    Money::parse(amount_minor, eur()).unwrap()
}

/// Payment `payment` authorized for `amount_minor` EUR cents.
pub fn authorize(payment: &str, amount_minor: i64) -> OrderCommand {
    OrderCommand::RecordPaymentAuthorized {
        payment_id: PaymentId::parse(payment).unwrap(),
        amount: euros(amount_minor),
    }
}

/// Inventory reserved under `reservation`.
pub fn reserve(reservation: &str) -> OrderCommand {
    OrderCommand::RecordInventoryReserved {
        reservation_id: ReservationId::parse(reservation).unwrap(),
    }
}

/// Shipped with `carrier` under `tracking`.
pub fn ship(carrier: &str, tracking: &str) -> OrderCommand {
    OrderCommand::ShipOrder {
        carrier: Carrier::parse(carrier).unwrap(),
        tracking_number: TrackingNumber::parse(tracking).unwrap(),
    }
}

/// The order cancelled for `why`.
pub fn cancel_order(why: &str) -> OrderCommand {
    OrderCommand::CancelOrder {
        reason: Reason::parse(why).unwrap(),
    }
}

/// A return of `lines` (sku, quantity) of `order`, delivered at `delivered_at`, requested at
/// `requested_at` for `reason`, in the default window.
pub fn request_return(
    order: &PlaceOrder,
    delivered_at: DateTime<Utc>,
    requested_at: DateTime<Utc>,
    lines: &[(&str, i64)],
    reason: &str,
) -> ReturnCommand {
    ReturnCommand::RequestReturn(RequestReturn {
        order: ReturnRequestContext {
            order_id: order.order_id,
            order_status: Status::Delivered,
            delivered_at: Some(delivered_at),
            lines: order.lines.clone(),
            currency: order.currency,
        },
        requested_at,
        window: ReturnWindow::default(),
        lines: lines
            .iter()
            .map(|&(sku, quantity)| RequestedLine::parse(sku, quantity).unwrap())
            .collect(),
        reason: Reason::parse(reason).unwrap(),
    })
}

/// The return approved under `rma`.
pub fn approve(rma: &str) -> ReturnCommand {
    ReturnCommand::ApproveReturn {
        rma_number: RmaNumber::parse(rma).unwrap(),
    }
}

/// The returned items received, each sku with its inspection's outcome.
pub fn receive(inspections: &[(&str, InspectionOutcome)]) -> ReturnCommand {
    ReturnCommand::RecordItemsReceived {
        inspections: inspections
            .iter()
            .map(|&(sku, outcome)| LineInspection {
                sku: Sku::parse(sku).unwrap(),
                outcome,
            })
            .collect(),
    }
}

/// Refund `refund` issued for `amount_minor` EUR cents.
pub fn refund(refund: &str, amount_minor: i64) -> ReturnCommand {
    ReturnCommand::RecordRefundIssued {
        refund_id: RefundId::parse(refund).unwrap(),
        amount: euros(amount_minor),
    }
}

/// The return cancelled for `why`.
pub fn cancel_return(why: &str) -> ReturnCommand {
    ReturnCommand::CancelReturn {
        reason: Reason::parse(why).unwrap(),
    }
}
