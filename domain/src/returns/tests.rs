//! Given events / when command / then events or error, with the kernel's `Spec`. No database.

use super::*;
use crate::kernel::{EventContract, ReminderRefusal, Spec, Workflow};
use crate::order::{OrderEvent, Orders, Status as OrderStatus, COMPENSATION_STEP};
use crate::values::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn order_id() -> OrderId {
    OrderId::new(Uuid::from_u128(42))
}

fn delivered_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}

/// 2 units at 10.00, B-2: 1 unit at 5.00.
fn order_lines() -> Vec<OrderLine> {
    vec![
        OrderLine {
            sku: sku("A-1"),
            quantity: Quantity::parse(2).unwrap(),
            unit_price_minor: 1000,
        },
        OrderLine {
            sku: sku("B-2"),
            quantity: Quantity::parse(1).unwrap(),
            unit_price_minor: 500,
        },
    ]
}

fn delivered_order() -> ReturnRequestContext {
    ReturnRequestContext {
        order_id: order_id(),
        order_status: OrderStatus::Delivered,
        delivered_at: Some(delivered_at()),
        lines: order_lines(),
        currency: eur(),
    }
}

fn wanted(s: &str, quantity: i64) -> RequestedLine {
    RequestedLine::parse(s, quantity).unwrap()
}

fn request_of(
    order: ReturnRequestContext,
    lines: Vec<RequestedLine>,
    requested_at: DateTime<Utc>,
) -> ReturnCommand {
    ReturnCommand::RequestReturn(RequestReturn {
        order,
        requested_at,
        window: ReturnWindow::default(),
        lines,
        reason: reason("does not fit"),
    })
}

fn requested_at() -> DateTime<Utc> {
    delivered_at() + Duration::days(10)
}

fn request_lines(lines: Vec<RequestedLine>) -> ReturnCommand {
    request_of(delivered_order(), lines, requested_at())
}

/// Both lines, in full: refund due 25.00.
fn request() -> ReturnCommand {
    request_lines(vec![wanted("A-1", 2), wanted("B-2", 1)])
}

const REFUND_DUE: i64 = 2500;

fn return_line(s: &str, quantity: i64, unit_price_minor: i64) -> ReturnLine {
    ReturnLine {
        sku: sku(s),
        quantity: Quantity::parse(quantity).unwrap(),
        unit_price_minor,
    }
}

fn requested_event() -> ReturnEvent {
    ReturnEvent::ReturnRequested {
        order_id: order_id(),
        lines: vec![return_line("A-1", 2, 1000), return_line("B-2", 1, 500)],
        refund_due_minor: REFUND_DUE,
        currency: eur(),
        reason: reason("does not fit"),
        delivered_at: delivered_at(),
        requested_at: requested_at(),
    }
}

fn rma() -> RmaNumber {
    RmaNumber::parse("RMA-7").unwrap()
}

fn approve() -> ReturnCommand {
    ReturnCommand::ApproveReturn { rma_number: rma() }
}

fn reject() -> ReturnCommand {
    ReturnCommand::RejectReturn {
        reason: reason("worn items"),
    }
}

fn inspected(s: &str, outcome: InspectionOutcome) -> LineInspection {
    LineInspection {
        sku: sku(s),
        outcome,
    }
}

use InspectionOutcome::{Accepted, Refused};

fn receive_with(inspections: Vec<LineInspection>) -> ReturnCommand {
    ReturnCommand::RecordItemsReceived { inspections }
}

fn receive_all() -> ReturnCommand {
    receive_with(vec![inspected("A-1", Accepted), inspected("B-2", Accepted)])
}

fn receive_none() -> ReturnCommand {
    receive_with(vec![inspected("A-1", Refused), inspected("B-2", Refused)])
}

fn refund_id(s: &str) -> RefundId {
    RefundId::parse(s).unwrap()
}

fn refund(id: &str, amount_minor: i64) -> ReturnCommand {
    ReturnCommand::RecordRefundIssued {
        refund_id: refund_id(id),
        amount: Money::parse(amount_minor, eur()).unwrap(),
    }
}

fn cancel() -> ReturnCommand {
    ReturnCommand::CancelReturn {
        reason: reason("customer keeps the items"),
    }
}

fn carrier() -> Carrier {
    Carrier::parse("DHL").unwrap()
}

fn tracking(s: &str) -> TrackingNumber {
    TrackingNumber::parse(s).unwrap()
}

fn ship_back(tracking_number: &str) -> ReturnCommand {
    ReturnCommand::RecordItemsShippedBack {
        carrier: carrier(),
        tracking_number: tracking(tracking_number),
    }
}

