//! Given events / when command / then events or error. No database.

use super::*;
use crate::kernel::{DecodeError, EventContract, ReminderRefusal, Spec, Workflow};
use crate::values::*;
use proptest::prelude::*;
use uuid::Uuid;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn order_id() -> OrderId {
    OrderId::new(Uuid::from_u128(42))
}

fn address() -> ShippingAddress {
    ShippingAddress {
        name: AddressLine::parse("Ada Lovelace").unwrap(),
        line1: AddressLine::parse("1 Main St").unwrap(),
        line2: None,
        city: AddressLine::parse("London").unwrap(),
        postal_code: AddressLine::parse("N1 1AA").unwrap(),
        country: CountryCode::parse("GB").unwrap(),
    }
}

fn line(sku: &str, qty: i64, price: i64) -> OrderLine {
    OrderLine {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::parse(qty).unwrap(),
        unit_price_minor: price,
    }
}

fn place_with(lines: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::PlaceOrder(PlaceOrder {
        order_id: order_id(),
        customer_id: CustomerId::parse("cust-1").unwrap(),
        currency: eur(),
        lines,
        shipping_address: address(),
    })
}

fn place() -> OrderCommand {
    place_with(vec![line("A-1", 2, 1000), line("B-2", 1, 500)])
}

const TOTAL: i64 = 2500;

fn pay_id(s: &str) -> PaymentId {
    PaymentId::parse(s).unwrap()
}
fn res_id(s: &str) -> ReservationId {
    ReservationId::parse(s).unwrap()
}
fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}

fn authorize(id: &str) -> OrderCommand {
    OrderCommand::RecordPaymentAuthorized {
        payment_id: pay_id(id),
        amount: Money::parse(TOTAL, eur()).unwrap(),
    }
}
fn decline(id: &str) -> OrderCommand {
    OrderCommand::RecordPaymentDeclined {
        payment_id: pay_id(id),
        reason: reason("insufficient funds"),
    }
}
fn reserve(id: &str) -> OrderCommand {
    OrderCommand::RecordInventoryReserved {
        reservation_id: res_id(id),
    }
}
fn shortage(id: &str) -> OrderCommand {
    OrderCommand::RecordInventoryShortage {
        reservation_id: res_id(id),
        reason: reason("sku A-1 out of stock"),
    }
}
fn ship() -> OrderCommand {
    OrderCommand::ShipOrder {
        carrier: Carrier::parse("DHL").unwrap(),
        tracking_number: TrackingNumber::parse("JD0001").unwrap(),
    }
}
fn cancel() -> OrderCommand {
    OrderCommand::CancelOrder {
        reason: reason("customer changed their mind"),
    }
}
fn void(id: &str) -> OrderCommand {
    OrderCommand::RecordPaymentVoided {
        payment_id: pay_id(id),
    }
}
fn release(id: &str) -> OrderCommand {
    OrderCommand::RecordInventoryReleased {
        reservation_id: res_id(id),
    }
}
fn escalate() -> OrderCommand {
    OrderCommand::EscalateOrder {
        reason: reason("no carrier pickup for 3 days"),
    }
}

/// Runs commands in order from nothing, each must succeed; returns the state and all events.
fn given(commands: Vec<OrderCommand>) -> (OrderState, Vec<OrderEvent>) {
    let mut state = OrderState::NotPlaced;
    let mut all = Vec::new();
    for c in commands {
        let name = c.name();
        let events = decide(&state, c).unwrap_or_else(|e| panic!("given {name}: {e}"));
        for e in &events {
            state = evolve(state, e);
        }
        all.extend(events);
    }
    (state, all)
}

fn types(events: &[OrderEvent]) -> Vec<&'static str> {
    events.iter().map(OrderEvent::event_type).collect()
}

fn when(history: Vec<OrderCommand>, command: OrderCommand) -> Result<Vec<&'static str>, String> {
    let (state, _) = given(history);
    decide(&state, command)
        .map(|e| types(&e))
        .map_err(|e| e.code().to_owned())
}

