//! What the services write to stdout and stderr: never a database password, whatever happens
//! (a workload, bad requests, a server error, a wrong password, an unreachable database), and
//! a server error logged with its route, instance and correlation id.

use crate::stack::{binary, free_port, order_body};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A service process whose stdout and stderr go to a file; killed when dropped.
struct Captured {
    child: Child,
    name: String,
    output: PathBuf,
}

impl Captured {
    fn start(dir: &Path, name: &str, label: &str, env: &[(&str, String)]) -> Self {
        let output = dir.join(format!("{label}.log"));
        let file = std::fs::File::create(&output).unwrap();
        let child = Command::new(binary(name))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "debug")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            child,
            name: label.to_owned(),
            output,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits (boundedly) for the process to exit by itself; whether it did.
    fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL role with a distinctive password, owning a fresh database; both dropped when
/// the guard is.
struct Role {
    name: String,
    password: String,
    /// The database, as the test server's administrator reaches it.
    admin_url: String,
}

impl Role {
    async fn create() -> Self {
        let admin_url = test_support::fresh_database().await;
        let name = format!("secret_{}", Uuid::new_v4().simple());
        let password = format!("Pw{}", Uuid::new_v4().simple());
        let database = admin_url.rsplit('/').next().unwrap().to_owned();
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "create role {name} login password '{password}';
                 alter database {database} owner to {name};"
            ))
            .await
            .unwrap();
        Self {
            name,
            password,
            admin_url,
        }
    }

    /// The database's URL as the role reaches it, with `password` and the server at `host`.
    fn url(&self, password: &str, host: &str) -> String {
        let (_, rest) = self.admin_url.split_once('@').unwrap();
        let database = rest.rsplit('/').next().unwrap();
        format!("postgres://{}:{password}@{host}/{database}", self.name)
    }

    fn server(&self) -> String {
        let (_, rest) = self.admin_url.split_once('@').unwrap();
        rest.rsplit_once('/').unwrap().0.to_owned()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Async cleanup from a synchronous drop: on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                test_support::drop_database(&admin_url).await;
                let admin = test_support::admin_url();
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("drop role if exists {name}"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The settings of a service reaching the database at `url`, listening on `port`.
fn env(url: &str, addr_var: &'static str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("MILESTONE_EVENT_STORE_URL", url.to_owned()),
        ("MILESTONE_READ_MODEL_URL", url.to_owned()),
        ("MILESTONE_DB_POOL_SIZE", "2".to_owned()),
        ("MILESTONE_HTTP_WORKERS", "1".to_owned()),
        ("MILESTONE_READ_YOUR_WRITES_TIMEOUT_MS", "15000".to_owned()),
        crate::stack::without_authentication(),
        (addr_var, format!("127.0.0.1:{port}")),
    ]
}

/// Appends an event the order workflow does not know to the order's stream: deciding a
/// command on it is a server error.
async fn corrupt_order(admin_url: &str, id: &str) {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
             values ($1, 1, $2, 'OrderTeleported', 1, '{}', '{}')",
            &[&format!("order-{id}"), &Uuid::new_v4()],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn no_service_ever_logs_the_database_password() {
    let role = Role::create().await;
    let url = role.url(&role.password, &role.server());
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (cport, qport) = (free_port(), free_port());
    let mut services = Vec::new();

    // A workload on the real stack, with bad requests and a server error among it.
    services.push(Captured::start(
        dir.path(),
        "command-api",
        "command-api",
        &env(&url, "MILESTONE_COMMAND_API_ADDR", cport),
    ));
    let commands = format!("http://127.0.0.1:{cport}");
    wait_ready(&http, &commands).await;
    services.push(Captured::start(
        dir.path(),
        "projector",
        "projector",
        &env(&url, "MILESTONE_QUERY_API_ADDR", free_port()),
    ));
    services.push(Captured::start(
        dir.path(),
        "query-api",
        "query-api",
        &env(&url, "MILESTONE_QUERY_API_ADDR", qport),
    ));
    let queries = format!("http://127.0.0.1:{qport}");
    wait_ready(&http, &queries).await;
    let placed: Value = http
        .post(format!("{commands}/orders"))
        .json(&order_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = placed["order_id"].as_str().unwrap().to_owned();
    let token = placed["consistency_token"].as_str().unwrap().to_owned();
    let answer: Value = http
        .post(format!("{queries}/graphql"))
        .header("X-Consistency-Token", &token)
        .json(&json!({"query": format!("{{ order(id: \"{id}\") {{ status }} }}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["data"]["order"]["status"].is_string(), "{answer}");
    for (path, body) in [("/orders", "{not json"), ("/orders", "{\"lines\": 3}")] {
        let r = http
            .post(format!("{commands}{path}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let r = http
        .post(format!("{queries}/graphql"))
        .json(&json!({"query": "{ nope"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_client_error());
    corrupt_order(&role.admin_url, &id).await;
    let r = http
        .post(format!("{commands}/orders/{id}/cancel"))
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    // A wrong password, and an unreachable database, for every service.
    let wrong = role.url("not-the-password", &role.server());
    let unreachable = role.url(&role.password, &format!("127.0.0.1:{}", free_port()));
    for (label, bad_url) in [("wrong", &wrong), ("unreachable", &unreachable)] {
        for (name, addr_var) in [
            ("command-api", "MILESTONE_COMMAND_API_ADDR"),
            ("projector", "MILESTONE_QUERY_API_ADDR"),
            ("query-api", "MILESTONE_QUERY_API_ADDR"),
            ("reconciler", "MILESTONE_QUERY_API_ADDR"),
            ("relay", "MILESTONE_QUERY_API_ADDR"),
        ] {
            let port = free_port();
            let mut settings = env(bad_url, addr_var, port);
            settings.push((
                "MILESTONE_NATS_URL",
                format!("nats://127.0.0.1:{}", free_port()),
            ));
            let mut service =
                Captured::start(dir.path(), name, &format!("{name}-{label}"), &settings);
            if name == "query-api" {
                // It starts without the database; a query reaches for it.
                wait_listening(port).await;
                let _ = http
                    .post(format!("http://127.0.0.1:{port}/graphql"))
                    .json(&json!({"query": "{ __typename order(id: \"6a1f9a4e-0000-4000-8000-000000000000\") { id } }"}))
                    .send()
                    .await;
                let _ = http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await;
            } else {
                service.exited_within(Duration::from_secs(2));
            }
            services.push(service);
        }
    }

    let mut seen = 0;
    for service in &mut services {
        let _ = service.child.kill();
        let _ = service.child.wait();
        let output = service.output();
        seen += output.len();
        assert!(
            !output.contains(&role.password),
            "{} printed the database password:\n{output}",
            service.name
        );
    }
    let wrong_password = services
        .iter()
        .find(|s| s.name == "command-api-wrong")
        .unwrap()
        .output();
    assert!(
        wrong_password.contains("password authentication failed"),
        "the refused login is reported: {wrong_password}"
    );
    assert!(seen > 0, "the services logged nothing");
}

/// Waits (boundedly) until something listens on `port`.
async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_server_error_is_logged_with_its_route_instance_and_correlation_id() {
    let role = Role::create().await;
    let url = role.url(&role.password, &role.server());
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let port = free_port();
    let service = Captured::start(
        dir.path(),
        "command-api",
        "command-api",
        &env(&url, "MILESTONE_COMMAND_API_ADDR", port),
    );
    let commands = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &commands).await;
    let placed: Value = http
        .post(format!("{commands}/orders"))
        .json(&order_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = placed["order_id"].as_str().unwrap().to_owned();
    corrupt_order(&role.admin_url, &id).await;
    let correlation = format!("corr-{}", Uuid::new_v4().simple());
    let r = http
        .post(format!("{commands}/orders/{id}/cancel"))
        .header("X-Correlation-Id", &correlation)
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let output = service.output();
        let found = output
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["level"] == "ERROR" && l["correlation_id"] == correlation.as_str());
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no error line with the correlation id:\n{output}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spans = line["spans"].to_string();
    assert!(
        spans.contains("/orders/{order_id}/cancel"),
        "the route is logged: {line}"
    );
    assert!(spans.contains(&id), "the instance id is logged: {line}");
}
