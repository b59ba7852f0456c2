//! Request and response bodies. Requests hold raw values; `into_command` parses them into the
//! domain's value objects and collects every invalid field, so one 422 lists them all.

use crate::error::FieldError;
use crate::workflow::WorkflowApi;
use domain::{
    AddressLine, Carrier, CountryCode, Currency, CustomerId, Money, OrderCommand, OrderId,
    OrderLine, Orders, PaymentId, PlaceOrder, Quantity, Reason, ReservationId, ShippingAddress,
    Sku, TrackingNumber, ValueError,
};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
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

/// The documented rule of each request field, built from the limits the domain's parsers
/// enforce, so that what the OpenAPI document calls valid is exactly what the server accepts.
/// (Patterns use only syntax that ECMA-262, Rust's `regex` and Python's `re` read alike.)
pub mod rules {
    use domain::values::CURRENCIES;
    use domain::{
        AddressLine, Carrier, CustomerId, Money, PaymentId, Quantity, Reason, ReservationId, Sku,
        TrackingNumber,
    };
    use utoipa::openapi::schema::{
        ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
    };
    use utoipa::openapi::{Array, Object, Ref};

    /// The characters `str::trim` removes around a value (Unicode `White_Space`).
    const WHITESPACE: &str = r"\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
    /// Control characters (Unicode `Cc`), refused inside a value.
    const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

    /// `core`, with anything the parser trims around it.
    fn trimmed(core: &str) -> String {
        format!("^[{WHITESPACE}]*{core}[{WHITESPACE}]*$")
    }

    fn string(pattern: String, description: String) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
    }

    /// Free text as the domain parses it: 1 to `max` characters once trimmed, no control
    /// characters.
    fn text(max: usize) -> ObjectBuilder {
        let edge = format!("[^{WHITESPACE}{CONTROL}]");
        let core = format!("({edge}|{edge}[^{CONTROL}]{{0,{}}}{edge})", max - 2);
        string(
            trimmed(&core),
            format!(
                "1 to {max} characters (surrounding whitespace is trimmed); no control characters."
            ),
        )
        .min_length(Some(1))
    }

    fn integer(min: i64, max: i64, description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(description))
            .build()
    }

    pub fn customer_id() -> Object {
        text(CustomerId::MAX_CHARS)
            .examples(["customer-42"])
            .build()
    }
    pub fn payment_id() -> Object {
        text(PaymentId::MAX_CHARS).build()
    }
    pub fn reservation_id() -> Object {
        text(ReservationId::MAX_CHARS).build()
    }
    pub fn carrier() -> Object {
        text(Carrier::MAX_CHARS).examples(["DHL"]).build()
    }
    pub fn reason() -> Object {
        text(Reason::MAX_CHARS).build()
    }
    pub fn address_line() -> Object {
        text(AddressLine::MAX_CHARS).build()
    }
    /// An optional address line: absent, `null`, or an address line.
    pub fn optional_address_line() -> Object {
        text(AddressLine::MAX_CHARS)
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .build()
    }

    pub fn currency() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(CURRENCIES.iter().copied()))
            .description(Some("ISO 4217, upper case."))
            .examples(["EUR"])
            .build()
    }

    /// Exactly two upper-case letters, not trimmed (the length bound also keeps out a trailing
    /// newline, which a `$` in some regex dialects lets through).
    pub fn country() -> Object {
        string(
            "^[A-Z]{2}$".to_owned(),
            "ISO 3166-1 alpha-2, e.g. `DE`.".to_owned(),
        )
        .min_length(Some(2))
        .max_length(Some(2))
        .examples(["DE"])
        .build()
    }

    pub fn sku() -> Object {
        let max = Sku::MAX_LEN;
        string(
            trimmed(&format!("[A-Za-z0-9._-]{{1,{max}}}")),
            format!("Letters, digits, `-`, `_`, `.`; 1-{max} characters (surrounding whitespace is trimmed); distinct within an order."),
        )
        .examples(["SKU-123"])
        .build()
    }

    pub fn tracking_number() -> Object {
        let (min, max) = (TrackingNumber::MIN_LEN, TrackingNumber::MAX_LEN);
        string(
            trimmed(&format!("[A-Za-z0-9-]{{{min},{max}}}")),
            format!("{min}-{max} letters, digits or `-` (surrounding whitespace is trimmed)."),
        )
        .examples(["JD014600006281230"])
        .build()
    }

    pub fn quantity() -> Object {
        integer(1, Quantity::MAX, "How many units.")
    }

    pub fn unit_price_minor() -> Object {
        integer(
            0,
            Money::MAX_UNIT_MINOR,
            "Unit price in minor units (cents) of the order's currency.",
        )
    }

    pub fn amount_minor() -> Object {
        integer(
            0,
            Money::MAX_UNIT_MINOR,
            "Must equal the order total, in minor units.",
        )
    }

    pub fn lines() -> Array {
        ArrayBuilder::new()
            .items(Ref::from_schema_name("OrderLineRequest"))
            .min_items(Some(1))
            .max_items(Some(domain::order::MAX_LINES))
            .description(Some("The order's lines, with distinct SKUs."))
            .build()
    }
}