fn accepted() -> Vec<OrderCommand> {
    vec![place(), authorize("pay-1"), reserve("res-1")]
}
fn in_fulfilment() -> Vec<OrderCommand> {
    let mut h = accepted();
    h.push(OrderCommand::StartFulfillment);
    h
}
fn shipped() -> Vec<OrderCommand> {
    let mut h = in_fulfilment();
    h.push(ship());
    h
}
fn delivered() -> Vec<OrderCommand> {
    let mut h = shipped();
    h.push(OrderCommand::ConfirmDelivery);
    h
}
fn rejected() -> Vec<OrderCommand> {
    vec![place(), decline("pay-1")]
}
fn cancelled() -> Vec<OrderCommand> {
    vec![place(), cancel()]
}

fn status_of(history: Vec<OrderCommand>) -> Status {
    given(history).0.status().unwrap()
}

#[test]
fn placing_an_order_computes_its_total() {
    let (state, events) = given(vec![place()]);
    assert_eq!(types(&events), ["OrderPlaced"]);
    let order = state.order().unwrap();
    assert_eq!(order.total_minor, TOTAL);
    assert_eq!(order.status(), Status::Placed);
    assert_eq!(
        order.pending_actions(),
        [
            PendingAction::AuthorizePayment,
            PendingAction::ReserveInventory
        ]
    );
}

#[test]
fn placing_refuses_no_lines_too_many_lines_and_duplicate_skus() {
    let none = decide(&OrderState::NotPlaced, place_with(vec![])).unwrap_err();
    assert_eq!(none, DomainError::InvalidLineCount(0));
    let many = (0..101).map(|i| line(&format!("S{i}"), 1, 1)).collect();
    assert_eq!(
        decide(&OrderState::NotPlaced, place_with(many)).unwrap_err(),
        DomainError::InvalidLineCount(101)
    );
    let dup = vec![line("A", 1, 1), line("A", 2, 1)];
    assert_eq!(
        decide(&OrderState::NotPlaced, place_with(dup)).unwrap_err(),
        DomainError::DuplicateSku("A".into())
    );
    assert_eq!(
        when(vec![place()], place()),
        Err("order_already_placed".into())
    );
}

#[test]
fn commands_on_an_unknown_order_say_it_is_not_found() {
    for c in [authorize("p"), reserve("r"), ship(), cancel(), escalate()] {
        assert_eq!(when(vec![], c), Err("order_not_found".into()));
    }
}

#[test]
fn payment_then_stock_accepts_the_order() {
    assert_eq!(
        when(vec![place()], authorize("pay-1")),
        Ok(vec!["PaymentAuthorized"])
    );
    assert_eq!(
        when(vec![place(), authorize("pay-1")], reserve("res-1")),
        Ok(vec!["InventoryReserved", "OrderAccepted"])
    );
}

#[test]
fn stock_then_payment_accepts_the_order() {
    assert_eq!(
        when(vec![place()], reserve("res-1")),
        Ok(vec!["InventoryReserved"])
    );
    assert_eq!(
        when(vec![place(), reserve("res-1")], authorize("pay-1")),
        Ok(vec!["PaymentAuthorized", "OrderAccepted"])
    );
    assert_eq!(status_of(accepted()), Status::Accepted);
}

#[test]
fn payment_of_the_wrong_amount_is_refused() {
    let (state, _) = given(vec![place()]);
    let wrong = OrderCommand::RecordPaymentAuthorized {
        payment_id: pay_id("p"),
        amount: Money::parse(TOTAL - 1, eur()).unwrap(),
    };
    let err = decide(&state, wrong).unwrap_err();
    assert_eq!(err.code(), "amount_mismatch");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let usd = OrderCommand::RecordPaymentAuthorized {
        payment_id: pay_id("p"),
        amount: Money::parse(TOTAL, Currency::parse("USD").unwrap()).unwrap(),
    };
    assert_eq!(decide(&state, usd).unwrap_err().code(), "amount_mismatch");
}

#[test]
fn declined_payment_rejects_the_order() {
    assert_eq!(
        when(vec![place()], decline("pay-1")),
        Ok(vec!["PaymentDeclined", "OrderRejected"])
    );
    assert_eq!(status_of(rejected()), Status::Rejected);
}

#[test]
fn stock_shortage_rejects_the_order() {
    assert_eq!(
        when(vec![place()], shortage("res-1")),
        Ok(vec!["InventoryReservationFailed", "OrderRejected"])
    );
}

