//! The returns workflow's request bodies. Like the order bodies in [`crate::dto`], each holds
//! raw values and `into_command` parses them into the domain's value objects, collecting every
//! invalid field so one 422 lists them all; their documented rules are built from the shared
//! [`crate::dto::rules`].

use crate::dto::{rules, CommandBody, CreateBody, Fields, ReasonRequest};
use crate::error::FieldError;
use crate::returns::ReturnCaseId;
use chrono::Utc;
use domain::order::MAX_LINES;
use domain::{
    Carrier, Currency, InspectionOutcome, LineInspection, Money, OrderId, PaymentId, Reason,
    RefundId, RequestReturn, RequestedLine, ReturnCommand, ReturnRequestContext, ReturnWindow,
    Returns, RmaNumber, Sku, Status as OrderStatus, TrackingNumber,
};
use serde::Deserialize;
use std::collections::HashSet;
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::openapi::{Array, Object, Ref};
use utoipa::ToSchema;

/// The documented rules of the returns bodies' own fields, derived from the shared ones.
pub mod return_rules {
    use super::*;

    // A refund id is parsed exactly like a payment id (free text, same limit), so it is
    // documented by the same rule.
    const _: () = assert!(RefundId::MAX_CHARS == PaymentId::MAX_CHARS);

    pub fn refund_id() -> Object {
        rules::payment_id()
    }

    /// Like a tracking number (letters, digits or `-`, trimmed), with the RMA number's bounds.
    pub fn rma_number() -> Object {
        let mut schema = rules::tracking_number();
        let (from, to) = (
            format!(
                "{{{},{}}}",
                TrackingNumber::MIN_LEN,
                TrackingNumber::MAX_LEN
            ),
            format!("{{{},{}}}", RmaNumber::MIN_LEN, RmaNumber::MAX_LEN),
        );
        schema.pattern = schema.pattern.map(|p| p.replace(&from, &to));
        schema.description = Some(format!(
            "{}-{} letters, digits or `-` (surrounding whitespace is trimmed).",
            RmaNumber::MIN_LEN,
            RmaNumber::MAX_LEN
        ));
        schema.examples = vec!["RMA-1001".into()];
        schema
    }

    pub fn refund_amount_minor() -> Object {
        let mut schema = rules::amount_minor();
        schema.description =
            Some("Must equal the refund due for the accepted lines, in minor units.".to_owned());
        schema
    }

    fn array(item: &str, description: &str) -> Array {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(item))
            .min_items(Some(1))
            .max_items(Some(MAX_LINES))
            .description(Some(description))
            .build()
    }

    pub fn lines() -> Array {
        array(
            "ReturnLineRequest",
            "The lines to return, with distinct SKUs of the order.",
        )
    }

    pub fn inspections() -> Array {
        array(
            "LineInspectionRequest",
            "One inspection outcome per returned line, with distinct SKUs.",
        )
    }
}

/// Checks a list of lines: 1 to [`MAX_LINES`] of them, each SKU parsed and named once.
fn check_skus<'a>(
    f: &mut Fields,
    what: &str,
    skus: impl ExactSizeIterator<Item = &'a str>,
) -> Vec<Option<Sku>> {
    if skus.len() == 0 || skus.len() > MAX_LINES {
        f.fail(
            "lines",
            format!("{what} needs between 1 and {MAX_LINES} lines"),
        );
    }
    let mut seen = HashSet::new();
    skus.enumerate()
        .map(|(i, raw)| {
            let sku = f.check(format!("lines[{i}].sku"), Sku::parse(raw));
            if let Some(sku) = &sku {
                if !seen.insert(sku.as_str().to_owned()) {
                    f.fail(
                        format!("lines[{i}].sku"),
                        "sku appears on an earlier line; merge the lines",
                    );
                }
            }
            sku
        })
        .collect()
}

/// A line to return: a SKU of the order and how many of its units.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLineRequest {
    #[schema(schema_with = rules::sku)]
    pub sku: String,
    #[schema(schema_with = rules::quantity)]
    #[serde(deserialize_with = "crate::dto::whole_number")]
    pub quantity: i64,
}

/// Request a return of some of a delivered order's items. The order's lines, unit prices,
/// currency and delivery are read from the order when the request is handled.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestReturnRequest {
    /// The delivered order to return items of; the return is at `/returns/{order_id}`.
    #[schema(format = Uuid)]
    pub order_id: String,
    #[schema(schema_with = return_rules::lines)]
    pub lines: Vec<ReturnLineRequest>,
    #[schema(schema_with = rules::reason)]
    pub reason: String,
}

impl CreateBody<Returns> for RequestReturnRequest {
    fn into_command(
        self,
        _: ReturnCaseId,
    ) -> Result<(ReturnCaseId, ReturnCommand), Vec<FieldError>> {
        let mut f = Fields::default();
        let order_id = f.check("order_id", OrderId::parse(&self.order_id));
        let skus = check_skus(
            &mut f,
            "a return",
            self.lines.iter().map(|l| l.sku.as_str()),
        );
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, (line, sku)) in self.lines.iter().zip(skus).enumerate() {
            let quantity = f.check(
                format!("lines[{i}].quantity"),
                domain::Quantity::parse(line.quantity),
            );
            if let (Some(sku), Some(quantity)) = (sku, quantity) {
                lines.push(RequestedLine { sku, quantity });
            }
        }
        let reason = f.check("reason", Reason::parse(&self.reason));
        let command = order_id.zip(reason).map(|(order_id, reason)| {
            (
                ReturnCaseId(order_id),
                ReturnCommand::RequestReturn(RequestReturn {
                    order: unread_order(order_id),
                    requested_at: Utc::now(),
                    window: ReturnWindow::default(),
                    lines,
                    reason,
                }),
            )
        });
        f.finish(command)
    }
}