fn escalate() -> ReturnCommand {
    ReturnCommand::EscalateReturn {
        reason: reason("parcel lost in transit"),
    }
}

fn requested() -> Vec<ReturnCommand> {
    vec![request()]
}
fn approved() -> Vec<ReturnCommand> {
    vec![request(), approve()]
}
fn received() -> Vec<ReturnCommand> {
    vec![request(), approve(), receive_all()]
}
fn refunded() -> Vec<ReturnCommand> {
    vec![
        request(),
        approve(),
        receive_all(),
        refund("rf-1", REFUND_DUE),
    ]
}
fn rejected() -> Vec<ReturnCommand> {
    vec![request(), reject()]
}
fn rejected_at_inspection() -> Vec<ReturnCommand> {
    vec![request(), approve(), receive_none()]
}
fn cancelled() -> Vec<ReturnCommand> {
    vec![request(), cancel()]
}
/// Cancelled after approval, and the parcel arrived anyway.
fn cancelled_then_received() -> Vec<ReturnCommand> {
    vec![request(), approve(), cancel(), receive_all()]
}
fn shipped_back() -> Vec<ReturnCommand> {
    let mut h = cancelled_then_received();
    h.push(ship_back("JD0001"));
    h
}

/// Every status a return can be in, with a history that leads there.
fn every_status() -> Vec<(ReturnStatus, Vec<ReturnCommand>)> {
    vec![
        (ReturnStatus::Requested, requested()),
        (ReturnStatus::Approved, approved()),
        (ReturnStatus::Received, received()),
        (ReturnStatus::Refunded, refunded()),
        (ReturnStatus::Rejected, rejected()),
        (ReturnStatus::Rejected, rejected_at_inspection()),
        (ReturnStatus::Cancelled, cancelled()),
        (ReturnStatus::Cancelled, cancelled_then_received()),
        (ReturnStatus::Cancelled, shipped_back()),
    ]
}

/// The refusal of `command` after `history`.
fn refusal(history: Vec<ReturnCommand>, command: ReturnCommand) -> ReturnError {
    match Spec::<Returns>::given_commands(history)
        .when(command)
        .result()
    {
        Ok(events) => panic!("expected a refusal, got {events:?}"),
        Err(e) => e.clone(),
    }
}

/// Asserts `command` is an illegal transition in `status`, naming what was attempted.
#[track_caller]
fn assert_illegal(
    status: ReturnStatus,
    history: Vec<ReturnCommand>,
    command: ReturnCommand,
    action: &str,
) {
    match refusal(history, command) {
        ReturnError::IllegalTransition {
            status: s,
            action: a,
            ..
        } => assert_eq!((s, a), (status, action)),
        other => panic!("in {status}: expected an illegal transition, got {other:?}"),
    }
}

// ---- request return ------------------------------------------------------------------------

#[test]
fn requesting_a_return_prices_the_lines_from_the_order_and_awaits_a_decision() {
    let state = Spec::<Returns>::given([])
        .when(request())
        .then([requested_event()]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Requested));
    assert_eq!(
        Returns::pending_actions(&state),
        [ReturnAction::DecideReturn]
    );
    assert_eq!(Returns::deadline_step(&state), Some("REQUESTED"));
}

#[test]
fn a_partial_return_is_due_only_the_returned_units() {
    let state = Spec::<Returns>::given([])
        .when(request_lines(vec![wanted("A-1", 1)]))
        .then([ReturnEvent::ReturnRequested {
            order_id: order_id(),
            lines: vec![return_line("A-1", 1, 1000)],
            refund_due_minor: 1000,
            currency: eur(),
            reason: reason("does not fit"),
            delivered_at: delivered_at(),
            requested_at: requested_at(),
        }]);
    assert_eq!(state.case().unwrap().refund_due_minor, 1000);
}

#[test]
fn a_return_cannot_be_requested_for_an_order_that_is_not_delivered() {
    let shipped = ReturnRequestContext {
        order_status: OrderStatus::Shipped,
        delivered_at: None,
        ..delivered_order()
    };
    let err = refusal(
        vec![],
        request_of(shipped, vec![wanted("A-1", 1)], requested_at()),
    );
    assert_eq!(
        err,
        ReturnError::OrderNotDelivered {
            order_id: order_id(),
            status: OrderStatus::Shipped
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "order {} is shipped; a return can only be requested once the order is delivered",
            order_id()
        )
    );
}

