//! The reconciler against a real PostgreSQL database: the projections name the overdue
//! instances, the reconciler records reminders and escalations through the command pipeline.

use event_store::{read_whole_stream, EventStore, RecordedEvent, StoreOptions};
use projector::returns::ReturnDeadlines;
use projector::{Deadlines, Projector, ReturnProjection, Runtime};
use reconciler::{Config, Reconciler, RunReport};
use std::sync::Arc;
use std::time::Duration;
use test_support::log::{authorize, cancel_order, place, request_return, reserve, Log};
use uuid::Uuid;

const SPACING: Duration = Duration::from_secs(1);

struct Env {
    store: Arc<dyn EventStore>,
    orders: Projector,
    returns: Runtime<ReturnProjection>,
    config: Config,
}

impl Env {
    /// Placed orders, owed compensations and requested returns are due at once (a deadline of
    /// 0 s), reminders a second apart, two before the escalation.
    async fn start() -> Self {
        let url = test_support::fresh_database().await;
        let mut projector_config = projector::Config::local(&url);
        projector_config.deadlines = Deadlines {
            placed: chrono::Duration::zero(),
            compensation: chrono::Duration::zero(),
            ..Deadlines::default()
        };
        projector_config.reminder_spacing = chrono::Duration::from_std(SPACING).unwrap();
        let orders = Projector::connect(projector_config.clone()).await.unwrap();
        let returns = Runtime::start(
            projector_config,
            ReturnProjection::new(
                ReturnDeadlines::from_lookup(|name| {
                    (name == "MILESTONE_RETURN_DEADLINE_REQUESTED_SECS").then(|| "0".to_owned())
                })
                .unwrap(),
            ),
        )
        .await
        .unwrap();
        let store = event_store::connect(&url, &StoreOptions { pool_size: 2 })
            .await
            .unwrap();
        let mut config = Config::local(&url);
        config.reminder_spacing = chrono::Duration::from_std(SPACING).unwrap();
        config.max_reminders = 2;
        Self {
            store,
            orders,
            returns,
            config,
        }
    }

    async fn project(&self) {
        // The log's visibility can trail an append by a moment.
        for _ in 0..5 {
            self.orders.run_once().await.unwrap();
            self.returns.run_once().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn reconciler(&self) -> Reconciler {
        Reconciler::connect(self.config.clone()).await.unwrap()
    }

    async fn placed_order(&self) -> Uuid {
        let id = Uuid::new_v4();
        Log::new(self.store.as_ref())
            .order(id, vec![place(id, "cust-silent", &[("A", 1, 1000)])])
            .await;
        id
    }

    async fn requested_return(&self) -> Uuid {
        let id = Uuid::new_v4();
        let order = test_support::log::new_order(id, "cust-returning", &[("A", 1, 1000)]);
        let now = chrono::Utc::now();
        Log::new(self.store.as_ref())
            .record::<domain::Returns>(
                id,
                vec![request_return(
                    &order,
                    now - chrono::Duration::days(1),
                    now,
                    &[("A", 1)],
                    "does not fit",
                )],
            )
            .await;
        id
    }

    async fn stream(&self, id: Uuid) -> Vec<RecordedEvent> {
        read_whole_stream(self.store.as_ref(), &format!("order-{id}"))
            .await
            .unwrap()
    }
}

fn of_type<'a>(events: &'a [RecordedEvent], event_type: &str) -> Vec<&'a RecordedEvent> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn reminders(n: usize) -> RunReport {
    RunReport {
        reminders: n,
        ..RunReport::default()
    }
}

#[tokio::test]
async fn an_order_nobody_answers_gets_k_reminders_per_pending_action_then_one_escalation() {
    let env = Env::start().await;
    let id = env.placed_order().await;
    let reconciler = env.reconciler().await;
    env.project().await;

    assert_eq!(reconciler.run_once().await.unwrap(), reminders(2));
    env.project().await;
    assert_eq!(
        reconciler.run_once().await.unwrap(),
        RunReport::default(),
        "the next reminder waits for the spacing"
    );
    tokio::time::sleep(SPACING).await;
    env.project().await;
    assert_eq!(reconciler.run_once().await.unwrap(), reminders(2));
    tokio::time::sleep(SPACING).await;
    env.project().await;
    assert_eq!(
        reconciler.run_once().await.unwrap(),
        RunReport {
            escalations: 1,
            ..RunReport::default()
        }
    );
    tokio::time::sleep(SPACING).await;
    env.project().await;
    assert_eq!(reconciler.run_once().await.unwrap(), RunReport::default());

    let stream = env.stream(id).await;
    let recorded: Vec<_> = of_type(&stream, "OrderReminded")
        .iter()
        .map(|e| e.data.clone())
        .collect();
    assert_eq!(
        recorded,
        [
            serde_json::json!({"action": "AUTHORIZE_PAYMENT", "attempt": 2}),
            serde_json::json!({"action": "RESERVE_INVENTORY", "attempt": 2}),
            serde_json::json!({"action": "AUTHORIZE_PAYMENT", "attempt": 3}),
            serde_json::json!({"action": "RESERVE_INVENTORY", "attempt": 3}),
        ]
    );
    let escalations = of_type(&stream, "OrderEscalated");
    assert_eq!(escalations.len(), 1);
    assert_eq!(
        escalations[0].data["reason"],
        "AUTHORIZE_PAYMENT, RESERVE_INVENTORY unanswered after 2 reminder(s)"
    );
    let placed_correlation = stream[0].metadata.correlation_id.clone();
    for event in &stream[1..] {
        assert_eq!(event.metadata.correlation_id, placed_correlation);
        let causation = event.metadata.causation_id.as_deref().unwrap();
        assert!(Uuid::parse_str(causation).is_ok(), "{causation}");
    }
    let runs: std::collections::HashSet<_> = stream[1..]
        .iter()
        .map(|e| e.metadata.causation_id.clone())
        .collect();
    assert_eq!(
        runs.len(),
        3,
        "each run is the causation of what it recorded"
    );
}

