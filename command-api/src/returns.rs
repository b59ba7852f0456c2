//! The returns workflow on the command API: how its instances and refusals appear on the wire,
//! what a return request reads from its order, and its routes, each declared once. A return
//! case is named by its order's id (`/returns/{order_id}`, stream `return-<order id>`).

use crate::error::ApiError;
use crate::returns_dto::*;
use crate::routes::command_routes;
use crate::workflow::{InstanceId, Refusal, RefusalKind, WorkflowApi};
use domain::{
    DomainError, OrderEvent, OrderId, OrderState, Orders, ReturnCommand, ReturnError,
    ReturnRequestContext, Returns, Workflow,
};
use event_store::{read_whole_stream, EventStore};
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

/// A return case's id: the id of the order it returns items of (one return case per order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnCaseId(pub OrderId);

impl fmt::Display for ReturnCaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl InstanceId for ReturnCaseId {
    type Workflow = Returns;
}

impl WorkflowApi for Returns {
    type Id = ReturnCaseId;
    const ID_FIELD: &'static str = "order_id";
    const COLLECTION: &'static str = "/returns";
    const HISTORY_UNREADABLE_CODE: &'static str = "return_history_unreadable";

    fn creates(command: &ReturnCommand) -> bool {
        matches!(command, ReturnCommand::RequestReturn(_))
    }

    fn id_from_uuid(uuid: Uuid) -> ReturnCaseId {
        ReturnCaseId(OrderId::new(uuid))
    }

    fn parse_id(raw: &str) -> Result<ReturnCaseId, String> {
        OrderId::parse(raw).map(ReturnCaseId).map_err(|e| e.0)
    }

    fn refusal_title(kind: RefusalKind) -> &'static str {
        match kind {
            RefusalKind::NotFound => "Return not found",
            RefusalKind::Conflict => "Not allowed in the return's current state",
            RefusalKind::Invalid => "Command contradicts the return or its order",
        }
    }

    /// A return request is completed with what the order's stream holds when it is handled:
    /// its status, lines, unit prices, currency and when it was delivered.
    async fn prepare(
        store: &dyn EventStore,
        command: ReturnCommand,
    ) -> Result<ReturnCommand, ApiError> {
        let ReturnCommand::RequestReturn(mut request) = command else {
            return Ok(command);
        };
        request.order = read_order(store, request.order.order_id).await?;
        Ok(ReturnCommand::RequestReturn(request))
    }
}

/// What a return request needs to know of the order `order_id`, read from its stream.
///
/// # Errors
/// 422 `order_not_found` when the order does not exist, the returns refusal
/// `order_not_delivered` when it is not delivered, `order_history_unreadable` when its
/// stream holds an event that cannot be decoded, store errors.
#[tracing::instrument(skip(store), fields(order_id = %order_id))]
async fn read_order(
    store: &dyn EventStore,
    order_id: OrderId,
) -> Result<ReturnRequestContext, ApiError> {
    let history = read_whole_stream(store, &Orders::stream_name(order_id)).await?;
    let events = crate::service::decode::<Orders>(order_id, &history)?;
    let OrderState::Placed(order) = Orders::rebuild(&events) else {
        // The body names an order that does not exist: the request contradicts the orders
        // (422), as the creating route has no instance that could be missing.
        let missing = DomainError::OrderNotFound;
        return Err(ApiError::Refused {
            code: missing.code(),
            kind: RefusalKind::Invalid,
            title: Returns::refusal_title(RefusalKind::Invalid),
            source: Box::new(missing),
        });
    };
    // The order's state holds no times: its delivery is when the `OrderDelivered` event
    // happened, as its metadata says (or, failing that, when it was recorded).
    let delivered_at = history
        .iter()
        .zip(&events)
        .rev()
        .find(|(_, event)| matches!(event, OrderEvent::OrderDelivered {}))
        .map(|(recorded, _)| {
            recorded
                .metadata
                .occurred_at
                .unwrap_or(recorded.recorded_at)
        });
    ReturnRequestContext::from_order(&order, delivered_at).map_err(ApiError::refused::<Returns>)
}

impl Refusal for ReturnError {
    fn code(&self) -> &'static str {
        ReturnError::code(self)
    }

    fn kind(&self) -> RefusalKind {
        ReturnError::kind(self).into()
    }
}

// The documented shape of `crate::dto::CommandOutcome` for returns.
/// What happened: the return's state after the command, and where to wait for it.
#[derive(Serialize, ToSchema)]
pub struct ReturnOutcome {
    /// The id of the order the return is for; the return is at `/returns/{order_id}`.
    #[schema(format = Uuid)]
    pub order_id: String,
    /// REQUESTED, APPROVED, RECEIVED, REFUNDED, REJECTED or CANCELLED.
    #[schema(example = "REQUESTED")]
    pub status: String,
    /// What the return waits for next: DECIDE_RETURN, RECEIVE_ITEMS, ISSUE_REFUND or
    /// SHIP_ITEMS_BACK.
    pub pending_actions: Vec<String>,
    /// Compensations owed and not yet done: SHIP_ITEMS_BACK (items received after the return
    /// was cancelled).
    pub compensations_owed: Vec<String>,
    /// The return stream's revision after the command; use it in `If-Match`.
    pub revision: u64,
    /// The log position of the append; pass it to the query API to read your own write.
    #[schema(example = "812-3")]
    pub consistency_token: String,
    pub correlation_id: String,
    /// The events this command recorded (empty for a re-reported fact).
    pub events: Vec<String>,
}

command_routes! {
    workflow: Returns, tag: "returns" = "Returns commands", outcome: ReturnOutcome,
    schemas: (ReturnLineRequest, LineInspectionRequest, InspectionOutcomeRequest),
    id: "order_id": uuid::Uuid = "The id of the order the return is for (a UUID)",
    create: request_return => "/returns", "request-return", RequestReturnRequest, scope: RequestReturns,
        "Request a return of some of a delivered order's items.",
        created: "Return requested; `Location` names it",
        exists: "The order is not delivered, its return window has closed, or a return was already requested for it";
    actions (
        not_found: "No return was requested for this order",
        conflict: "Not allowed in the return's current state, or contention",
        invalid: "Invalid fields (listed), contradicts the return, or Idempotency-Key reused"
    ) {
        approve_return => "approve", ApproveReturnRequest, scope: DecideReturns,
            "Approve a requested return with an RMA number.";
        reject_return => "reject", RejectReturnRequest, scope: DecideReturns,
            "Reject a requested return.";
        return_items_received => "items-received", ItemsReceivedRequest, scope: ReportWarehouse,
            "Record that the returned items arrived, with each line's inspection outcome.";
        return_refund_issued => "refund-issued", RefundIssuedRequest, scope: ReportRefunds,
            "Record that the refund for the accepted lines was issued.";
        cancel_return => "cancel", CancelReturnRequest, scope: DecideReturns,
            "Cancel a requested or approved return.";
        return_items_shipped_back => "items-shipped-back", ItemsShippedBackRequest, scope: ReportWarehouse,
            "Record that items received after cancellation were shipped back (compensation).";
        escalate_return => "escalate", EscalateReturnRequest, scope: Escalate,
            "Escalate an unfinished return to a person, once per step (a repeat records nothing).";
    }
    openapi: ReturnRoutes
}