#[test]
fn returns_close_30_days_after_delivery_and_the_message_says_when() {
    let last_moment = delivered_at() + Duration::days(30);
    Spec::<Returns>::given([])
        .when(request_of(
            delivered_order(),
            vec![wanted("A-1", 1)],
            last_moment,
        ))
        .then([ReturnEvent::ReturnRequested {
            order_id: order_id(),
            lines: vec![return_line("A-1", 1, 1000)],
            refund_due_minor: 1000,
            currency: eur(),
            reason: reason("does not fit"),
            delivered_at: delivered_at(),
            requested_at: last_moment,
        }]);

    let too_late = last_moment + Duration::seconds(1);
    let err = refusal(
        vec![],
        request_of(delivered_order(), vec![wanted("A-1", 1)], too_late),
    );
    assert_eq!(err.code(), "return_window_closed");
    assert_eq!(
        err.to_string(),
        format!(
            "order {} was delivered on 2026-03-01; returns close 30 days after delivery, on 2026-03-31",
            order_id()
        )
    );
}

#[test]
fn a_configured_return_window_replaces_the_default() {
    let day_45 = delivered_at() + Duration::days(45);
    let with_window = |days| {
        ReturnCommand::RequestReturn(RequestReturn {
            order: delivered_order(),
            requested_at: day_45,
            window: ReturnWindow::parse(days).unwrap(),
            lines: vec![wanted("A-1", 1)],
            reason: reason("does not fit"),
        })
    };
    let events = Spec::<Returns>::given([])
        .when(with_window(60))
        .result()
        .clone()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        refusal(vec![], with_window(40)).to_string(),
        format!(
            "order {} was delivered on 2026-03-01; returns close 40 days after delivery, on 2026-04-10",
            order_id()
        )
    );
}

#[test]
fn a_return_needs_at_least_one_line() {
    Spec::<Returns>::given([])
        .when(request_lines(vec![]))
        .then_error(ReturnError::NoLines);
}

#[test]
fn a_return_refuses_a_sku_twice() {
    Spec::<Returns>::given([])
        .when(request_lines(vec![wanted("A-1", 1), wanted("A-1", 1)]))
        .then_error(ReturnError::DuplicateSku("A-1".into()));
}

#[test]
fn a_return_refuses_a_sku_that_was_not_ordered() {
    let err = refusal(vec![], request_lines(vec![wanted("Z-9", 1)]));
    assert_eq!(
        err,
        ReturnError::SkuNotOrdered {
            order_id: order_id(),
            sku: "Z-9".into()
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "SKU Z-9 is not on order {}; only ordered SKUs can be returned",
            order_id()
        )
    );
}

#[test]
fn a_return_refuses_more_units_than_were_ordered() {
    let err = refusal(vec![], request_lines(vec![wanted("A-1", 3)]));
    assert_eq!(
        err,
        ReturnError::QuantityExceedsOrdered {
            sku: "A-1".into(),
            ordered: 2,
            requested: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "SKU A-1 was ordered 2 times; 3 cannot be returned"
    );
}

#[test]
fn an_order_has_one_return_case() {
    for (status, history) in every_status() {
        Spec::<Returns>::given_commands(history)
            .when(request())
            .then_error(ReturnError::ReturnAlreadyRequested { status });
    }
}

#[test]
fn every_command_but_a_request_needs_a_requested_return() {
    for command in [
        approve(),
        reject(),
        receive_all(),
        refund("rf-1", REFUND_DUE),
        cancel(),
        ship_back("JD0001"),
        escalate(),
    ] {
        Spec::<Returns>::given([])
            .when(command)
            .then_error(ReturnError::ReturnNotFound);
    }
}

// ---- approve / reject ----------------------------------------------------------------------

#[test]
fn approving_records_the_rma_number_and_awaits_the_items() {
    let state = Spec::<Returns>::given([requested_event()])
        .when(approve())
        .then([ReturnEvent::ReturnApproved { rma_number: rma() }]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Approved));
    assert_eq!(
        Returns::pending_actions(&state),
        [ReturnAction::ReceiveItems]
    );
    assert_eq!(Returns::deadline_step(&state), Some("APPROVED"));
}

#[test]
fn rejecting_a_requested_return_finishes_it() {
    let state = Spec::<Returns>::given([requested_event()])
        .when(reject())
        .then([ReturnEvent::ReturnRejected {
            reason: reason("worn items"),
        }]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Rejected));
    assert!(Returns::pending_actions(&state).is_empty());
    assert_eq!(Returns::deadline_step(&state), None);
}

