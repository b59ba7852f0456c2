//! Request and response bodies. Requests hold raw values; `into_command` parses them into the
//! domain's value objects and collects every invalid field, so one 422 lists them all.

use crate::error::FieldError;
use domain::{
    AddressLine, Carrier, CountryCode, Currency, CustomerId, Money, OrderCommand, OrderId,
    OrderLine, PaymentId, PlaceOrder, Quantity, Reason, ReservationId, ShippingAddress, Sku,
    TrackingNumber, ValueError,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Collects field errors while parsing.
#[derive(Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    pub fn check<T>(
        &mut self,
        field: impl Into<String>,
        parsed: Result<T, ValueError>,
    ) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError {
                    field: field.into(),
                    message: e.0,
                });
                None
            }
        }
    }

    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The value if no field failed; all failures otherwise.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(self.0),
        }
    }
}

/// A request body that becomes one command for an order.
pub trait CommandBody: for<'de> Deserialize<'de> {
    /// Parses the body into a command for `order_id`.
    ///
    /// # Errors
    /// Every invalid field, with a message.
    fn into_command(self, order_id: OrderId) -> Result<OrderCommand, Vec<FieldError>>;
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    /// Letters, digits, `-`, `_`, `.`; 1-64 characters; distinct within an order.
    #[schema(example = "SKU-123")]
    pub sku: String,
    /// 1 to 1000.
    #[schema(example = 2)]
    pub quantity: i64,
    /// Unit price in minor units (cents) of the order's currency; 0 or more.
    #[schema(example = 1999)]
    pub unit_price_minor: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(example = "DE")]
    pub country: String,
}

/// Place an order. `order_id` is optional: when absent it is derived from the
/// `Idempotency-Key` (so a retry lands on the same order) or generated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    #[serde(default)]
    #[schema(format = Uuid)]
    pub order_id: Option<String>,
    #[schema(example = "customer-42")]
    pub customer_id: String,
    /// ISO 4217, e.g. `EUR`.
    #[schema(example = "EUR")]
    pub currency: String,
    /// 1 to 100 lines.
    pub lines: Vec<OrderLineRequest>,
    pub shipping_address: AddressRequest,
}

impl PlaceOrderRequest {
    /// Parses the body; `order_id` is the id chosen when the body does not name one.
    ///
    /// # Errors
    /// Every invalid field, with a message.
    pub fn into_command(
        self,
        fallback_id: OrderId,
    ) -> Result<(OrderId, OrderCommand), Vec<FieldError>> {
        let mut f = Fields::default();
        let order_id = match &self.order_id {
            Some(raw) => f.check("order_id", OrderId::parse(raw)),
            None => Some(fallback_id),
        };
        let customer_id = f.check("customer_id", CustomerId::parse(&self.customer_id));
        let currency = f.check("currency", Currency::parse(&self.currency));
        if self.lines.is_empty() || self.lines.len() > domain::order::MAX_LINES {
            f.fail(
                "lines",
                format!(
                    "an order needs between 1 and {} lines",
                    domain::order::MAX_LINES
                ),
            );
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut seen = std::collections::HashSet::new();
        for (i, line) in self.lines.iter().enumerate() {
            let sku = f.check(format!("lines[{i}].sku"), Sku::parse(&line.sku));
            if let Some(sku) = &sku {
                if !seen.insert(sku.as_str().to_owned()) {
                    f.fail(
                        format!("lines[{i}].sku"),
                        "sku appears on an earlier line; merge the lines",
                    );
                }
            }
            let quantity = f.check(
                format!("lines[{i}].quantity"),
                Quantity::parse(line.quantity),
            );
            if line.unit_price_minor < 0 || line.unit_price_minor > Money::MAX_UNIT_MINOR {
                f.fail(
                    format!("lines[{i}].unit_price_minor"),
                    format!(
                        "unit price must be between 0 and {} minor units",
                        Money::MAX_UNIT_MINOR
                    ),
                );
            }
            if let (Some(sku), Some(quantity)) = (sku, quantity) {
                lines.push(OrderLine {
                    sku,
                    quantity,
                    unit_price_minor: line.unit_price_minor,
                });
            }
        }
        let a = &self.shipping_address;
        let address = (|| {
            Some(ShippingAddress {
                name: f.check("shipping_address.name", AddressLine::parse(&a.name))?,
                line1: f.check("shipping_address.line1", AddressLine::parse(&a.line1))?,
                line2: match &a.line2 {
                    Some(l) => Some(f.check("shipping_address.line2", AddressLine::parse(l))?),
                    None => None,
                },
                city: f.check("shipping_address.city", AddressLine::parse(&a.city))?,
                postal_code: f.check(
                    "shipping_address.postal_code",
                    AddressLine::parse(&a.postal_code),
                )?,
                country: f.check("shipping_address.country", CountryCode::parse(&a.country))?,
            })
        })();
        let command = (|| {
            let order_id = order_id?;
            Some((
                order_id,
                OrderCommand::PlaceOrder(PlaceOrder {
                    order_id,
                    customer_id: customer_id?,
                    currency: currency?,
                    lines,
                    shipping_address: address?,
                }),
            ))
        })();
        f.finish(command)
    }
}

/// The payment service authorized the order total.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAuthorizedRequest {
    pub payment_id: String,
    /// Must equal the order total, in minor units.
    pub amount_minor: i64,
    pub currency: String,
}