#[test]
fn fulfilment_shipping_and_delivery_follow_acceptance() {
    assert_eq!(
        when(accepted(), OrderCommand::StartFulfillment),
        Ok(vec!["FulfillmentStarted"])
    );
    assert_eq!(when(in_fulfilment(), ship()), Ok(vec!["OrderShipped"]));
    assert_eq!(
        when(shipped(), OrderCommand::ConfirmDelivery),
        Ok(vec!["OrderDelivered"])
    );
    let (state, _) = given(delivered());
    let order = state.order().unwrap();
    assert_eq!(order.status(), Status::Delivered);
    assert!(order.pending_actions().is_empty());
    assert!(matches!(&order.stage, Stage::Delivered { carrier, .. } if carrier.as_str() == "DHL"));
}

#[test]
fn cancel_is_allowed_when_placed_or_accepted_only() {
    assert_eq!(when(vec![place()], cancel()), Ok(vec!["OrderCancelled"]));
    assert_eq!(when(accepted(), cancel()), Ok(vec!["OrderCancelled"]));
    for history in [
        in_fulfilment(),
        shipped(),
        delivered(),
        rejected(),
        cancelled(),
    ] {
        assert_eq!(when(history, cancel()), Err("cannot_cancel".into()));
    }
}

#[test]
fn cancel_after_shipping_says_why_in_words() {
    let (state, _) = given(shipped());
    let err = decide(&state, cancel()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "order is shipped; it can no longer be cancelled"
    );
}

#[test]
fn cancelling_an_accepted_order_owes_both_compensations() {
    let (state, _) = given(vec![
        place(),
        authorize("pay-1"),
        reserve("res-1"),
        cancel(),
    ]);
    let order = state.order().unwrap();
    assert_eq!(
        order.compensations_owed(),
        [Compensation::VoidPayment, Compensation::ReleaseInventory]
    );
    assert_eq!(
        order.pending_actions(),
        [PendingAction::VoidPayment, PendingAction::ReleaseInventory]
    );
}

#[test]
fn recorded_compensations_settle_the_order() {
    let mut h = accepted();
    h.push(cancel());
    assert_eq!(when(h.clone(), void("pay-1")), Ok(vec!["PaymentVoided"]));
    h.push(void("pay-1"));
    assert_eq!(
        when(h.clone(), release("res-1")),
        Ok(vec!["InventoryReleased"])
    );
    h.push(release("res-1"));
    let (state, _) = given(h.clone());
    let order = state.order().unwrap();
    assert!(order.compensations_owed().is_empty());
    assert_eq!(
        order.compensations_done(),
        [Compensation::VoidPayment, Compensation::ReleaseInventory]
    );
    assert!(order.is_settled());
    // Re-reporting a done compensation is a no-op.
    assert_eq!(when(h, void("pay-1")), Ok(vec![]));
}

#[test]
fn late_payment_after_cancel_is_recorded_and_owes_a_void() {
    let (state, events) = given(vec![place(), cancel(), authorize("pay-9")]);
    assert_eq!(types(&events).last(), Some(&"PaymentAuthorized"));
    let order = state.order().unwrap();
    assert_eq!(order.status(), Status::Cancelled);
    assert_eq!(order.compensations_owed(), [Compensation::VoidPayment]);
}

#[test]
fn late_stock_after_rejection_is_recorded_and_owes_a_release() {
    let (state, events) = given(vec![place(), decline("pay-1"), reserve("res-7")]);
    assert_eq!(types(&events).last(), Some(&"InventoryReserved"));
    let order = state.order().unwrap();
    assert_eq!(order.status(), Status::Rejected);
    assert_eq!(order.compensations_owed(), [Compensation::ReleaseInventory]);
}

#[test]
fn rejection_after_a_reservation_owes_its_release() {
    let (state, _) = given(vec![place(), reserve("res-1"), decline("pay-1")]);
    assert_eq!(
        state.order().unwrap().compensations_owed(),
        [Compensation::ReleaseInventory]
    );
}

#[test]
fn late_decline_after_cancel_is_recorded_without_a_second_rejection() {
    assert_eq!(
        when(cancelled(), decline("pay-1")),
        Ok(vec!["PaymentDeclined"])
    );
    assert_eq!(
        when(cancelled(), shortage("res-1")),
        Ok(vec!["InventoryReservationFailed"])
    );
}

