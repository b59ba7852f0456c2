use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The workspace's debug binaries. A workspace test run builds them (each service has
/// integration tests); they are built here when missing or when `MILESTONE_E2E_BUILD` is set.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let path = target.join("debug").join(name);
    if path.exists() && std::env::var_os("MILESTONE_E2E_BUILD").is_none() {
        return path;
    }
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "command-api",
                "-p",
                "projector",
                "-p",
                "query-api",
                "-p",
                "reconciler",
                "-p",
                "relay",
            ])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the services failed");
    });
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends the signal `name` (`INT`, `TERM`...) to `target`: a pid, or `-<pgid>` for every
/// process of a group. Whether it was sent.
pub fn signal(target: &str, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A running service process; killed when dropped.
pub struct Service {
    child: Child,
}

impl Service {
    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends it the signal `name` (`INT`, `TERM`...).
    pub fn signal(&self, name: &str) {
        assert!(
            signal(&self.child.id().to_string(), name),
            "kill -{name} failed"
        );
    }

    /// How it exited, once it has, within `limit`; `None` while it still runs.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One database, the three services, and an HTTP client.
pub struct Stack {
    pub url: String,
    pub commands: String,
    pub queries: String,
    /// The first projector's `/metrics` listener (`http://127.0.0.1:<port>`).
    pub projector_metrics: String,
    pub http: reqwest::Client,
    command_api: Service,
    pub projectors: Vec<Service>,
    _query_api: Service,
}

pub fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> Service {
    let mut command = Command::new(binary(name));
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    Service {
        child: command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}")),
    }
}

/// The body of `GET url`, as text.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
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

/// The end-to-end suite's one place where authentication is disabled: the setting every
/// service started without a test identity gets (a test of authentication overrides it with
/// `TestIdentity::settings`).
pub fn without_authentication() -> (&'static str, String) {
    ("MILESTONE_AUTH_DISABLED", "true".to_owned())
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The stack with `settings` added to every service's environment (deadlines, say).
    pub async fn start_with(settings: &[(&'static str, String)]) -> Self {
        let url = test_support::fresh_database().await;
        let (cport, qport) = (free_port(), free_port());
        let mut base_env = vec![
            ("MILESTONE_EVENT_STORE_URL", url.clone()),
            ("MILESTONE_READ_MODEL_URL", url.clone()),
            ("MILESTONE_DB_POOL_SIZE", "4".to_owned()),
            ("MILESTONE_HTTP_WORKERS", "1".to_owned()),
            ("MILESTONE_PROJECTOR_STANDBY_POLL_MS", "100".to_owned()),
            without_authentication(),
            // Every test client calls from 127.0.0.1, one caller to the rate limiter; the load
            // tests send more than its default rate (the limiter has its own tests).
            ("MILESTONE_RATE_LIMIT", "off".to_owned()),
        ];
        base_env.extend(settings.iter().cloned());
        let http = reqwest::Client::new();
        let mut env = base_env.clone();
        env.push(("MILESTONE_COMMAND_API_ADDR", format!("127.0.0.1:{cport}")));
        // The operations console, served by the query API, sends commands from its page.
        env.push((
            "MILESTONE_CORS_ALLOWED_ORIGINS",
            format!("http://127.0.0.1:{qport}"),
        ));
        let command_api = spawn("command-api", &[], &env);
        let commands = format!("http://127.0.0.1:{cport}");
        wait_healthy(&http, &commands).await;
        let mport = free_port();
        let mut env = base_env.clone();
        env.push((
            "MILESTONE_PROJECTOR_METRICS_ADDR",
            format!("127.0.0.1:{mport}"),
        ));
        let projector = spawn("projector", &[], &env);
        // The query API reads tables the projector creates.
        wait_for_table(&url, "read_model_migrations").await;
        let mut env = base_env.clone();
        env.push(("MILESTONE_QUERY_API_ADDR", format!("127.0.0.1:{qport}")));
        // A token is normally reached in milliseconds; the three services share two cores with
        // the other tests running beside these, so the bound on the wait is generous (the wait
        // still ends as soon as the projection has the write).
        env.push(("MILESTONE_READ_YOUR_WRITES_TIMEOUT_MS", "15000".to_owned()));
        env.push((
            "MILESTONE_CONSOLE_COMMAND_API_URL",
            format!("http://127.0.0.1:{cport}"),
        ));
        let query_api = spawn("query-api", &[], &env);
        let queries = format!("http://127.0.0.1:{qport}");
        wait_healthy(&http, &queries).await;
        Self {
            url,
            commands,
            queries,
            projector_metrics: format!("http://127.0.0.1:{mport}"),
            http,
            command_api,
            projectors: vec![projector],
            _query_api: query_api,
        }
    }

    /// Stops the command API (`kill -9`), as if it were down.
    pub fn kill_command_api(&mut self) {
        self.command_api.kill();
    }

    fn projector_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MILESTONE_EVENT_STORE_URL", self.url.clone()),
            ("MILESTONE_READ_MODEL_URL", self.url.clone()),
            ("MILESTONE_DB_POOL_SIZE", "4".to_owned()),
            ("MILESTONE_PROJECTOR_STANDBY_POLL_MS", "100".to_owned()),
        ]
    }

    /// Starts another projector process (a standby while one is active).
    pub fn start_projector(&mut self) {
        let p = spawn("projector", &[], &self.projector_env());
        self.projectors.push(p);
    }

    /// Starts a reconciler process with `settings` (interval, spacing, K) beside the database
    /// settings; killed when the returned service is dropped.
    pub fn start_reconciler(&self, settings: &[(&'static str, String)]) -> Service {
        let mut env = vec![
            ("MILESTONE_EVENT_STORE_URL", self.url.clone()),
            ("MILESTONE_READ_MODEL_URL", self.url.clone()),
            ("MILESTONE_DB_POOL_SIZE", "2".to_owned()),
            ("MILESTONE_RECONCILER_STANDBY_POLL_MS", "100".to_owned()),
        ];
        env.extend(settings.iter().cloned());
        spawn("reconciler", &[], &env)
    }

    /// Starts a relay process publishing to the NATS server at `nats_url` (a standby while
    /// another is active), with `extra` settings; its lease lasts one second, so a successor
    /// takes over quickly.
    pub fn relay(&self, nats_url: &str, extra: &[(&str, &str)]) -> Service {
        let mut env = vec![
            ("MILESTONE_EVENT_STORE_URL", self.url.clone()),
            ("MILESTONE_READ_MODEL_URL", self.url.clone()),
            ("MILESTONE_NATS_URL", nats_url.to_owned()),
            ("MILESTONE_DB_POOL_SIZE", "2".to_owned()),
            ("MILESTONE_RELAY_LEASE_TTL_MS", "1000".to_owned()),
            ("MILESTONE_RELAY_STANDBY_POLL_MS", "100".to_owned()),
            ("MILESTONE_RELAY_ACK_TIMEOUT_MS", "2000".to_owned()),
            ("MILESTONE_RELAY_BACKOFF_MAX_MS", "1000".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        spawn("relay", &[], &env)
    }

    /// Runs `projector rebuild` to completion.
    pub fn rebuild(&self) {
        let status = Command::new(binary("projector"))
            .arg("rebuild")
            .envs(self.projector_env())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "projector rebuild failed");
    }

    /// POSTs a command; returns the status and body.
    pub async fn command(&self, path: &str, body: Value) -> (u16, Value) {
        self.command_as(None, path, body).await
    }

    /// As [`Stack::command`], with `bearer` as the caller's token when given.
    pub async fn command_as(&self, bearer: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.commands));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let r = request.json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Queries with a consistency token; the answer must not be stale.
    pub async fn query_fresh(&self, query: &str, token: &str) -> Value {
        self.query_fresh_as(None, query, token).await
    }

    /// As [`Stack::query_fresh`], with `bearer` as the caller's token when given.
    pub async fn query_fresh_as(&self, bearer: Option<&str>, query: &str, token: &str) -> Value {
        let mut request = self.http.post(format!("{}/graphql", self.queries));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let body: Value = request
            .header("X-Consistency-Token", token)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["extensions"]["consistency"]["stale"], false,
            "stale answer: {body}"
        );
        body
    }

    /// The read models as text, in a stable order.
    pub async fn dump(&self) -> String {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut out = String::new();
        for sql in [
            "select coalesce(string_agg(s::text, E'\\n' order by order_id), '') from order_status s",
            "select coalesce(string_agg(t::text, E'\\n' order by order_id, revision), '') from order_timeline t",
            "select coalesce(string_agg(c::text, E'\\n' order by status), '') from order_status_counts c",
        ] {
            out.push_str(&client.query_one(sql, &[]).await.unwrap().get::<_, String>(0));
            out.push_str("\n--\n");
        }
        out
    }
}

async fn wait_for_table(url: &str, table: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = client
            .query_one("select to_regclass($1) is not null", &[&table])
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            return;
        }
        assert!(Instant::now() < deadline, "{table} was not created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn order_body() -> Value {
    json!({
        "customer_id": "customer-e2e",
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1500}],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Paris", "postal_code": "75001", "country": "FR"}
    })
}

pub const TOTAL: i64 = 3000;

pub fn token(body: &Value) -> String {
    body["consistency_token"].as_str().unwrap().to_owned()
}