#[tokio::test]
async fn an_answered_action_is_no_longer_reminded() {
    let env = Env::start().await;
    let id = env.placed_order().await;
    Log::new(env.store.as_ref())
        .order(id, vec![authorize("pay-1", 1000)])
        .await;
    env.project().await;
    assert_eq!(
        env.reconciler().await.run_once().await.unwrap(),
        reminders(1)
    );
    let stream = env.stream(id).await;
    assert_eq!(
        of_type(&stream, "OrderReminded")[0].data,
        serde_json::json!({"action": "RESERVE_INVENTORY", "attempt": 2})
    );
}

#[tokio::test]
async fn an_owed_compensation_is_chased_like_any_pending_action() {
    let env = Env::start().await;
    let id = env.placed_order().await;
    Log::new(env.store.as_ref())
        .order(
            id,
            vec![
                authorize("pay-1", 1000),
                reserve("res-1"),
                cancel_order("changed my mind"),
            ],
        )
        .await;
    env.project().await;
    assert_eq!(
        env.reconciler().await.run_once().await.unwrap(),
        reminders(2)
    );
    let stream = env.stream(id).await;
    let recorded: Vec<_> = of_type(&stream, "OrderReminded")
        .iter()
        .map(|e| e.data.clone())
        .collect();
    assert_eq!(
        recorded,
        [
            serde_json::json!({"action": "VOID_PAYMENT", "attempt": 2}),
            serde_json::json!({"action": "RELEASE_INVENTORY", "attempt": 2}),
        ]
    );
}

#[tokio::test]
async fn a_return_nobody_decides_is_chased_too() {
    let env = Env::start().await;
    let id = env.requested_return().await;
    env.project().await;
    assert_eq!(
        env.reconciler().await.run_once().await.unwrap(),
        reminders(1)
    );
    let stream = read_whole_stream(env.store.as_ref(), &format!("return-{id}"))
        .await
        .unwrap();
    assert_eq!(
        of_type(&stream, "ReturnReminded")[0].data,
        serde_json::json!({"action": "DECIDE_RETURN", "attempt": 2})
    );
}

#[tokio::test]
async fn an_instance_the_read_models_have_not_caught_up_with_waits_for_the_next_run() {
    let env = Env::start().await;
    let id = env.placed_order().await;
    env.project().await;
    // Paid and reserved since the projector last looked: accepted, with a day to start.
    Log::new(env.store.as_ref())
        .order(id, vec![authorize("pay-1", 1000), reserve("res-1")])
        .await;
    let reconciler = env.reconciler().await;
    assert_eq!(reconciler.run_once().await.unwrap(), RunReport::default());
    env.project().await;
    assert_eq!(reconciler.run_once().await.unwrap(), RunReport::default());
    assert!(of_type(&env.stream(id).await, "OrderReminded").is_empty());
}

/// The read-model migrations of a database set up before the follow-up columns (0008 on).
fn migrations_before_the_follow_up_columns() -> Vec<(&'static str, &'static str)> {
    all_read_model_migrations()
        .into_iter()
        .filter(|(name, _)| *name < "0008")
        .collect()
}

/// Every read-model migration, in the order the projector's runtimes apply them.
fn all_read_model_migrations() -> Vec<(&'static str, &'static str)> {
    [
        projector::db::RUNTIME_MIGRATIONS,
        projector::orders::MIGRATIONS,
        projector::returns::MIGRATIONS,
    ]
    .concat()
}