/// The order as known before its stream is read: nothing delivered, so a request that were
/// decided on it would be refused. [`crate::returns`]' `prepare` replaces it with what the
/// order's stream holds.
fn unread_order(order_id: OrderId) -> ReturnRequestContext {
    ReturnRequestContext {
        order_id,
        order_status: OrderStatus::Placed,
        delivered_at: None,
        lines: Vec::new(),
        currency: Currency::parse("EUR").expect("EUR is a known currency"),
    }
}

/// Approve a requested return, giving the customer its RMA number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveReturnRequest {
    #[schema(schema_with = return_rules::rma_number)]
    pub rma_number: String,
}

impl CommandBody<Returns> for ApproveReturnRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let rma = f.check("rma_number", RmaNumber::parse(&self.rma_number));
        f.finish(rma.map(|rma_number| ReturnCommand::ApproveReturn { rma_number }))
    }
}

/// Reject a requested return.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct RejectReturnRequest(pub ReasonRequest);

impl CommandBody<Returns> for RejectReturnRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let reason = f.check("reason", Reason::parse(&self.0.reason));
        f.finish(reason.map(|reason| ReturnCommand::RejectReturn { reason }))
    }
}

/// What inspection found for one returned line.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InspectionOutcomeRequest {
    /// The items are as described; the line is refunded.
    Accepted,
    /// The items fail inspection; the line is not refunded.
    Refused,
}

impl From<InspectionOutcomeRequest> for InspectionOutcome {
    fn from(outcome: InspectionOutcomeRequest) -> Self {
        match outcome {
            InspectionOutcomeRequest::Accepted => Self::Accepted,
            InspectionOutcomeRequest::Refused => Self::Refused,
        }
    }
}

/// The inspection of one returned line.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInspectionRequest {
    #[schema(schema_with = rules::sku)]
    pub sku: String,
    pub outcome: InspectionOutcomeRequest,
}

/// The returned parcel arrived (for an approved return, or after its cancellation) and was
/// inspected: one outcome per returned line.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsReceivedRequest {
    #[schema(schema_with = return_rules::inspections)]
    pub lines: Vec<LineInspectionRequest>,
}

impl CommandBody<Returns> for ItemsReceivedRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let skus = check_skus(
            &mut f,
            "an inspection",
            self.lines.iter().map(|l| l.sku.as_str()),
        );
        let inspections = self
            .lines
            .iter()
            .zip(skus)
            .filter_map(|(line, sku)| {
                Some(LineInspection {
                    sku: sku?,
                    outcome: line.outcome.into(),
                })
            })
            .collect();
        f.finish(Some(ReturnCommand::RecordItemsReceived { inspections }))
    }
}

/// The payment service refunded the accepted lines.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundIssuedRequest {
    #[schema(schema_with = return_rules::refund_id)]
    pub refund_id: String,
    #[schema(schema_with = return_rules::refund_amount_minor)]
    #[serde(deserialize_with = "crate::dto::whole_number")]
    pub amount_minor: i64,
    #[schema(schema_with = rules::currency)]
    pub currency: String,
}

impl CommandBody<Returns> for RefundIssuedRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let refund_id = f.check("refund_id", RefundId::parse(&self.refund_id));
        let currency = f.check("currency", Currency::parse(&self.currency));
        let amount =
            currency.and_then(|c| f.check("amount_minor", Money::parse(self.amount_minor, c)));
        let command = refund_id
            .zip(amount)
            .map(|(refund_id, amount)| ReturnCommand::RecordRefundIssued { refund_id, amount });
        f.finish(command)
    }
}

/// Cancel a requested or approved return.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct CancelReturnRequest(pub ReasonRequest);

impl CommandBody<Returns> for CancelReturnRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let reason = f.check("reason", Reason::parse(&self.0.reason));
        f.finish(reason.map(|reason| ReturnCommand::CancelReturn { reason }))
    }
}

/// The items that arrived after cancellation were shipped back to the customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsShippedBackRequest {
    #[schema(schema_with = rules::carrier)]
    pub carrier: String,
    #[schema(schema_with = rules::tracking_number)]
    pub tracking_number: String,
}

impl CommandBody<Returns> for ItemsShippedBackRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let carrier = f.check("carrier", Carrier::parse(&self.carrier));
        let tracking = f.check(
            "tracking_number",
            TrackingNumber::parse(&self.tracking_number),
        );
        let command = carrier.zip(tracking).map(|(carrier, tracking_number)| {
            ReturnCommand::RecordItemsShippedBack {
                carrier,
                tracking_number,
            }
        });
        f.finish(command)
    }
}

/// Escalate an unfinished return to a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct EscalateReturnRequest(pub ReasonRequest);

impl CommandBody<Returns> for EscalateReturnRequest {
    fn into_command(self, _: ReturnCaseId) -> Result<ReturnCommand, Vec<FieldError>> {
        let mut f = Fields::default();
        let reason = f.check("reason", Reason::parse(&self.0.reason));
        f.finish(reason.map(|reason| ReturnCommand::EscalateReturn { reason }))
    }
}
