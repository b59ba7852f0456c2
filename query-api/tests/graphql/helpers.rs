use domain::*;
use event_store::{EventStore, ExpectedRevision, Position, StoreOptions};
use projector::Projector;
use query_api::config::Config;
use query_api::startup::Application;
use serde_json::{json, Value};
use service_kit::auth::AuthConfig;
use std::sync::Arc;
use std::time::Duration;
pub use test_support::log::*;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    /// The test's database of the read models (also of the event log, unless apart).
    pub url: String,
    pub store: Arc<dyn EventStore>,
    pub projector: Projector,
    /// What the projector was started with, to start another.
    projector_config: projector::Config,
    pub client: reqwest::Client,
    /// The token of the latest command, so `project_all` knows how far to go.
    last_token: std::sync::Mutex<Option<Position>>,
}

pub struct Options {
    pub deadlines: projector::Deadlines,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub read_your_writes_timeout: Duration,
    /// The read models in a database of their own, apart from the event log.
    pub separate_read_models: bool,
    /// Subscription websockets open at once, at most.
    pub max_connections: usize,
    /// Subscriptions per websocket, at most.
    pub max_subscriptions_per_connection: usize,
    /// How long a websocket may stay open without `connection_init`.
    pub connection_init_timeout: Duration,
    /// How many committed batches a list subscriber may fall behind.
    pub subscription_buffer: usize,
    /// How many partitions the projections run as.
    pub partitions: u32,
    /// The rate limit of `POST /graphql` (`None`: off, as tests send many requests from one
    /// address).
    pub rate_limit: Option<service_kit::rate_limit::RateLimit>,
    /// How tokens are checked: disabled unless a test of authentication sets it.
    pub auth: AuthConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            deadlines: projector::Deadlines::default(),
            max_depth: 10,
            max_complexity: 2000,
            read_your_writes_timeout: Duration::from_secs(2),
            separate_read_models: false,
            max_connections: 100,
            max_subscriptions_per_connection: 20,
            connection_init_timeout: Duration::from_secs(10),
            subscription_buffer: 256,
            partitions: 1,
            rate_limit: None,
            // The suite's one place where authentication is disabled.
            auth: AuthConfig::Disabled,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(options: Options) -> TestApp {
    service_kit::init_test_tracing();
    let url = test_support::fresh_database().await;
    let store = event_store::connect(&url, &StoreOptions { pool_size: 4 })
        .await
        .unwrap();
    let read_model_url = if options.separate_read_models {
        test_support::fresh_database().await
    } else {
        url.clone()
    };
    let mut pconfig = projector::Config::local(&url);
    pconfig.read_model_url = read_model_url.clone().into();
    pconfig.deadlines = options.deadlines;
    pconfig.partitions = options.partitions;
    let projector = Projector::connect(pconfig.clone()).await.unwrap();
    let mut config = Config::local(&read_model_url);
    config.event_store_url = url.clone().into();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.workers = 2;
    config.pool_size = 4;
    config.read_your_writes_timeout = options.read_your_writes_timeout;
    config.max_depth = options.max_depth;
    config.max_complexity = options.max_complexity;
    config.max_connections = options.max_connections;
    config.max_subscriptions_per_connection = options.max_subscriptions_per_connection;
    config.connection_init_timeout = options.connection_init_timeout;
    config.subscription_buffer = options.subscription_buffer;
    config.rate_limit = options.rate_limit;
    config.auth = options.auth;
    config.projector = pconfig.clone();
    let app = Application::build(config).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        url: read_model_url,
        store,
        projector,
        projector_config: pconfig,
        client: reqwest::Client::new(),
        last_token: Default::default(),
    }
}

/// The known order for `customer`: three SKU-1 at 700, 2100 EUR cents in all.
pub fn known_order(id: Uuid, customer: &str) -> PlaceOrder {
    new_order(id, customer, &[("SKU-1", 3, 700)])
}

pub fn place(id: Uuid, customer: &str) -> OrderCommand {
    OrderCommand::PlaceOrder(known_order(id, customer))
}

pub const TOTAL: i64 = 2100;

impl TestApp {
    /// Records order commands in the log (decided on the rebuilt order, as the command API
    /// does); returns the consistency token of the last.
    pub async fn record(&self, id: Uuid, commands: Vec<OrderCommand>) -> Position {
        let recorded = Log::new(self.store.as_ref()).order(id, commands).await;
        self.wrote(recorded.position().expect("the commands change the order"))
    }

    /// Runs one order command; returns its consistency token.
    pub async fn command(&self, id: Uuid, command: OrderCommand) -> Position {
        self.record(id, vec![command]).await
    }

    /// Appends one event to the order's stream as given, bypassing the domain (e.g. a payload
    /// the projector cannot apply); returns its consistency token.
    pub async fn append_raw(
        &self,
        id: Uuid,
        expected: u64,
        event_type: &str,
        data: Value,
    ) -> Position {
        let position = Log::new(self.store.as_ref())
            .append_raw(
                &Orders::stream_name(id),
                ExpectedRevision::Exact(expected),
                event_type,
                1,
                data,
            )
            .await;
        self.wrote(position)
    }

    /// Remembers `token` for `project_all`.
    pub fn wrote(&self, token: Position) -> Position {
        let mut last = self.last_token.lock().unwrap();
        *last = (*last).max(Some(token));
        token
    }

    /// A connection to the test's database, for what the API cannot show.
    pub async fn database(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Places an order for `customer` and returns its id.
    pub async fn order(&self, customer: &str, commands: Vec<OrderCommand>) -> Uuid {
        let id = Uuid::new_v4();
        let placed = std::iter::once(place(id, customer));
        self.record(id, placed.chain(commands).collect()).await;
        id
    }

    /// Runs the projector until the checkpoint reaches `token`.
    pub async fn project_to(&self, token: Position) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self
            .projector
            .checkpoint()
            .await
            .unwrap()
            .is_none_or(|c| c < token)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "projection did not reach {token}"
            );
            self.projector.run_once().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What the projector was started with.
    pub fn projector_config(&self) -> projector::Config {
        self.projector_config.clone()
    }

    /// Stops the projector and starts another on the same databases.
    pub async fn restart_projector(&mut self) {
        self.projector = Projector::connect(self.projector_config.clone())
            .await
            .unwrap();
    }

    /// Projects every command run so far.
    pub async fn project_all(&self) {
        let last = *self.last_token.lock().unwrap();
        if let Some(token) = last {
            self.project_to(token).await;
        }
    }

    pub async fn query(&self, query: &str, variables: Value) -> Value {
        self.query_with(query, variables, None).await.1
    }

    /// Posts a query with `Authorization: Bearer <bearer>` when given; returns the HTTP status
    /// and the body.
    pub async fn query_as(
        &self,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Posts a query; returns the HTTP status and the body.
    pub async fn query_with(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            request = request.header("X-Consistency-Token", t);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}
