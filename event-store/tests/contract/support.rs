use event_store::postgres::GroupCommit;
use event_store::{
    read_whole_stream, AppendResult, EventStore, Metadata, NewEvent, Position, Principal,
    StoreOptions,
};
use std::sync::Arc;
use uuid::Uuid;

pub use test_support::fresh_database;

pub struct Backend {
    pub store: Arc<dyn EventStore>,
    /// Stream names of this test start with it (KurrentDB's log is shared between tests).
    pub prefix: String,
    /// Set for PostgreSQL: the URL of the test's own database.
    pub database_url: Option<String>,
    /// PostgreSQL with group commit on: appends made at the same time share a transaction.
    pub group_commit: bool,
}

impl Backend {
    pub fn stream(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// How many events `stream` holds.
    pub async fn len(&self, stream: &str) -> usize {
        read_whole_stream(self.store.as_ref(), stream)
            .await
            .unwrap()
            .len()
    }
}

/// Where an append left its stream and the log, whether it wrote or found its events stored.
pub fn landing(r: &AppendResult) -> (u64, Position) {
    (r.next_expected_revision, r.position)
}

pub async fn postgres() -> Backend {
    postgres_with(GroupCommit::Off).await
}

pub async fn postgres_with(group_commit: GroupCommit) -> Backend {
    let url = fresh_database().await;
    let store = event_store::connect_with(&url, &StoreOptions { pool_size: 24 }, group_commit)
        .await
        .unwrap();
    Backend {
        store,
        prefix: format!("t{}-", &Uuid::new_v4().simple().to_string()[..12]),
        database_url: Some(url),
        group_commit: group_commit != GroupCommit::Off,
    }
}

pub async fn kurrentdb() -> Option<Backend> {
    let Ok(url) = std::env::var("KURRENTDB_URL") else {
        eprintln!("KURRENTDB_URL is not set: KurrentDB contract test not run");
        return None;
    };
    let store = event_store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    Some(Backend {
        store,
        prefix: format!("t{}-", &Uuid::new_v4().simple().to_string()[..12]),
        database_url: None,
        group_commit: false,
    })
}

/// Declares one contract test, run once per backend.
#[macro_export]
macro_rules! contract {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name($crate::support::postgres().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres_with_group_commit() {
                let group_commit = event_store::postgres::GroupCommit::ON;
                super::$name($crate::support::postgres_with(group_commit).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_kurrentdb() {
                if let Some(backend) = $crate::support::kurrentdb().await {
                    super::$name(backend).await;
                }
            }
        }
    };
}

pub fn event(event_type: &str, n: i64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: serde_json::json!({ "n": n, "text": format!("event {n}") }),
        metadata: Metadata {
            correlation_id: Some("corr-1".into()),
            causation_id: Some(format!("cause-{n}")),
            idempotency_key: Some("key-1".into()),
            request_hash: Some("abc123".into()),
            occurred_at: Some("2026-01-02T03:04:05Z".parse().unwrap()),
            principal: Some(Principal {
                subject: format!("user-{n}"),
                role: "shop".into(),
                client: Some("web-shop".into()),
            }),
            traceparent: Some(format!("00-{:032x}-{:016x}-01", n + 1, n + 1)),
            tracestate: Some("vendor=value".into()),
        },
    }
}

pub fn events(n: i64) -> Vec<NewEvent> {
    (0..n).map(|i| event("Something", i)).collect()
}

/// Reads the log until `n` events are visible. On PostgreSQL a reader sees an event only once
/// every older transaction on the server has finished, so a read right after an append may
/// briefly see less.
pub async fn read_all_until(
    store: &dyn EventStore,
    after: Option<event_store::Position>,
    prefix: &str,
    n: usize,
) -> Vec<event_store::RecordedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let read = store.read_all(after, prefix, n).await.unwrap();
        if read.len() >= n || std::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