#[test]
fn re_reporting_the_same_fact_is_a_no_op() {
    assert_eq!(
        when(vec![place(), authorize("p")], authorize("p")),
        Ok(vec![])
    );
    assert_eq!(when(vec![place(), reserve("r")], reserve("r")), Ok(vec![]));
    assert_eq!(when(rejected(), decline("pay-1")), Ok(vec![]));
    assert_eq!(
        when(vec![place(), shortage("r")], shortage("r")),
        Ok(vec![])
    );
    assert_eq!(when(delivered(), authorize("pay-1")), Ok(vec![]));
}

#[test]
fn conflicting_facts_are_refused_by_name() {
    assert_eq!(
        when(vec![place(), authorize("p")], authorize("q")),
        Err("payment_already_authorized".into())
    );
    assert_eq!(
        when(vec![place(), authorize("p")], decline("p")),
        Err("payment_already_authorized".into())
    );
    assert_eq!(
        when(rejected(), authorize("pay-1")),
        Err("payment_already_declined".into())
    );
    assert_eq!(
        when(vec![place(), reserve("r")], reserve("s")),
        Err("inventory_already_reserved".into())
    );
    assert_eq!(
        when(vec![place(), shortage("r")], reserve("r")),
        Err("inventory_already_short".into())
    );
}

#[test]
fn compensations_not_owed_are_refused() {
    assert_eq!(
        when(accepted(), void("pay-1")),
        Err("no_payment_void_owed".into())
    );
    assert_eq!(
        when(accepted(), release("res-1")),
        Err("no_inventory_release_owed".into())
    );
    let mut h = accepted();
    h.push(cancel());
    assert_eq!(
        when(h.clone(), void("other")),
        Err("no_payment_void_owed".into())
    );
    assert_eq!(
        when(h, release("other")),
        Err("no_inventory_release_owed".into())
    );
}

#[test]
fn escalation_is_allowed_until_settled() {
    for h in [vec![place()], accepted(), in_fulfilment(), shipped()] {
        assert_eq!(when(h, escalate()), Ok(vec!["OrderEscalated"]));
    }
    let mut owed = accepted();
    owed.push(cancel());
    assert_eq!(when(owed, escalate()), Ok(vec!["OrderEscalated"]));
    for h in [delivered(), rejected(), cancelled()] {
        assert_eq!(when(h, escalate()), Err("nothing_to_escalate".into()));
    }
}

fn remind(action: PendingAction, attempt: u32) -> OrderCommand {
    OrderCommand::RecordReminder { action, attempt }
}

fn reminded(action: PendingAction, attempt: u32) -> OrderEvent {
    OrderEvent::OrderReminded { action, attempt }
}

fn escalated() -> OrderEvent {
    OrderEvent::OrderEscalated {
        reason: reason("no carrier pickup for 3 days"),
    }
}

fn with(
    mut history: Vec<OrderCommand>,
    more: impl IntoIterator<Item = OrderCommand>,
) -> Vec<OrderCommand> {
    history.extend(more);
    history
}

#[test]
fn the_first_reminder_of_a_pending_action_is_attempt_two() {
    Spec::<Orders>::given_commands([place()])
        .when(remind(PendingAction::AuthorizePayment, 2))
        .then([reminded(PendingAction::AuthorizePayment, 2)]);
}

#[test]
fn each_reminder_must_be_the_next_attempt_of_its_action() {
    let history = [place(), remind(PendingAction::AuthorizePayment, 2)];
    Spec::<Orders>::given_commands(history.clone())
        .when(remind(PendingAction::AuthorizePayment, 3))
        .then([reminded(PendingAction::AuthorizePayment, 3)]);
    Spec::<Orders>::given_commands(history.clone())
        .when(remind(PendingAction::AuthorizePayment, 4))
        .then_error(DomainError::Reminder(ReminderRefusal::NotNextAttempt {
            action: "AUTHORIZE_PAYMENT",
            attempt: 4,
            expected: 3,
        }));
    Spec::<Orders>::given_commands(history)
        .when(remind(PendingAction::ReserveInventory, 3))
        .then_error(DomainError::Reminder(ReminderRefusal::NotNextAttempt {
            action: "RESERVE_INVENTORY",
            attempt: 3,
            expected: 2,
        }));
}

