//! Every event variant, serialised the way the event store keeps it, validates against its
//! committed JSON Schema under `schemas/events/` (order and returns events alike); every schema
//! file names a known event type.

use chrono::{TimeZone, Utc};
use domain::*;
use std::path::PathBuf;
use uuid::Uuid;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/events")
}

fn one_of_each() -> Vec<OrderEvent> {
    let eur = Currency::parse("EUR").unwrap();
    let text = |s: &str| Reason::parse(s).unwrap();
    vec![
        OrderEvent::OrderPlaced {
            order_id: OrderId::new(Uuid::from_u128(7)),
            customer_id: CustomerId::parse("c-1").unwrap(),
            currency: eur,
            lines: vec![OrderLine {
                sku: Sku::parse("A-1").unwrap(),
                quantity: Quantity::parse(3).unwrap(),
                unit_price_minor: 250,
            }],
            total_minor: 750,
            shipping_address: ShippingAddress {
                name: AddressLine::parse("Ada").unwrap(),
                line1: AddressLine::parse("1 Main St").unwrap(),
                line2: Some(AddressLine::parse("Flat 2").unwrap()),
                city: AddressLine::parse("Paris").unwrap(),
                postal_code: AddressLine::parse("75001").unwrap(),
                country: CountryCode::parse("FR").unwrap(),
            },
        },
        OrderEvent::PaymentAuthorized {
            payment_id: PaymentId::parse("pay-1").unwrap(),
            amount: Money::parse(750, eur).unwrap(),
        },
        OrderEvent::PaymentDeclined {
            payment_id: PaymentId::parse("pay-1").unwrap(),
            reason: text("card expired"),
        },
        OrderEvent::InventoryReserved {
            reservation_id: ReservationId::parse("res-1").unwrap(),
        },
        OrderEvent::InventoryReservationFailed {
            reservation_id: ReservationId::parse("res-1").unwrap(),
            reason: text("out of stock"),
        },
        OrderEvent::OrderAccepted {},
        OrderEvent::OrderRejected {
            cause: RejectionCause::InventoryShortage,
            reason: text("out of stock"),
        },
        OrderEvent::FulfillmentStarted {},
        OrderEvent::OrderShipped {
            carrier: Carrier::parse("UPS").unwrap(),
            tracking_number: TrackingNumber::parse("1Z999").unwrap(),
        },
        OrderEvent::OrderDelivered {},
        OrderEvent::OrderCancelled {
            reason: text("changed mind"),
        },
        OrderEvent::PaymentVoided {
            payment_id: PaymentId::parse("pay-1").unwrap(),
        },
        OrderEvent::InventoryReleased {
            reservation_id: ReservationId::parse("res-1").unwrap(),
        },
        OrderEvent::OrderEscalated {
            reason: text("stuck"),
        },
        OrderEvent::OrderReminded {
            action: domain::PendingAction::AuthorizePayment,
            attempt: 2,
        },
    ]
}

fn one_of_each_return_event() -> Vec<ReturnEvent> {
    let eur = Currency::parse("EUR").unwrap();
    let text = |s: &str| Reason::parse(s).unwrap();
    let at = |day| Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap();
    vec![
        ReturnEvent::ReturnRequested {
            order_id: OrderId::new(Uuid::from_u128(7)),
            lines: vec![ReturnLine {
                sku: Sku::parse("A-1").unwrap(),
                quantity: Quantity::parse(2).unwrap(),
                unit_price_minor: 250,
            }],
            refund_due_minor: 500,
            currency: eur,
            reason: text("does not fit"),
            delivered_at: at(1),
            requested_at: at(5),
        },
        ReturnEvent::ReturnApproved {
            rma_number: RmaNumber::parse("RMA-1").unwrap(),
        },
        ReturnEvent::ReturnRejected {
            reason: text("worn items"),
        },
        ReturnEvent::ReturnItemsReceived {
            inspections: vec![LineInspection {
                sku: Sku::parse("A-1").unwrap(),
                outcome: InspectionOutcome::Accepted,
            }],
            refund_due_minor: 500,
        },
        ReturnEvent::RefundIssued {
            refund_id: RefundId::parse("rf-1").unwrap(),
            amount: Money::parse(500, eur).unwrap(),
        },
        ReturnEvent::ReturnCancelled {
            reason: text("customer keeps the items"),
        },
        ReturnEvent::ReturnItemsShippedBack {
            carrier: Carrier::parse("DHL").unwrap(),
            tracking_number: TrackingNumber::parse("JD0001").unwrap(),
        },
        ReturnEvent::ReturnEscalated {
            reason: text("parcel lost"),
        },
        ReturnEvent::ReturnReminded {
            action: domain::ReturnAction::ReceiveItems,
            attempt: 3,
        },
    ]
}