#[tokio::test]
async fn instances_already_overdue_before_the_follow_up_columns_are_chased_after_the_upgrade() {
    let env = Env::start().await;
    let order = env.placed_order().await;
    let case = env.requested_return().await;
    env.project().await;

    // A read-model database migrated before the follow-up columns, holding these rows as the
    // projector wrote them then; nothing happens to either instance afterwards.
    let old = test_support::fresh_database().await;
    let (mut client, connection) = tokio_postgres::connect(&old, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    service_kit::postgres::apply_migrations(
        &mut client,
        "read_model_migrations",
        &migrations_before_the_follow_up_columns(),
    )
    .await
    .unwrap();
    let current = env.orders.pool().get().await.unwrap();
    for table in ["order_status", "return_status"] {
        let rows = current
            .query(
                &format!(
                    "select (to_jsonb(s) - 'reminder_attempts' - 'last_reminder_at'
                             - 'next_reminder_at')::text
                       from {table} s"
                ),
                &[],
            )
            .await
            .unwrap();
        for row in rows {
            let json: String = row.get(0);
            client
                .execute(
                    &format!(
                        "insert into {table}
                         select * from jsonb_populate_record(null::{table}, $1::text::jsonb)"
                    ),
                    &[&json],
                )
                .await
                .unwrap();
        }
    }
    // The upgrade: the projector's migrations, as it applies them at start-up.
    service_kit::postgres::apply_migrations(
        &mut client,
        "read_model_migrations",
        &all_read_model_migrations(),
    )
    .await
    .unwrap();

    let mut config = env.config.clone();
    config.read_model_url = old.as_str().into();
    let reconciler = Reconciler::connect(config).await.unwrap();
    assert_eq!(reconciler.run_once().await.unwrap(), reminders(3));
    assert_eq!(of_type(&env.stream(order).await, "OrderReminded").len(), 2);
    let returned = read_whole_stream(env.store.as_ref(), &format!("return-{case}"))
        .await
        .unwrap();
    assert_eq!(of_type(&returned, "ReturnReminded").len(), 1);
}

#[tokio::test]
async fn instances_the_reconciler_skips_every_run_do_not_keep_a_later_due_one_from_being_chased() {
    let mut env = Env::start().await;
    env.config.batch_size = 2;
    // Due first, and skipped every run: a later event the projector cannot apply parks each
    // stream, so its row never catches up with it.
    for _ in 0..3 {
        let id = env.placed_order().await;
        Log::new(env.store.as_ref())
            .append_raw(
                &format!("order-{id}"),
                event_store::ExpectedRevision::Exact(0),
                "PaymentAuthorized",
                1,
                serde_json::json!({"unexpected": true}),
            )
            .await;
    }
    let later = env.placed_order().await;
    env.project().await;

    assert_eq!(
        env.reconciler().await.run_once().await.unwrap(),
        RunReport {
            reminders: 2,
            ..RunReport::default()
        }
    );
    assert_eq!(of_type(&env.stream(later).await, "OrderReminded").len(), 2);
}

#[tokio::test]
async fn two_runs_at_once_record_each_attempt_once() {
    let env = Env::start().await;
    let id = env.placed_order().await;
    env.project().await;
    let (a, b) = (env.reconciler().await, env.reconciler().await);
    let (first, second) = tokio::join!(a.run_once(), b.run_once());
    assert_eq!(first.unwrap().reminders + second.unwrap().reminders, 2);
    assert_eq!(of_type(&env.stream(id).await, "OrderReminded").len(), 2);
}

#[tokio::test]
async fn a_second_reconciler_stands_by_while_one_is_active() {
    let env = Env::start().await;
    env.placed_order().await;
    env.project().await;
    let mut config = env.config.clone();
    config.interval = Duration::from_millis(100);
    config.standby_poll = Duration::from_millis(50);
    let active = Arc::new(Reconciler::connect(config.clone()).await.unwrap());
    let standby = Arc::new(Reconciler::connect(config).await.unwrap());
    let (stop_active, stopped_active) = tokio::sync::oneshot::channel::<()>();
    let (stop_standby, stopped_standby) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn({
        let active = active.clone();
        async move {
            active
                .run(async {
                    let _ = stopped_active.await;
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = tokio::spawn({
        let standby = standby.clone();
        async move {
            standby
                .run(async {
                    let _ = stopped_standby.await;
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let holders = lease_holders(&env).await;
    assert_eq!(holders, 1);
    // The active one shuts down gracefully and releases its lease; the standby takes over.
    stop_active.send(()).unwrap();
    a.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        lease_token(&env).await,
        2,
        "the standby took the lease over"
    );
    stop_standby.send(()).unwrap();
    s.await.unwrap();
}

async fn lease_row(env: &Env) -> tokio_postgres::Row {
    let client = env.orders.pool().get().await.unwrap();
    client
        .query_one(
            "select count(*), max(fencing_token) from projection_leases where projection = $1",
            &[&reconciler::LEASE],
        )
        .await
        .unwrap()
}

async fn lease_holders(env: &Env) -> i64 {
    lease_row(env).await.get(0)
}

async fn lease_token(env: &Env) -> i64 {
    lease_row(env).await.get(1)
}

#[tokio::test]
async fn what_the_reconciler_records_names_the_reconciler_service_as_who_decided() {
    let env = Env::start().await;
    let id = env.placed_order().await;
    env.project().await;
    env.reconciler().await.run_once().await.unwrap();

    let stream = env.stream(id).await;
    let reminded = of_type(&stream, "OrderReminded");
    assert_eq!(reminded.len(), 2);
    for event in reminded {
        let principal = event.metadata.principal.as_ref().unwrap();
        assert_eq!(
            (principal.subject.as_str(), principal.role.as_str()),
            ("reconciler", "service")
        );
    }
}