#[test]
fn a_reminder_already_recorded_is_not_recorded_twice() {
    let history = [
        place(),
        remind(PendingAction::AuthorizePayment, 2),
        remind(PendingAction::AuthorizePayment, 3),
    ];
    for attempt in [2, 3] {
        Spec::<Orders>::given_commands(history.clone())
            .when(remind(PendingAction::AuthorizePayment, attempt))
            .then_nothing();
    }
}

#[test]
fn only_a_pending_action_can_be_reminded() {
    Spec::<Orders>::given_commands([place(), authorize("pay-1")])
        .when(remind(PendingAction::AuthorizePayment, 2))
        .then_error(DomainError::Reminder(ReminderRefusal::NotAwaited {
            action: "AUTHORIZE_PAYMENT",
        }));
    Spec::<Orders>::given_commands(accepted())
        .when(remind(PendingAction::Ship, 2))
        .then_error(DomainError::Reminder(ReminderRefusal::NotAwaited {
            action: "SHIP",
        }));
    assert_eq!(
        when(delivered(), remind(PendingAction::ConfirmDelivery, 2)),
        Err("reminder_not_awaited".into())
    );
}

#[test]
fn owed_compensations_are_reminded_like_any_pending_action() {
    let owed = with(accepted(), [cancel()]);
    Spec::<Orders>::given_commands(owed.clone())
        .when(remind(PendingAction::VoidPayment, 2))
        .then([reminded(PendingAction::VoidPayment, 2)]);
    Spec::<Orders>::given_commands(with(owed, [void("pay-1")]))
        .when(remind(PendingAction::ReleaseInventory, 2))
        .then([reminded(PendingAction::ReleaseInventory, 2)]);
}

#[test]
fn an_answered_action_that_is_awaited_again_starts_from_its_first_request() {
    // Stock reserved, then the order is cancelled: the release is a new obligation.
    let state = Spec::<Orders>::given_commands([
        place(),
        remind(PendingAction::ReserveInventory, 2),
        reserve("res-1"),
    ])
    .when(cancel())
    .then([OrderEvent::OrderCancelled {
        reason: reason("customer changed their mind"),
    }]);
    let order = state.order().unwrap();
    assert_eq!(order.follow_up.attempt(PendingAction::ReserveInventory), 1);
    assert_eq!(order.follow_up.reminders(), 0);
}

#[test]
fn the_workflow_names_the_action_and_attempt_of_a_reminder_event() {
    assert_eq!(
        Orders::reminder(&reminded(PendingAction::ReserveInventory, 3)),
        Some((PendingAction::ReserveInventory, 3))
    );
    assert_eq!(Orders::reminder(&escalated()), None);
}

#[test]
fn a_second_escalation_of_the_same_step_records_nothing() {
    Spec::<Orders>::given_commands([place(), escalate()])
        .when(escalate())
        .then_nothing();
    // After payment the order still waits in PLACED, for the stock: the same step.
    Spec::<Orders>::given_commands([place(), escalate(), authorize("pay-1")])
        .when(escalate())
        .then_nothing();
}

#[test]
fn a_new_step_can_be_escalated_again() {
    Spec::<Orders>::given_commands(with(
        accepted(),
        [escalate(), OrderCommand::StartFulfillment],
    ))
    .when(escalate())
    .then([escalated()]);
    Spec::<Orders>::given_commands(with(accepted(), [escalate(), cancel()]))
        .when(escalate())
        .then([escalated()]);
}

/// Every (state, command) pair outside the happy path is a named error, never a panic.
#[test]
fn every_illegal_transition_is_a_named_error() {
    let histories: Vec<(&str, Vec<OrderCommand>)> = vec![
        ("placed", vec![place()]),
        ("accepted", accepted()),
        ("in_fulfilment", in_fulfilment()),
        ("shipped", shipped()),
        ("delivered", delivered()),
        ("rejected", rejected()),
        ("cancelled", cancelled()),
    ];
    let allowed: &[(&str, &str)] = &[
        ("accepted", "StartFulfillment"),
        ("in_fulfilment", "ShipOrder"),
        ("shipped", "ConfirmDelivery"),
    ];
    for (name, history) in histories {
        for (command, code) in [
            (OrderCommand::StartFulfillment, "illegal_transition"),
            (ship(), "illegal_transition"),
            (OrderCommand::ConfirmDelivery, "illegal_transition"),
        ] {
            let cname = command.name();
            let outcome = when(history.clone(), command);
            let expected_ok = allowed.contains(&(name, cname));
            if expected_ok {
                assert!(outcome.is_ok(), "{cname} in {name}: {outcome:?}");
            } else {
                assert_eq!(outcome, Err(code.to_owned()), "{cname} in {name}");
            }
        }
    }
}