/// An integer field: JSON Schema, and so the OpenAPI document, calls `2.0` an integer too, so a
/// whole number written with a decimal point is read as that integer.
pub(crate) fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    // Between these bounds every f64 converts to an i64 exactly.
    const BOUND: f64 = 9_223_372_036_854_775_808.0;
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (-BOUND..BOUND).contains(&f) => Ok(f as i64),
        _ => Err(D::Error::custom(format!(
            "invalid value: {n}, expected a whole number that fits in 64 bits"
        ))),
    }
}

/// A request body that becomes one command for an existing instance of workflow `W`.
pub trait CommandBody<W: WorkflowApi>: for<'de> Deserialize<'de> {
    /// Parses the body into a command for the instance `id`.
    ///
    /// # Errors
    /// Every invalid field, with a message.
    fn into_command(self, id: W::Id) -> Result<W::Command, Vec<FieldError>>;
}

/// A request body that creates an instance of workflow `W`.
pub trait CreateBody<W: WorkflowApi>: for<'de> Deserialize<'de> {
    /// Parses the body into the new instance's id and the command creating it; `fallback_id`
    /// is the id chosen when the body does not name one.
    ///
    /// # Errors
    /// Every invalid field, with a message.
    fn into_command(self, fallback_id: W::Id) -> Result<(W::Id, W::Command), Vec<FieldError>>;
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    #[schema(schema_with = rules::sku)]
    pub sku: String,
    #[schema(schema_with = rules::quantity)]
    #[serde(deserialize_with = "whole_number")]
    pub quantity: i64,
    #[schema(schema_with = rules::unit_price_minor)]
    #[serde(deserialize_with = "whole_number")]
    pub unit_price_minor: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    #[schema(schema_with = rules::address_line)]
    pub name: String,
    #[schema(schema_with = rules::address_line)]
    pub line1: String,
    #[serde(default)]
    #[schema(schema_with = rules::optional_address_line)]
    pub line2: Option<String>,
    #[schema(schema_with = rules::address_line)]
    pub city: String,
    #[schema(schema_with = rules::address_line)]
    pub postal_code: String,
    #[schema(schema_with = rules::country)]
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
    #[schema(schema_with = rules::customer_id)]
    pub customer_id: String,
    #[schema(schema_with = rules::currency)]
    pub currency: String,
    #[schema(schema_with = rules::lines)]
    pub lines: Vec<OrderLineRequest>,
    pub shipping_address: AddressRequest,
}