impl CommandBody for PaymentAuthorizedRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let payment_id = f.check("payment_id", PaymentId::parse(&self.payment_id));
        let currency = f.check("currency", Currency::parse(&self.currency));
        let amount =
            currency.and_then(|c| f.check("amount_minor", Money::parse(self.amount_minor, c)));
        let command = payment_id.zip(amount).map(|(payment_id, amount)| {
            OrderCommand::RecordPaymentAuthorized { payment_id, amount }
        });
        f.finish(command)
    }
}

/// The payment service declined the payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentDeclinedRequest {
    pub payment_id: String,
    pub reason: String,
}

impl CommandBody for PaymentDeclinedRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let payment_id = f.check("payment_id", PaymentId::parse(&self.payment_id));
        let reason = f.check("reason", Reason::parse(&self.reason));
        let command = payment_id
            .zip(reason)
            .map(|(payment_id, reason)| OrderCommand::RecordPaymentDeclined { payment_id, reason });
        f.finish(command)
    }
}

/// A payment id alone: the payment was voided (compensation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentVoidedRequest {
    pub payment_id: String,
}

impl CommandBody for PaymentVoidedRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let payment_id = f.check("payment_id", PaymentId::parse(&self.payment_id));
        f.finish(payment_id.map(|payment_id| OrderCommand::RecordPaymentVoided { payment_id }))
    }
}

/// A reservation id alone: stock reserved, or (as compensation) released.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    pub reservation_id: String,
}

/// The inventory service reserved the stock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct InventoryReservedRequest(pub ReservationRequest);

impl CommandBody for InventoryReservedRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let id = f.check(
            "reservation_id",
            ReservationId::parse(&self.0.reservation_id),
        );
        f.finish(id.map(|reservation_id| OrderCommand::RecordInventoryReserved { reservation_id }))
    }
}

/// The reserved stock was released (compensation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct InventoryReleasedRequest(pub ReservationRequest);

impl CommandBody for InventoryReleasedRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let id = f.check(
            "reservation_id",
            ReservationId::parse(&self.0.reservation_id),
        );
        f.finish(id.map(|reservation_id| OrderCommand::RecordInventoryReleased { reservation_id }))
    }
}

/// The inventory service could not reserve the stock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryShortageRequest {
    pub reservation_id: String,
    pub reason: String,
}

impl CommandBody for InventoryShortageRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let id = f.check("reservation_id", ReservationId::parse(&self.reservation_id));
        let reason = f.check("reason", Reason::parse(&self.reason));
        let command =
            id.zip(reason).map(
                |(reservation_id, reason)| OrderCommand::RecordInventoryShortage {
                    reservation_id,
                    reason,
                },
            );
        f.finish(command)
    }
}

/// The order left with a carrier.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipRequest {
    #[schema(example = "DHL")]
    pub carrier: String,
    /// 4-64 letters, digits or `-`.
    #[schema(example = "JD014600006281230")]
    pub tracking_number: String,
}

impl CommandBody for ShipRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let carrier = f.check("carrier", Carrier::parse(&self.carrier));
        let tracking = f.check(
            "tracking_number",
            TrackingNumber::parse(&self.tracking_number),
        );
        let command =
            carrier
                .zip(tracking)
                .map(|(carrier, tracking_number)| OrderCommand::ShipOrder {
                    carrier,
                    tracking_number,
                });
        f.finish(command)
    }
}

/// A reason, in words: for cancelling or escalating.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    pub reason: String,
}

/// Cancel the order (only before fulfilment starts).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct CancelRequest(pub ReasonRequest);

impl CommandBody for CancelRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let reason = f.check("reason", Reason::parse(&self.0.reason));
        f.finish(reason.map(|reason| OrderCommand::CancelOrder { reason }))
    }
}

/// Escalate the order to a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct EscalateRequest(pub ReasonRequest);

impl CommandBody for EscalateRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let reason = f.check("reason", Reason::parse(&self.0.reason));
        f.finish(reason.map(|reason| OrderCommand::EscalateOrder { reason }))
    }
}

/// No fields: start fulfilment. An empty body is accepted too.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartFulfillmentRequest {}

impl CommandBody for StartFulfillmentRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        Ok(OrderCommand::StartFulfillment)
    }
}

/// No fields: the carrier confirmed delivery. An empty body is accepted too.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmDeliveryRequest {}

impl CommandBody for ConfirmDeliveryRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        Ok(OrderCommand::ConfirmDelivery)
    }
}

/// What happened: the order's state after the command, and where to wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommandOutcome {
    #[schema(format = Uuid)]
    pub order_id: String,
    /// PLACED, ACCEPTED, IN_FULFILLMENT, SHIPPED, DELIVERED, REJECTED or CANCELLED.
    #[schema(example = "PLACED")]
    pub status: String,
    /// What the workflow waits for next, e.g. AUTHORIZE_PAYMENT.
    pub pending_actions: Vec<String>,
    /// Compensations owed and not yet done: VOID_PAYMENT, RELEASE_INVENTORY.
    pub compensations_owed: Vec<String>,
    /// The order stream's revision after the command; use it in `If-Match`.
    pub revision: u64,
    /// The log position of the append; pass it to the query API to read your own write.
    #[schema(example = "812-3")]
    pub consistency_token: String,
    pub correlation_id: String,
    /// The events this command recorded (empty for a re-reported fact).
    pub events: Vec<String>,
}
