//! The KurrentDB backend's pure parts (error mapping, decoding, filters, connection strings),
//! and the client rebuild, without a server.

use super::*;
use kurrentdb::Error as E;
use tonic::{Code, Status};

/// A client error as the client itself builds it from a server's answer.
fn answered(status: Status) -> E {
    E::from_grpc(status)
}

fn is_unavailable(e: E) -> bool {
    matches!(map_error(e, "order-1"), StoreError::Unavailable(_))
}

#[test]
fn a_server_that_is_down_not_ready_or_too_busy_is_unavailable() {
    for status in [
        Status::unavailable("Server Is Not Ready"),
        Status::unavailable("Server Is Too Busy"),
        Status::unknown("transport error"),
        Status::internal("h2 protocol error: connection reset"),
    ] {
        let e = answered(status);
        assert!(matches!(e, E::ServerError(_)), "{e:?}");
        assert!(is_unavailable(e));
    }
}

#[test]
fn a_write_timeout_answered_aborted_is_unavailable_and_resent() {
    let e = answered(Status::aborted("Operation timed out"));
    assert!(
        matches!(
            e,
            E::Grpc {
                code: Code::Aborted,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(recovery(&e), Recovery::Resend);
    assert!(is_unavailable(e));
}

#[test]
fn deadlines_cancellations_and_exhaustion_are_unavailable() {
    for status in [
        Status::deadline_exceeded("deadline"),
        Status::cancelled("Timeout expired"),
        Status::cancelled("the call was cancelled"),
        Status::resource_exhausted("too many requests"),
    ] {
        assert!(is_unavailable(answered(status)));
    }
}

#[test]
fn a_lost_connection_or_a_failed_discovery_rebuilds_the_client_and_is_unavailable() {
    for e in [
        E::ConnectionClosed,
        E::GrpcConnectionError(kurrentdb::GrpcConnectionError::MaxDiscoveryAttemptReached(
            3,
        )),
        E::GrpcConnectionError(kurrentdb::GrpcConnectionError::Grpc("refused".into())),
    ] {
        assert_eq!(recovery(&e), Recovery::Rebuild, "{e:?}");
        assert!(is_unavailable(e));
    }
}

#[test]
fn a_follower_that_names_the_leader_is_resent_and_unavailable_meanwhile() {
    let e = E::NotLeaderException(kurrentdb::Endpoint {
        host: "node-2".into(),
        port: 2113,
    });
    assert_eq!(recovery(&e), Recovery::Resend);
    assert!(is_unavailable(e));
}

#[test]
fn a_missing_stream_is_not_found_and_a_deleted_one_is_deleted_naming_the_stream() {
    let e = map_error(answered(Status::not_found("no such stream")), "order-1");
    assert!(
        matches!(&e, StoreError::StreamNotFound(s) if s == "order-1"),
        "{e:?}"
    );
    let mut deleted = Status::failed_precondition("stream deleted");
    deleted
        .metadata_mut()
        .insert("exception", "stream-deleted".parse().unwrap());
    let e = map_error(answered(deleted), "order-1");
    assert!(
        matches!(&e, StoreError::StreamDeleted(s) if s == "order-1"),
        "{e:?}"
    );
    assert!(!e.is_conflict(), "deleted for good: not a race to retry");
}

#[test]
fn errors_a_resend_cannot_cure_are_reported_once_as_backend_errors() {
    for e in [
        answered(Status::permission_denied("denied")),
        answered(Status::invalid_argument("bad request")),
        answered(Status::unimplemented("no such method")),
        answered(Status::data_loss("lost")),
        E::InternalParsingError("bad".into()),
    ] {
        assert_eq!(recovery(&e), Recovery::Report, "{e:?}");
        assert!(
            matches!(map_error(e, "order-1"), StoreError::Backend(_)),
            "must be a backend error"
        );
    }
}

fn stored<'a>(data: &'a [u8], custom_metadata: &'a [u8]) -> StoredEvent<'a> {
    StoredEvent {
        stream_id: "order-1",
        revision: 4,
        position: kurrentdb::Position {
            commit: 900,
            prepare: 880,
        },
        id: uuid::Uuid::from_u128(7),
        event_type: "OrderPlaced",
        data,
        custom_metadata,
        created_ticks: Some("17676360001234567"),
        created: DateTime::from_timestamp(1_767_636_000, 0).unwrap(),
    }
}

fn assert_delivered_in_place(e: &RecordedEvent) {
    assert_eq!(e.stream_id, "order-1");
    assert_eq!(e.revision, 4);
    assert_eq!(e.position, Position::new(900, 880));
    assert_eq!(e.id, uuid::Uuid::from_u128(7));
    assert_eq!(e.event_type, "OrderPlaced");
}

#[test]
fn a_well_formed_event_decodes_with_its_metadata_and_schema_version() {
    let e = decode(&stored(
        br#"{"n":1}"#,
        br#"{"$correlationId":"c-1","occurredAt":"2026-01-02T03:04:05Z","schemaVersion":2}"#,
    ));
    assert_delivered_in_place(&e);
    assert_eq!(e.malformed, None);
    assert_eq!(e.data, serde_json::json!({"n": 1}));
    assert_eq!(e.schema_version, 2);
    assert_eq!(e.metadata.correlation_id.as_deref(), Some("c-1"));
    assert!(e.metadata.occurred_at.is_some());
}

#[test]
fn data_that_is_not_json_or_empty_is_delivered_as_malformed_with_the_reason() {
    for (data, reason) in [
        (&b"\x00\x01binary"[..], "data is not JSON"),
        (&b""[..], "data is empty"),
    ] {
        let e = decode(&stored(data, b""));
        assert_delivered_in_place(&e);
        assert_eq!(e.data, serde_json::Value::Null);
        let why = e.malformed.unwrap_or_default();
        assert!(why.contains(reason), "{why}");
    }
}

#[test]
fn metadata_of_other_types_is_delivered_as_malformed_keeping_the_fields_that_decode() {
    let e = decode(&stored(
        br#"{"n":1}"#,
        br#"{"occurredAt":5,"$causationId":"cause-1"}"#,
    ));
    assert_delivered_in_place(&e);
    assert_eq!(e.data, serde_json::json!({"n": 1}));
    assert!(e.malformed.unwrap_or_default().contains("occurredAt"));
    assert_eq!(e.metadata.causation_id.as_deref(), Some("cause-1"));

    for metadata in [
        &br#"{"$correlationId":7}"#[..],
        br#"{"schemaVersion":"two"}"#,
        br#"[1,2]"#,
        b"not json",
    ] {
        let e = decode(&stored(br#"{"n":1}"#, metadata));
        assert_delivered_in_place(&e);
        assert!(
            e.malformed.is_some(),
            "{}",
            String::from_utf8_lossy(metadata)
        );
    }
}

#[test]
fn the_recorded_time_keeps_the_servers_sub_second_ticks() {
    let e = decode(&stored(br#"{}"#, b""));
    assert_eq!(
        e.recorded_at,
        DateTime::from_timestamp(1_767_636_000, 123_456_700).unwrap()
    );
    let mut event = stored(br#"{}"#, b"");
    event.created_ticks = None;
    assert_eq!(decode(&event).recorded_at, event.created);
}

#[test]
fn no_prefix_filters_out_the_servers_own_streams_on_the_server() {
    let everything = format!("{:?}", stream_filter(""));
    assert!(everything.contains("^[^\\\\$]"), "{everything}");
    let orders = format!("{:?}", stream_filter("order-"));
    assert!(
        orders.contains("\"order-\"") && orders.contains("regex: None"),
        "{orders}"
    );
}

#[test]
fn a_connection_string_that_does_not_parse_never_shows_its_password() {
    for url in [
        "kurrentdb://admin:s3cret-pw@localhost:notaport?tls=false",
        "esdb://admin:s3cret-pw@node1:2113,node2:x?tls=false",
        "kurrentdb://admin:s3cret-pw@localhost:2113?tls=maybe",
    ] {
        let Err(e) = KurrentStore::connect(url) else {
            panic!("{url} must not parse");
        };
        let text = e.to_string();
        assert!(matches!(e, StoreError::InvalidUrl(_)), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
    }
    assert_eq!(
        masked("kurrentdb://admin:pw@host:2113?tls=false"),
        "kurrentdb://admin:***@host:2113?tls=false"
    );
}

/// A port on this machine that nothing listens on (yet).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn after_a_failed_first_connection_the_client_is_rebuilt_and_reaches_a_server_that_came_up() {
    let port = closed_port();
    let store = KurrentStore::connect(&format!(
        "kurrentdb://127.0.0.1:{port}?tls=false&maxDiscoverAttempts=2&discoveryInterval=10&gossipTimeout=300"
    ))
    .unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(store.client_rebuilds(), 1, "the dead client was replaced");

    // The server comes up: the next call connects to it (this listener does not speak gRPC, so
    // the call still fails, but the connection attempt reaches it).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let pinging = {
        let store = store.clone();
        tokio::spawn(async move { store.ping().await })
    };
    let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "a later call must connect again rather than reuse the dead client"
    );
    assert!(pinging.await.unwrap().is_err());
}
