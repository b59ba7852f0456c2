//! The order workflow on the command API: how its instances and refusals appear on the wire,
//! and its routes, each declared once.

use crate::dto::*;
use crate::routes::command_routes;
use crate::workflow::{InstanceId, Refusal, RefusalKind, WorkflowApi};
use domain::{DomainError, OrderCommand, OrderId, Orders};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

impl WorkflowApi for Orders {
    type Id = OrderId;
    const ID_FIELD: &'static str = "order_id";
    const COLLECTION: &'static str = "/orders";
    const HISTORY_UNREADABLE_CODE: &'static str = "order_history_unreadable";

    fn creates(command: &OrderCommand) -> bool {
        matches!(command, OrderCommand::PlaceOrder(_))
    }

    fn id_from_uuid(uuid: Uuid) -> OrderId {
        OrderId::new(uuid)
    }

    fn parse_id(raw: &str) -> Result<OrderId, String> {
        OrderId::parse(raw).map_err(|e| e.0)
    }

    fn refusal_title(kind: RefusalKind) -> &'static str {
        match kind {
            RefusalKind::NotFound => "Order not found",
            RefusalKind::Conflict => "Not allowed in the order's current state",
            RefusalKind::Invalid => "Command contradicts the order",
        }
    }
}

impl InstanceId for OrderId {
    type Workflow = Orders;
}

impl Refusal for DomainError {
    fn code(&self) -> &'static str {
        DomainError::code(self)
    }

    fn kind(&self) -> RefusalKind {
        DomainError::kind(self).into()
    }
}

// The documented shape of `crate::dto::CommandOutcome` for orders.
/// What happened: the order's state after the command, and where to wait for it.
#[derive(Serialize, ToSchema)]
#[schema(as = CommandOutcome)]
pub struct OrderOutcome {
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

command_routes! {
    workflow: Orders, tag: "orders" = "Order-fulfilment commands", outcome: OrderOutcome,
    schemas: (OrderLineRequest, ReservationRequest, ReasonRequest),
    id: "order_id": uuid::Uuid = "The order's id (a UUID)",
    create: place_order => "/orders", "place-order", PlaceOrderRequest, scope: PlaceOrders, "Place a new order.",
        created: "Order placed; `Location` names it",
        exists: "An order with this id already exists";
    actions (
        not_found: "No such order",
        conflict: "Not allowed in the order's current state, or contention",
        invalid: "Invalid fields (listed), contradicts the order, or Idempotency-Key reused"
    ) {
        payment_authorized => "payment-authorized", PaymentAuthorizedRequest, scope: ReportPayments,
            "Record that the payment was authorized.";
        payment_declined => "payment-declined", PaymentDeclinedRequest, scope: ReportPayments,
            "Record that the payment was declined (rejects a placed order).";
        inventory_reserved => "inventory-reserved", InventoryReservedRequest, scope: ReportInventory,
            "Record that the stock was reserved.";
        inventory_shortage => "inventory-shortage", InventoryShortageRequest, scope: ReportInventory,
            "Record that the stock could not be reserved (rejects a placed order).";
        start_fulfillment => "start-fulfillment", StartFulfillmentRequest, scope: ReportWarehouse,
            "Start fulfilling an accepted order.";
        ship => "ship", ShipRequest, scope: ReportCarrier,
            "Record that the order left with a carrier.";
        confirm_delivery => "confirm-delivery", ConfirmDeliveryRequest, scope: ReportCarrier,
            "Record that the carrier delivered the order.";
        cancel => "cancel", CancelRequest, scope: CancelOrders,
            "Cancel an order that has not started fulfilment.";
        payment_voided => "payment-voided", PaymentVoidedRequest, scope: ReportPayments,
            "Record that an owed payment void was done.";
        inventory_released => "inventory-released", InventoryReleasedRequest, scope: ReportInventory,
            "Record that an owed stock release was done.";
        escalate => "escalate", EscalateRequest, scope: Escalate,
            "Escalate an unfinished order to a person, once per step (a repeat records nothing).";
    }
    openapi: OrderRoutes
}