/// The committed schema of an event type's current version.
fn load_schema<E: EventContract>(event_type: &str) -> serde_json::Value {
    let version = E::TYPES
        .iter()
        .find(|t| t.name == event_type)
        .unwrap_or_else(|| panic!("{event_type} is not an event type"))
        .version;
    let path = schema_dir().join(format!("{event_type}.v{version}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("missing schema {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_event_variant_validates_against_its_committed_schema() {
    assert_each_validates_against_its_schema(one_of_each());
}

#[test]
fn every_return_event_variant_validates_against_its_committed_schema() {
    assert_each_validates_against_its_schema(one_of_each_return_event());
}

/// `events` hold one of every event type of their workflow, each valid against its schema.
fn assert_each_validates_against_its_schema<E: EventContract>(events: Vec<E>) {
    let covered: Vec<_> = events.iter().map(E::event_type).collect();
    let types: Vec<_> = E::TYPES.iter().map(|t| t.name).collect();
    assert_eq!(
        covered, types,
        "the sample must hold one of every event type"
    );
    for event in events {
        let schema = load_schema::<E>(event.event_type());
        let validator = jsonschema::validator_for(&schema).unwrap();
        let data = event.data();
        let errors: Vec<String> = validator
            .iter_errors(&data)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", event.event_type());
    }
}

#[test]
fn schemas_refuse_data_the_code_would_refuse() {
    let schema = load_schema::<OrderEvent>("OrderShipped");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = serde_json::json!({"carrier": "UPS", "tracking_number": "1Z", "extra": 1});
    assert!(!validator.is_valid(&bad));
    assert!(OrderEvent::decode("OrderShipped", 1, &bad).is_err());
}

#[test]
fn return_schemas_refuse_data_the_code_would_refuse() {
    let schema = load_schema::<ReturnEvent>("ReturnItemsReceived");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = serde_json::json!({
        "inspections": [{"sku": "A-1", "outcome": "MAYBE"}],
        "refund_due_minor": 0
    });
    assert!(!validator.is_valid(&bad));
    assert!(ReturnEvent::decode("ReturnItemsReceived", 1, &bad).is_err());

    let schema = load_schema::<ReturnEvent>("ReturnApproved");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = serde_json::json!({"rma_number": "R1"});
    assert!(!validator.is_valid(&bad));
    assert!(ReturnEvent::decode("ReturnApproved", 1, &bad).is_err());
}

#[test]
fn every_committed_schema_names_a_known_event_type() {
    let mut names: Vec<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Every version ever released stays, beside the current one.
    let mut expected: Vec<String> = OrderEvent::TYPES
        .iter()
        .chain(ReturnEvent::TYPES)
        .flat_map(|t| (1..=t.version).map(move |v| format!("{}.v{v}.json", t.name)))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

/// `schemas/events.sha256` pins every released schema file (`sha256sum` format): a released
/// version is never edited, a new version is a new file and a new line.
#[test]
fn released_schema_files_are_never_edited() {
    use sha2::{Digest, Sha256};
    let manifest = std::fs::read_to_string(schema_dir().join("../events.sha256")).unwrap();
    let mut pinned: Vec<&str> = Vec::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, name) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("malformed line in events.sha256: {line}"));
        let bytes = std::fs::read(schema_dir().join(name))
            .unwrap_or_else(|e| panic!("{name} is pinned but cannot be read: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            hash,
            "{name} was edited after its release; add a new version with an upcaster instead"
        );
        pinned.push(name);
    }
    for entry in std::fs::read_dir(schema_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            pinned.contains(&name.as_str()),
            "{name} is not pinned in schemas/events.sha256; add its line when releasing it"
        );
    }
}