#[test]
fn only_a_requested_return_can_be_approved_or_rejected() {
    for (status, history) in every_status() {
        if status == ReturnStatus::Requested {
            continue;
        }
        assert_illegal(status, history.clone(), approve(), "approving");
        assert_illegal(status, history, reject(), "rejecting");
    }
}

// ---- items received ------------------------------------------------------------------------

#[test]
fn receiving_accepted_items_makes_their_refund_due() {
    let state = Spec::<Returns>::given_commands(approved())
        .when(receive_all())
        .then([ReturnEvent::ReturnItemsReceived {
            inspections: vec![inspected("A-1", Accepted), inspected("B-2", Accepted)],
            refund_due_minor: REFUND_DUE,
        }]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Received));
    assert_eq!(
        Returns::pending_actions(&state),
        [ReturnAction::IssueRefund]
    );
    assert_eq!(Returns::deadline_step(&state), Some("RECEIVED"));
}

#[test]
fn a_line_refused_at_inspection_is_not_refunded() {
    let partly = receive_with(vec![inspected("A-1", Accepted), inspected("B-2", Refused)]);
    let state = Spec::<Returns>::given_commands(approved())
        .when(partly)
        .then([ReturnEvent::ReturnItemsReceived {
            inspections: vec![inspected("A-1", Accepted), inspected("B-2", Refused)],
            refund_due_minor: 2000,
        }]);
    assert_eq!(state.case().unwrap().accepted_refund_minor(), 2000);
}

#[test]
fn when_no_line_passes_inspection_the_return_is_rejected() {
    let state = Spec::<Returns>::given_commands(approved())
        .when(receive_none())
        .then([
            ReturnEvent::ReturnItemsReceived {
                inspections: vec![inspected("A-1", Refused), inspected("B-2", Refused)],
                refund_due_minor: 0,
            },
            ReturnEvent::ReturnRejected {
                reason: reason(ALL_LINES_REFUSED),
            },
        ]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Rejected));
    assert!(Returns::pending_actions(&state).is_empty());
}

#[test]
fn the_inspection_covers_exactly_the_returned_lines() {
    Spec::<Returns>::given_commands(approved())
        .when(receive_with(vec![inspected("A-1", Accepted)]))
        .then_error(ReturnError::LineNotInspected("B-2".into()));
    Spec::<Returns>::given_commands(approved())
        .when(receive_with(vec![
            inspected("A-1", Accepted),
            inspected("B-2", Accepted),
            inspected("C-3", Accepted),
        ]))
        .then_error(ReturnError::LineNotReturned("C-3".into()));
    Spec::<Returns>::given_commands(approved())
        .when(receive_with(vec![
            inspected("A-1", Accepted),
            inspected("A-1", Refused),
            inspected("B-2", Accepted),
        ]))
        .then_error(ReturnError::DuplicateSku("A-1".into()));
}

#[test]
fn the_same_receipt_reported_again_is_a_no_op_and_another_one_is_refused() {
    let reordered = receive_with(vec![inspected("B-2", Accepted), inspected("A-1", Accepted)]);
    Spec::<Returns>::given_commands(received())
        .when(reordered)
        .then_nothing();
    Spec::<Returns>::given_commands(refunded())
        .when(receive_all())
        .then_nothing();
    let another = || receive_with(vec![inspected("A-1", Accepted), inspected("B-2", Refused)]);
    for history in [
        received(),
        refunded(),
        rejected_at_inspection(),
        cancelled_then_received(),
        shipped_back(),
    ] {
        Spec::<Returns>::given_commands(history)
            .when(another())
            .then_error(ReturnError::ItemsAlreadyReceived);
    }
}

#[test]
fn items_cannot_be_received_before_approval_or_after_a_rejection() {
    for (status, history) in [
        (ReturnStatus::Requested, requested()),
        (ReturnStatus::Rejected, rejected()),
    ] {
        assert_illegal(status, history, receive_all(), "recording items received");
    }
}

// ---- late fact: items arriving after cancellation ------------------------------------------

#[test]
fn items_arriving_after_cancellation_are_recorded_and_owed_back() {
    let state = Spec::<Returns>::given_commands(vec![request(), approve(), cancel()])
        .when(receive_none())
        .then([ReturnEvent::ReturnItemsReceived {
            inspections: vec![inspected("A-1", Refused), inspected("B-2", Refused)],
            refund_due_minor: 0,
        }]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Cancelled));
    assert_eq!(
        Returns::compensations_owed(&state),
        [ReturnCompensation::ShipItemsBack]
    );
    assert_eq!(
        Returns::pending_actions(&state),
        [ReturnAction::ShipItemsBack]
    );
    assert_eq!(Returns::deadline_step(&state), Some(COMPENSATION_STEP));
}