#[test]
fn events_round_trip_through_type_and_data() {
    let (_, events) = given(vec![
        place(),
        authorize("p"),
        reserve("r"),
        OrderCommand::StartFulfillment,
        ship(),
        OrderCommand::ConfirmDelivery,
    ]);
    for e in events {
        let back = OrderEvent::decode(e.event_type(), e.schema_version(), &e.data()).unwrap();
        assert_eq!(back, e);
    }
    assert!(matches!(
        OrderEvent::decode("OrderExploded", 1, &serde_json::json!({})),
        Err(DecodeError::UnknownType(_))
    ));
    assert!(matches!(
        OrderEvent::decode("OrderShipped", 1, &serde_json::json!({"carrier": ""})),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn a_payment_authorized_v2_stores_the_amount_flat() {
    let event = OrderEvent::PaymentAuthorized {
        payment_id: pay_id("p-1"),
        amount: Money::parse(1000, eur()).unwrap(),
    };
    assert_eq!(event.schema_version(), 2);
    assert_eq!(
        event.data(),
        serde_json::json!({"payment_id": "p-1", "amount_minor": 1000, "currency": "EUR"})
    );
}

#[test]
fn a_payment_authorized_v1_reads_as_the_same_payment_in_v2() {
    let v1 = serde_json::json!({"payment_id": "p-1", "amount": {"amount_minor": 1000, "currency": "EUR"}});
    let (version, data) = OrderEvent::upcast("PaymentAuthorized", 1, &v1).unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        data,
        serde_json::json!({"payment_id": "p-1", "amount_minor": 1000, "currency": "EUR"})
    );
    assert_eq!(
        OrderEvent::decode("PaymentAuthorized", 1, &v1).unwrap(),
        OrderEvent::PaymentAuthorized {
            payment_id: pay_id("p-1"),
            amount: Money::parse(1000, eur()).unwrap(),
        }
    );
}

#[test]
fn a_payment_authorized_v1_without_its_amount_names_what_is_missing() {
    let err = OrderEvent::decode(
        "PaymentAuthorized",
        1,
        &serde_json::json!({"payment_id": "p-1", "amount_minor": 1000, "currency": "EUR"}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DecodeError::Upcast { version: 1, reason, .. } if reason.contains("'amount' is missing")),
        "{err}"
    );
}

fn any_command() -> impl Strategy<Value = OrderCommand> {
    let id = prop::sample::select(vec!["a", "b"]);
    prop_oneof![
        Just(place()),
        id.clone().prop_map(authorize),
        id.clone().prop_map(decline),
        id.clone().prop_map(reserve),
        id.clone().prop_map(shortage),
        Just(OrderCommand::StartFulfillment),
        Just(ship()),
        Just(OrderCommand::ConfirmDelivery),
        Just(cancel()),
        id.clone().prop_map(void),
        id.prop_map(release),
        Just(escalate()),
        (
            prop::sample::select(<PendingAction as crate::kernel::Label>::ALL.to_vec()),
            0u32..5
        )
            .prop_map(|(action, attempt)| remind(action, attempt)),
        (1i64..=3000).prop_map(|amount| OrderCommand::RecordPaymentAuthorized {
            payment_id: pay_id("a"),
            amount: Money::parse(amount, eur()).unwrap(),
        }),
    ]
}

proptest! {
    #[test]
    fn random_command_sequences_keep_the_invariants(
        commands in prop::collection::vec(any_command(), 0..40)
    ) {
        let mut state = OrderState::NotPlaced;
        let mut history = Vec::new();
        for command in commands {
            if let Ok(events) = decide(&state, command) {
                for e in &events {
                    state = evolve(state, e);
                }
                history.extend(events);
            }
            // The state is always what its history folds to.
            prop_assert_eq!(&rebuild(&history), &state);
            if let Some(order) = state.order() {
                prop_assert_eq!(order.total_minor, order.lines.iter().map(OrderLine::total_minor).sum::<i64>());
                let status = order.status();
                let last_stage_event = history.iter().rev().map(OrderEvent::event_type).find(|t| {
                    matches!(*t, "OrderPlaced" | "OrderAccepted" | "OrderRejected" | "FulfillmentStarted"
                        | "OrderShipped" | "OrderDelivered" | "OrderCancelled")
                });
                let expected = match last_stage_event {
                    Some("OrderPlaced") => Status::Placed,
                    Some("OrderAccepted") => Status::Accepted,
                    Some("OrderRejected") => Status::Rejected,
                    Some("FulfillmentStarted") => Status::InFulfillment,
                    Some("OrderShipped") => Status::Shipped,
                    Some("OrderDelivered") => Status::Delivered,
                    _ => Status::Cancelled,
                };
                prop_assert_eq!(status, expected);
                if matches!(status, Status::Accepted | Status::InFulfillment | Status::Shipped | Status::Delivered) {
                    let paid = matches!(order.payment, Payment::Authorized { .. });
                    let reserved = matches!(order.inventory, Inventory::Reserved { .. });
                    prop_assert!(paid && reserved);
                }
                if !order.compensations_owed().is_empty() {
                    prop_assert!(order.is_abandoned());
                }
                prop_assert_eq!(order.pending_actions().is_empty(), order.is_settled());
                prop_assert_eq!(history.iter().filter(|e| e.event_type() == "OrderPlaced").count(), 1);
            } else {
                prop_assert!(history.is_empty());
            }
        }
    }
}

mod kernel {
    //! The order workflow through the kernel's spec helper: whole events, typed errors.
    use super::*;
    use crate::kernel::{Label, Spec, Workflow};

    fn placed() -> OrderEvent {
        given(vec![place()]).1.remove(0)
    }

    #[test]
    fn a_payment_authorized_after_cancellation_is_recorded_and_owes_a_void() {
        let state = Spec::<Orders>::given_commands([place(), cancel()])
            .when(authorize("pay-9"))
            .then([OrderEvent::PaymentAuthorized {
                payment_id: pay_id("pay-9"),
                amount: Money::parse(TOTAL, eur()).unwrap(),
            }]);
        assert_eq!(Orders::status(&state), Some(Status::Cancelled));
        assert_eq!(
            Orders::compensations_owed(&state),
            vec![Compensation::VoidPayment]
        );
        assert_eq!(Orders::deadline_step(&state), Some(COMPENSATION_STEP));
    }

    #[test]
    fn a_shipped_order_cannot_be_cancelled() {
        Spec::<Orders>::given_commands([
            place(),
            authorize("pay-1"),
            reserve("res-1"),
            OrderCommand::StartFulfillment,
            ship(),
        ])
        .when(cancel())
        .then_error(DomainError::CannotCancel {
            status: Status::Shipped,
        });
    }

    #[test]
    fn the_deadline_step_follows_the_status_while_something_is_awaited() {
        let state = Spec::<Orders>::given([placed()])
            .when(authorize("pay-1"))
            .then([OrderEvent::PaymentAuthorized {
                payment_id: pay_id("pay-1"),
                amount: Money::parse(TOTAL, eur()).unwrap(),
            }]);
        assert_eq!(Orders::deadline_step(&state), Some("PLACED"));
        assert_eq!(
            Orders::pending_actions(&state),
            vec![PendingAction::ReserveInventory]
        );
        let delivered = Orders::rebuild(
            &given(vec![
                place(),
                authorize("p"),
                reserve("r"),
                OrderCommand::StartFulfillment,
                ship(),
                OrderCommand::ConfirmDelivery,
            ])
            .1,
        );
        assert_eq!(Orders::deadline_step(&delivered), None);
        for step in Orders::DEADLINE_STEPS {
            assert!(
                *step == COMPENSATION_STEP || Status::parse(step).is_some(),
                "{step} names no status"
            );
        }
    }

    #[test]
    fn every_label_round_trips_through_its_wire_form() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
        for a in PendingAction::ALL {
            assert_eq!(PendingAction::parse(a.as_str()), Some(*a));
        }
        for c in Compensation::ALL {
            assert_eq!(Compensation::parse(c.as_str()), Some(*c));
        }
    }
}