impl CreateBody<Orders> for PlaceOrderRequest {
    fn into_command(
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
    #[schema(schema_with = rules::payment_id)]
    pub payment_id: String,
    #[schema(schema_with = rules::amount_minor)]
    #[serde(deserialize_with = "whole_number")]
    pub amount_minor: i64,
    #[schema(schema_with = rules::currency)]
    pub currency: String,
}

impl CommandBody<Orders> for PaymentAuthorizedRequest {
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
    #[schema(schema_with = rules::payment_id)]
    pub payment_id: String,
    #[schema(schema_with = rules::reason)]
    pub reason: String,
}

impl CommandBody<Orders> for PaymentDeclinedRequest {
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
    #[schema(schema_with = rules::payment_id)]
    pub payment_id: String,
}

impl CommandBody<Orders> for PaymentVoidedRequest {
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
    #[schema(schema_with = rules::reservation_id)]
    pub reservation_id: String,
}

/// The inventory service reserved the stock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct InventoryReservedRequest(pub ReservationRequest);

impl CommandBody<Orders> for InventoryReservedRequest {
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

impl CommandBody<Orders> for InventoryReleasedRequest {
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
    #[schema(schema_with = rules::reservation_id)]
    pub reservation_id: String,
    #[schema(schema_with = rules::reason)]
    pub reason: String,
}

impl CommandBody<Orders> for InventoryShortageRequest {
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
    #[schema(schema_with = rules::carrier)]
    pub carrier: String,
    #[schema(schema_with = rules::tracking_number)]
    pub tracking_number: String,
}

impl CommandBody<Orders> for ShipRequest {
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
    #[schema(schema_with = rules::reason)]
    pub reason: String,
}

/// Cancel the order (only before fulfilment starts).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct CancelRequest(pub ReasonRequest);

impl CommandBody<Orders> for CancelRequest {
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

impl CommandBody<Orders> for EscalateRequest {
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

impl CommandBody<Orders> for StartFulfillmentRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        Ok(OrderCommand::StartFulfillment)
    }
}

/// No fields: the carrier confirmed delivery. An empty body is accepted too.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmDeliveryRequest {}

impl CommandBody<Orders> for ConfirmDeliveryRequest {
    fn into_command(self, _: OrderId) -> Result<OrderCommand, Vec<FieldError>> {
        Ok(OrderCommand::ConfirmDelivery)
    }
}

/// What happened: the instance's state after the command, and where to wait for it. Serialised
/// with the instance's id first, under its workflow's name for it ([`WorkflowApi::ID_FIELD`],
/// e.g. `order_id`); each workflow's route module documents the shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The field the id is written under.
    pub id_field: &'static str,
    pub id: String,
    pub status: String,
    pub pending_actions: Vec<String>,
    pub compensations_owed: Vec<String>,
    pub revision: u64,
    pub consistency_token: String,
    pub correlation_id: String,
    pub events: Vec<String>,
}

/// Every field of an outcome but the id, in the order they are written.
#[derive(Deserialize)]
struct OutcomeFields {
    status: String,
    pending_actions: Vec<String>,
    compensations_owed: Vec<String>,
    revision: u64,
    consistency_token: String,
    correlation_id: String,
    events: Vec<String>,
}

impl CommandOutcome {
    /// An outcome of workflow `W` as [`CommandOutcome`]'s `Serialize` wrote it.
    ///
    /// # Errors
    /// When `value` is not such an outcome.
    pub fn from_json<W: WorkflowApi>(mut value: serde_json::Value) -> serde_json::Result<Self> {
        let id = value
            .as_object_mut()
            .and_then(|o| o.remove(W::ID_FIELD))
            .ok_or_else(|| serde_json::Error::missing_field(W::ID_FIELD))?;
        let id = String::deserialize(id)?;
        let f = OutcomeFields::deserialize(value)?;
        Ok(Self {
            id_field: W::ID_FIELD,
            id,
            status: f.status,
            pending_actions: f.pending_actions,
            compensations_owed: f.compensations_owed,
            revision: f.revision,
            consistency_token: f.consistency_token,
            correlation_id: f.correlation_id,
            events: f.events,
        })
    }
}

impl Serialize for CommandOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("CommandOutcome", 8)?;
        s.serialize_field(self.id_field, &self.id)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("pending_actions", &self.pending_actions)?;
        s.serialize_field("compensations_owed", &self.compensations_owed)?;
        s.serialize_field("revision", &self.revision)?;
        s.serialize_field("consistency_token", &self.consistency_token)?;
        s.serialize_field("correlation_id", &self.correlation_id)?;
        s.serialize_field("events", &self.events)?;
        s.end()
    }
}