#[test]
fn items_arriving_after_a_cancellation_before_approval_are_owed_back_too() {
    let state = Spec::<Returns>::given_commands(cancelled())
        .when(receive_all())
        .then([ReturnEvent::ReturnItemsReceived {
            inspections: vec![inspected("A-1", Accepted), inspected("B-2", Accepted)],
            refund_due_minor: REFUND_DUE,
        }]);
    assert_eq!(
        Returns::compensations_owed(&state),
        [ReturnCompensation::ShipItemsBack]
    );
}

#[test]
fn shipping_the_items_back_settles_the_cancelled_return() {
    let state = Spec::<Returns>::given_commands(cancelled_then_received())
        .when(ship_back("JD0001"))
        .then([ReturnEvent::ReturnItemsShippedBack {
            carrier: carrier(),
            tracking_number: tracking("JD0001"),
        }]);
    assert!(Returns::compensations_owed(&state).is_empty());
    assert_eq!(
        Returns::compensations_done(&state),
        [ReturnCompensation::ShipItemsBack]
    );
    assert!(Returns::pending_actions(&state).is_empty());
    assert_eq!(Returns::deadline_step(&state), None);
}

#[test]
fn the_same_shipment_back_reported_again_is_a_no_op() {
    Spec::<Returns>::given_commands(shipped_back())
        .when(ship_back("JD0001"))
        .then_nothing();
}

#[test]
fn items_are_shipped_back_only_when_owed() {
    for (status, history) in every_status() {
        if history == cancelled_then_received() || history == shipped_back() {
            continue;
        }
        Spec::<Returns>::given_commands(history)
            .when(ship_back("JD0001"))
            .then_error(ReturnError::NoShipBackOwed { status });
    }
}

