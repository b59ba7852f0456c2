use command_api::config::Config;
use command_api::startup::Application;
use event_store::{read_whole_stream, EventStore, RecordedEvent, StoreOptions};
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};
use service_kit::auth::AuthConfig;
use std::sync::Arc;
use test_support::auth::TestIdentity;

/// The one origin the test app lets browsers call it from.
pub const CONSOLE_ORIGIN: &str = "http://console.test:8081";

pub struct TestApp {
    pub address: String,
    pub store: Arc<dyn EventStore>,
    pub database_url: String,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|store| store).await
}

/// The app on a fresh database, its store as `wrap` makes it from the PostgreSQL one. It
/// serves without tokens and without rate limits (tests send many requests from one address):
/// the suite's one place where both are off (the tests of authentication start theirs with
/// [`spawn_app_checking`], those of rate limits with [`spawn_app_limited`]).
pub async fn spawn_app_with(
    wrap: impl FnOnce(Arc<dyn EventStore>) -> Arc<dyn EventStore>,
) -> TestApp {
    spawn(wrap, AuthConfig::Disabled, None).await
}

/// The app on a fresh database with the rate limit `rate_limit` (`None`: off).
pub async fn spawn_app_limited(
    wrap: impl FnOnce(Arc<dyn EventStore>) -> Arc<dyn EventStore>,
    rate_limit: Option<service_kit::rate_limit::RateLimit>,
) -> TestApp {
    spawn(wrap, AuthConfig::Disabled, rate_limit).await
}

/// The app on a fresh database, checking tokens against `identity`'s keys.
pub async fn spawn_app_checking(identity: &TestIdentity) -> TestApp {
    spawn(|store| store, identity.config(), None).await
}

async fn spawn(
    wrap: impl FnOnce(Arc<dyn EventStore>) -> Arc<dyn EventStore>,
    auth: AuthConfig,
    rate_limit: Option<service_kit::rate_limit::RateLimit>,
) -> TestApp {
    service_kit::init_test_tracing();
    let database_url = test_support::fresh_database().await;
    let store = event_store::connect(&database_url, &StoreOptions { pool_size: 8 })
        .await
        .unwrap();
    let store = wrap(store);
    let config = Config {
        rate_limit,
        auth,
        cors_allowed_origins: CONSOLE_ORIGIN.parse().unwrap(),
        ..Config::local(&database_url)
    };
    let app = Application::with_store(config, store.clone()).unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        store,
        database_url,
        client: reqwest::Client::new(),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub async fn from(response: Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem's `code`, after checking the response is problem+json.
    pub fn code(&self) -> &str {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        self.body["code"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.address))
    }

    pub async fn send(&self, request: RequestBuilder) -> Reply {
        Reply::from(request.send().await.unwrap()).await
    }

    pub async fn command(&self, path: &str, body: Value) -> Reply {
        self.send(self.post(path).json(&body)).await
    }

    /// A command sent with an `Idempotency-Key`.
    pub async fn keyed(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(self.post(path).header("Idempotency-Key", key).json(&body))
            .await
    }

    pub async fn place(&self, body: Value) -> Reply {
        self.command("/orders", body).await
    }

    /// Places a standard order and returns its id.
    pub async fn placed_order(&self) -> String {
        let reply = self.place(order_body()).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body["order_id"].as_str().unwrap().to_owned()
    }

    pub async fn action(&self, id: &str, action: &str, body: Value) -> Reply {
        self.command(&format!("/orders/{id}/{action}"), body).await
    }

    pub async fn accepted_order(&self) -> String {
        let id = self.placed_order().await;
        assert_eq!(
            self.action(&id, "payment-authorized", payment("pay-1"))
                .await
                .status,
            200
        );
        assert_eq!(
            self.action(
                &id,
                "inventory-reserved",
                json!({"reservation_id": "res-1"})
            )
            .await
            .status,
            200
        );
        id
    }

    pub async fn stream(&self, id: &str) -> Vec<RecordedEvent> {
        read_whole_stream(self.store.as_ref(), &format!("order-{id}"))
            .await
            .unwrap()
    }
}

/// Two lines: 2 x 1999 + 1 x 500 = 4498 EUR cents.
pub fn order_body() -> Value {
    json!({
        "customer_id": "customer-42",
        "currency": "EUR",
        "lines": [
            {"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999},
            {"sku": "SKU-2", "quantity": 1, "unit_price_minor": 500}
        ],
        "shipping_address": {
            "name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin",
            "postal_code": "10115", "country": "DE"
        }
    })
}

pub const TOTAL: i64 = 4498;

pub fn payment(id: &str) -> Value {
    json!({"payment_id": id, "amount_minor": TOTAL, "currency": "EUR"})
}

pub fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}