#[test]
fn a_second_shipment_back_is_refused_and_names_the_first() {
    let err = refusal(shipped_back(), ship_back("JD0002"));
    assert_eq!(
        err,
        ReturnError::ItemsAlreadyShippedBack {
            carrier: "DHL".into(),
            tracking_number: "JD0001".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "the items were already shipped back with DHL, tracking JD0001; a second shipment cannot be recorded"
    );
}

// ---- refund --------------------------------------------------------------------------------

#[test]
fn a_refund_of_the_amount_due_finishes_the_return() {
    let state = Spec::<Returns>::given_commands(received())
        .when(refund("rf-1", REFUND_DUE))
        .then([ReturnEvent::RefundIssued {
            refund_id: refund_id("rf-1"),
            amount: Money::parse(REFUND_DUE, eur()).unwrap(),
        }]);
    assert_eq!(Returns::status(&state), Some(ReturnStatus::Refunded));
    assert!(Returns::pending_actions(&state).is_empty());
    assert_eq!(state.case().unwrap().refunded_minor(), REFUND_DUE);
}

#[test]
fn a_refund_must_equal_the_refund_due_for_the_accepted_lines() {
    let partly = receive_with(vec![inspected("A-1", Accepted), inspected("B-2", Refused)]);
    let err = refusal(
        vec![request(), approve(), partly],
        refund("rf-1", REFUND_DUE),
    );
    assert_eq!(
        err,
        ReturnError::RefundAmountMismatch {
            expected: 2000,
            expected_currency: "EUR".into(),
            actual: REFUND_DUE,
            actual_currency: "EUR".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "refund amount 2500 EUR does not match the refund due for the accepted lines, 2000 EUR"
    );
    let in_dollars = ReturnCommand::RecordRefundIssued {
        refund_id: refund_id("rf-1"),
        amount: Money::parse(REFUND_DUE, Currency::parse("USD").unwrap()).unwrap(),
    };
    assert_eq!(
        refusal(received(), in_dollars).code(),
        "refund_amount_mismatch"
    );
}

#[test]
fn the_same_refund_reported_again_is_a_no_op_and_another_one_is_refused() {
    Spec::<Returns>::given_commands(refunded())
        .when(refund("rf-1", REFUND_DUE))
        .then_nothing();
    Spec::<Returns>::given_commands(refunded())
        .when(refund("rf-2", REFUND_DUE))
        .then_error(ReturnError::RefundAlreadyIssued {
            existing: "rf-1".into(),
            reported: "rf-2".into(),
        });
}

#[test]
fn only_a_received_return_can_be_refunded() {
    for (status, history) in every_status() {
        if matches!(status, ReturnStatus::Received | ReturnStatus::Refunded) {
            continue;
        }
        assert_illegal(
            status,
            history,
            refund("rf-1", REFUND_DUE),
            "recording a refund",
        );
    }
}

// ---- cancel --------------------------------------------------------------------------------

#[test]
fn a_requested_or_approved_return_can_be_cancelled() {
    for history in [requested(), approved()] {
        let state = Spec::<Returns>::given_commands(history)
            .when(cancel())
            .then([ReturnEvent::ReturnCancelled {
                reason: reason("customer keeps the items"),
            }]);
        assert_eq!(Returns::status(&state), Some(ReturnStatus::Cancelled));
        assert!(Returns::compensations_owed(&state).is_empty());
        assert!(Returns::pending_actions(&state).is_empty());
    }
}

#[test]
fn a_return_cannot_be_cancelled_once_received_or_finished() {
    for (status, history) in every_status() {
        if matches!(status, ReturnStatus::Requested | ReturnStatus::Approved) {
            continue;
        }
        Spec::<Returns>::given_commands(history)
            .when(cancel())
            .then_error(ReturnError::CannotCancel { status });
    }
}

// ---- escalate ------------------------------------------------------------------------------

#[test]
fn an_unfinished_return_or_one_that_owes_items_back_can_be_escalated() {
    for history in [
        requested(),
        approved(),
        received(),
        cancelled_then_received(),
    ] {
        Spec::<Returns>::given_commands(history)
            .when(escalate())
            .then([ReturnEvent::ReturnEscalated {
                reason: reason("parcel lost in transit"),
            }]);
    }
}

#[test]
fn a_settled_return_has_nothing_to_escalate() {
    for (status, history) in [
        (ReturnStatus::Refunded, refunded()),
        (ReturnStatus::Rejected, rejected()),
        (ReturnStatus::Rejected, rejected_at_inspection()),
        (ReturnStatus::Cancelled, cancelled()),
        (ReturnStatus::Cancelled, shipped_back()),
    ] {
        Spec::<Returns>::given_commands(history)
            .when(escalate())
            .then_error(ReturnError::NothingToEscalate { status });
    }
}

// ---- reminders ----------------------------------------------------------------------------

fn remind(action: ReturnAction, attempt: u32) -> ReturnCommand {
    ReturnCommand::RecordReminder { action, attempt }
}

fn reminded(action: ReturnAction, attempt: u32) -> ReturnEvent {
    ReturnEvent::ReturnReminded { action, attempt }
}

fn then_commands(
    mut history: Vec<ReturnCommand>,
    more: impl IntoIterator<Item = ReturnCommand>,
) -> Vec<ReturnCommand> {
    history.extend(more);
    history
}

#[test]
fn a_pending_return_action_is_reminded_once_per_attempt_in_order() {
    Spec::<Returns>::given_commands(approved())
        .when(remind(ReturnAction::ReceiveItems, 2))
        .then([reminded(ReturnAction::ReceiveItems, 2)]);
    let reminded_once = then_commands(approved(), [remind(ReturnAction::ReceiveItems, 2)]);
    Spec::<Returns>::given_commands(reminded_once.clone())
        .when(remind(ReturnAction::ReceiveItems, 2))
        .then_nothing();
    Spec::<Returns>::given_commands(reminded_once)
        .when(remind(ReturnAction::ReceiveItems, 4))
        .then_error(ReturnError::Reminder(ReminderRefusal::NotNextAttempt {
            action: "RECEIVE_ITEMS",
            attempt: 4,
            expected: 3,
        }));
}

#[test]
fn only_an_awaited_return_action_can_be_reminded() {
    Spec::<Returns>::given_commands(approved())
        .when(remind(ReturnAction::DecideReturn, 2))
        .then_error(ReturnError::Reminder(ReminderRefusal::NotAwaited {
            action: "DECIDE_RETURN",
        }));
    Spec::<Returns>::given_commands(refunded())
        .when(remind(ReturnAction::IssueRefund, 2))
        .then_error(ReturnError::Reminder(ReminderRefusal::NotAwaited {
            action: "ISSUE_REFUND",
        }));
}

#[test]
fn items_owed_back_are_reminded_like_any_pending_action() {
    Spec::<Returns>::given_commands(cancelled_then_received())
        .when(remind(ReturnAction::ShipItemsBack, 2))
        .then([reminded(ReturnAction::ShipItemsBack, 2)]);
}

#[test]
fn a_return_is_escalated_once_per_step() {
    Spec::<Returns>::given_commands(then_commands(requested(), [escalate()]))
        .when(escalate())
        .then_nothing();
    Spec::<Returns>::given_commands(then_commands(requested(), [escalate(), approve()]))
        .when(escalate())
        .then([ReturnEvent::ReturnEscalated {
            reason: reason("parcel lost in transit"),
        }]);
}

#[test]
fn the_returns_workflow_names_the_action_and_attempt_of_a_reminder_event() {
    assert_eq!(
        Returns::reminder(&reminded(ReturnAction::IssueRefund, 5)),
        Some((ReturnAction::IssueRefund, 5))
    );
    assert_eq!(
        Returns::reminder(&ReturnEvent::ReturnApproved { rma_number: rma() }),
        None
    );
}

// ---- the workflow as the kernel sees it ----------------------------------------------------

#[test]
fn return_streams_are_named_after_their_order() {
    assert_eq!(Returns::NAME, "return");
    assert_eq!(
        Returns::stream_name(order_id()),
        format!("return-{}", order_id())
    );
}

#[test]
fn every_state_names_a_known_deadline_step() {
    for (_, history) in every_status() {
        let state = Returns::rebuild(&events_of(history));
        if let Some(step) = Returns::deadline_step(&state) {
            assert!(Returns::DEADLINE_STEPS.contains(&step), "{step}");
        }
    }
}

#[test]
fn every_event_decodes_from_its_stored_form() {
    let mut all = Vec::new();
    for (_, history) in every_status() {
        all.extend(events_of(history));
    }
    for event in all {
        let decoded =
            ReturnEvent::decode(event.event_type(), event.schema_version(), &event.data());
        assert_eq!(decoded.unwrap(), event);
        assert!(!event.summary().is_empty());
    }
}

/// Every event the commands produce, in order.
fn events_of(history: Vec<ReturnCommand>) -> Vec<ReturnEvent> {
    let mut state = ReturnState::default();
    let mut all = Vec::new();
    for command in history {
        let events = decide(&state, command).unwrap();
        state = events.iter().fold(state, evolve);
        all.extend(events);
    }
    all
}

// ---- the request from an order's rebuilt state ---------------------------------------------

fn order_events(delivered: bool) -> Vec<OrderEvent> {
    let mut events = vec![
        OrderEvent::OrderPlaced {
            order_id: order_id(),
            customer_id: CustomerId::parse("cust-1").unwrap(),
            currency: eur(),
            lines: order_lines(),
            total_minor: 2500,
            shipping_address: ShippingAddress {
                name: AddressLine::parse("Ada Lovelace").unwrap(),
                line1: AddressLine::parse("1 Main St").unwrap(),
                line2: None,
                city: AddressLine::parse("London").unwrap(),
                postal_code: AddressLine::parse("N1 1AA").unwrap(),
                country: CountryCode::parse("GB").unwrap(),
            },
        },
        OrderEvent::PaymentAuthorized {
            payment_id: PaymentId::parse("pay-1").unwrap(),
            amount: Money::parse(2500, eur()).unwrap(),
        },
        OrderEvent::InventoryReserved {
            reservation_id: ReservationId::parse("res-1").unwrap(),
        },
        OrderEvent::OrderAccepted {},
        OrderEvent::FulfillmentStarted {},
        OrderEvent::OrderShipped {
            carrier: carrier(),
            tracking_number: tracking("JD0001"),
        },
    ];
    if delivered {
        events.push(OrderEvent::OrderDelivered {});
    }
    events
}

#[test]
fn a_delivered_order_gives_the_request_its_lines_prices_currency_and_delivery_time() {
    let order = Orders::rebuild(&order_events(true)).into_order().unwrap();
    let context = ReturnRequestContext::from_order(&order, Some(delivered_at())).unwrap();
    assert_eq!(context, delivered_order());
    Spec::<Returns>::given([])
        .when(request_of(
            context,
            vec![wanted("A-1", 2), wanted("B-2", 1)],
            requested_at(),
        ))
        .then([requested_event()]);
}

#[test]
fn an_order_that_is_not_delivered_gives_no_request_and_says_why() {
    let order = Orders::rebuild(&order_events(false)).into_order().unwrap();
    let err = ReturnRequestContext::from_order(&order, None).unwrap_err();
    assert_eq!(
        err,
        ReturnError::OrderNotDelivered {
            order_id: order_id(),
            status: OrderStatus::Shipped
        }
    );
    let delivered = Orders::rebuild(&order_events(true)).into_order().unwrap();
    assert_eq!(
        ReturnRequestContext::from_order(&delivered, None).unwrap_err(),
        ReturnError::OrderNotDelivered {
            order_id: order_id(),
            status: OrderStatus::Delivered
        },
        "a delivered order whose delivery time is unknown cannot open the return window"
    );
}

// ---- invariants over random command sequences ----------------------------------------------

fn any_outcome() -> impl Strategy<Value = InspectionOutcome> {
    prop_oneof![Just(Accepted), Just(Refused)]
}

fn any_command() -> impl Strategy<Value = ReturnCommand> {
    let id = prop::sample::select(vec!["rf-a", "rf-b"]);
    prop_oneof![
        Just(request()),
        (0i64..40).prop_map(|days| request_of(
            delivered_order(),
            vec![wanted("A-1", 1), wanted("B-2", 1)],
            delivered_at() + Duration::days(days),
        )),
        Just(approve()),
        Just(reject()),
        (any_outcome(), any_outcome())
            .prop_map(|(a, b)| receive_with(vec![inspected("A-1", a), inspected("B-2", b)])),
        (
            id,
            prop::sample::select(vec![0i64, 500, 1000, 1500, 2000, 2500, 3000])
        )
            .prop_map(|(id, amount)| refund(id, amount)),
        Just(cancel()),
        prop::sample::select(vec!["JD0001", "JD0002"]).prop_map(ship_back),
        Just(escalate()),
    ]
}

proptest! {
    #[test]
    fn random_command_sequences_keep_the_invariants(
        commands in prop::collection::vec(any_command(), 0..30)
    ) {
        let mut state = ReturnState::default();
        let mut history: Vec<ReturnEvent> = Vec::new();
        for command in commands {
            if let Ok(events) = decide(&state, command) {
                state = events.iter().fold(state, evolve);
                history.extend(events);
            }
            prop_assert_eq!(&Returns::rebuild(&history), &state);
            let Some(case) = state.case() else {
                prop_assert!(history.is_empty());
                continue;
            };

            // Never more refunded than the accepted lines are due.
            let refunded: i64 = history
                .iter()
                .filter_map(|e| match e {
                    ReturnEvent::RefundIssued { amount, .. } => Some(amount.amount_minor),
                    _ => None,
                })
                .sum();
            prop_assert!(refunded <= case.accepted_refund_minor());
            prop_assert!(case.accepted_refund_minor() <= case.refund_due_minor);

            // The status is the one the last status-changing event set; a receipt after
            // cancellation changes nothing.
            let mut expected = None;
            for event in &history {
                expected = match event {
                    ReturnEvent::ReturnRequested { .. } => Some(ReturnStatus::Requested),
                    ReturnEvent::ReturnApproved { .. } => Some(ReturnStatus::Approved),
                    ReturnEvent::ReturnRejected { .. } => Some(ReturnStatus::Rejected),
                    ReturnEvent::ReturnItemsReceived { .. }
                        if expected == Some(ReturnStatus::Approved) =>
                    {
                        Some(ReturnStatus::Received)
                    }
                    ReturnEvent::RefundIssued { .. } => Some(ReturnStatus::Refunded),
                    ReturnEvent::ReturnCancelled { .. } => Some(ReturnStatus::Cancelled),
                    _ => expected,
                };
            }
            let status = Returns::status(&state);
            prop_assert_eq!(status, expected);

            // Pending actions follow from the status and what is owed.
            let owed = !Returns::compensations_owed(&state).is_empty();
            let expected_actions = match case.status() {
                ReturnStatus::Requested => vec![ReturnAction::DecideReturn],
                ReturnStatus::Approved => vec![ReturnAction::ReceiveItems],
                ReturnStatus::Received => vec![ReturnAction::IssueRefund],
                ReturnStatus::Refunded | ReturnStatus::Rejected => vec![],
                ReturnStatus::Cancelled if owed => vec![ReturnAction::ShipItemsBack],
                ReturnStatus::Cancelled => vec![],
            };
            prop_assert_eq!(Returns::pending_actions(&state), expected_actions);
            prop_assert_eq!(
                Returns::deadline_step(&state).is_some(),
                !Returns::pending_actions(&state).is_empty()
            );
            if owed {
                prop_assert_eq!(case.status(), ReturnStatus::Cancelled);
                prop_assert!(history.iter().any(|e| e.event_type() == "ReturnItemsReceived"));
                prop_assert!(!history.iter().any(|e| e.event_type() == "ReturnItemsShippedBack"));
            }
        }
    }
}
