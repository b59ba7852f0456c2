//! A real Prometheus (Debian's `prometheus`) scraping every service while a workload runs: the
//! counters move, the projections' lag returns to zero and the command -> visible histogram
//! has samples, all read back through Prometheus's HTTP API. `promtool check metrics` passes on
//! every service's `/metrics`, `promtool check config` on the committed scrape config, and the
//! README's metrics table and the Grafana dashboard name exactly the metrics the code declares.

use crate::stack::*;
use relay::nats_server::NatsServer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Debian binary (`prometheus`, `promtool`): in `/usr/bin`, or else on the `PATH`.
fn tool(name: &str) -> PathBuf {
    let packaged = Path::new("/usr/bin").join(name);
    if packaged.exists() {
        return packaged;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: apt-get install prometheus (scripts/test.sh does)")
    })
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Prometheus server on a free port with its own data directory, scraping `targets` (job,
/// `host:port`) every second; killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(http: &reqwest::Client, targets: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let prometheus = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return prometheus;
                }
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The samples of an instant query: each series' labels and value.
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<(Value, f64)> {
        let body: Value = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (s["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits (at most 60 s) until `promql` answers samples that satisfy `holds`; returns them.
    async fn eventually(
        &self,
        http: &reqwest::Client,
        promql: &str,
        holds: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Vec<(Value, f64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let samples = self.query(http, promql).await;
            if holds(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} never held; last answer: {samples:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one value of a query that sums to a single series (0 when it has none).
fn total(samples: &[(Value, f64)]) -> f64 {
    samples.iter().map(|(_, v)| v).sum()
}

/// Runs `promtool` with `args`, feeding it `input`; panics with its output when it fails.
fn promtool(args: &[&str], input: &str, what: &str) {
    let mut child = Command::new(tool("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} refused {what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn order_query(id: &str) -> String {
    format!("{{ order(id: \"{id}\") {{ status revision }} }}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_workload_move_every_service_s_metrics_and_the_projections_catch_up() {
    // Orders whose payment never answers are overdue after two seconds: the reconciler reminds
    // once, then escalates.
    let deadlines = [
        ("MILESTONE_DEADLINE_PLACED_SECS", "2".to_owned()),
        ("MILESTONE_REMINDER_SPACING_SECS", "1".to_owned()),
    ];
    let stack = Stack::start_with(&deadlines).await;
    let nats = NatsServer::start();
    let (relay_port, reconciler_port) = (free_port(), free_port());
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let _relay = stack.relay(
        &nats.url(),
        &[("MILESTONE_RELAY_METRICS_ADDR", relay_addr.as_str())],
    );
    let mut reconciler_env = deadlines.to_vec();
    reconciler_env.extend([
        ("MILESTONE_RECONCILER_INTERVAL_MS", "200".to_owned()),
        ("MILESTONE_RECONCILER_MAX_REMINDERS", "1".to_owned()),
        (
            "MILESTONE_RECONCILER_METRICS_ADDR",
            format!("127.0.0.1:{reconciler_port}"),
        ),
    ]);
    let _reconciler = stack.start_reconciler(&reconciler_env);
    let services = [
        ("command-api", stack.commands.clone()),
        ("query-api", stack.queries.clone()),
        ("projector", stack.projector_metrics.clone()),
        ("relay", format!("http://{relay_addr}")),
        ("reconciler", format!("http://127.0.0.1:{reconciler_port}")),
    ];
    let targets: Vec<(&str, String)> = services
        .iter()
        .map(|(job, base)| (*job, base.trim_start_matches("http://").to_owned()))
        .collect();
    let http = &stack.http;
    let prometheus = Prometheus::start(http, &targets).await;
    prometheus
        .eventually(http, "up == 1", |s| s.len() == services.len())
        .await;

    // The workload: orders placed and read back with their tokens, and refused commands.
    const ORDERS: usize = 5;
    for _ in 0..ORDERS {
        let (status, placed) = stack.command("/orders", order_body()).await;
        assert_eq!(status, 201, "{placed}");
        let id = placed["order_id"].as_str().unwrap().to_owned();
        let body = stack.query_fresh(&order_query(&id), &token(&placed)).await;
        assert_eq!(body["data"]["order"]["status"], "PLACED", "{body}");
        let (status, refused) = stack
            .command(&format!("/orders/{id}/confirm-delivery"), json!({}))
            .await;
        assert_eq!(status, 409, "{refused}");
    }
    let (status, invalid) = stack.command("/orders", json!({"currency": 7})).await;
    assert_eq!(status, 400, "{invalid}");

    let ok = prometheus
        .eventually(
            http,
            r#"sum(milestone_commands_total{job="command-api",workflow="order",outcome="ok"})"#,
            |s| total(s) >= ORDERS as f64,
        )
        .await;
    assert_eq!(total(&ok), ORDERS as f64);
    prometheus
        .eventually(
            http,
            r#"sum by (outcome) (milestone_commands_total{job="command-api",outcome!="ok"})"#,
            |s| {
                let by: BTreeMap<String, f64> = s
                    .iter()
                    .map(|(m, v)| (m["outcome"].as_str().unwrap_or("").to_owned(), *v))
                    .collect();
                by.get("illegal_transition") == Some(&(ORDERS as f64))
                    && by.get("invalid_body") == Some(&1.0)
            },
        )
        .await;
    prometheus
        .eventually(
            http,
            r#"sum(milestone_http_requests_total{job="query-api",method="POST",route="/graphql",status="200"})"#,
            |s| total(s) >= ORDERS as f64,
        )
        .await;
    prometheus
        .eventually(
            http,
            r#"sum(milestone_http_requests_total{job="command-api",route="/orders/{order_id}/confirm-delivery",status="409"})"#,
            |s| total(s) == ORDERS as f64,
        )
        .await;
    prometheus
        .eventually(
            http,
            r#"sum(milestone_append_duration_seconds_count{job="command-api",workflow="order"})"#,
            |s| total(s) >= ORDERS as f64,
        )
        .await;
    // Every placed order's event became visible in the order projection, measured from its
    // command.
    prometheus
        .eventually(
            http,
            r#"sum(milestone_command_to_visible_seconds_count{job="projector",projection="order_status"})"#,
            |s| total(s) >= ORDERS as f64,
        )
        .await;
    prometheus
        .eventually(
            http,
            r#"sum(milestone_relay_published_total{job="relay",workflow="order"})"#,
            |s| total(s) >= ORDERS as f64,
        )
        .await;
    prometheus
        .eventually(
            http,
            r#"sum(milestone_reconciler_escalations_total{job="reconciler",workflow="order"})"#,
            |s| total(s) >= ORDERS as f64,
        )
        .await;
    let reminders = prometheus
        .query(
            http,
            r#"sum(milestone_reconciler_reminders_total{job="reconciler",workflow="order"})"#,
        )
        .await;
    assert!(total(&reminders) >= ORDERS as f64, "{reminders:?}");
    // Every projection measured its lag, and it returned to zero once the workload was applied
    // (the reconciler's last escalation included).
    for lag in [
        "milestone_projection_lag_events",
        "milestone_projection_lag_seconds",
    ] {
        prometheus
            .eventually(http, &format!(r#"{lag}{{job="projector"}}"#), |s| {
                s.len() == projector::PROJECTIONS.len() && s.iter().all(|(_, v)| *v == 0.0)
            })
            .await;
    }
    prometheus
        .eventually(http, r#"milestone_relay_lag_events{job="relay"}"#, |s| {
            s.len() == 2 && s.iter().all(|(_, v)| *v == 0.0)
        })
        .await;

    // Every service's page passes promtool, and speaks OpenMetrics to whoever asks.
    for (service, base) in &services {
        let page = get_text(http, &format!("{base}/metrics")).await;
        promtool(&["check", "metrics"], &page, service);
        let open = http
            .get(format!("{base}/metrics"))
            .header("Accept", "application/openmetrics-text; version=1.0.0")
            .send()
            .await
            .unwrap();
        let content_type = open.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{service}: {content_type}"
        );
        assert!(open.text().await.unwrap().ends_with("# EOF\n"), "{service}");
    }
}

/// The README's metrics table: each row's name, type, labels and meaning.
fn readme_table() -> BTreeMap<String, (String, Vec<String>, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    readme
        .lines()
        .filter(|line| line.starts_with("| `milestone_"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert!(
                cells.len() >= 4,
                "a metrics row has name, type, labels, meaning: {line}"
            );
            let labels = cells[2]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .filter(|l| !l.is_empty() && l != "—")
                .collect();
            (
                cells[0].trim_matches('`').to_owned(),
                (cells[1].to_owned(), labels, cells[3].to_owned()),
            )
        })
        .collect()
}

/// Every metric the services declare, from the code's one declaration of each.
fn declared() -> BTreeMap<String, (String, Vec<String>, String)> {
    command_api::metrics::register();
    query_api::metrics::register();
    projector::metrics::register();
    relay::metrics::register();
    reconciler::metrics::register();
    service_kit::telemetry::register_metrics();
    service_kit::metrics::catalogue()
        .into_iter()
        .map(|d| {
            let labels = d.labels.iter().map(|l| (*l).to_owned()).collect();
            (
                d.name,
                (d.kind.as_str().to_owned(), labels, format!("{}.", d.help)),
            )
        })
        .collect()
}

#[test]
fn the_readme_metrics_table_lists_every_declared_metric_with_its_type_labels_and_meaning() {
    let declared = declared();
    let table = readme_table();
    let missing: Vec<_> = declared
        .iter()
        .filter(|(name, d)| table.get(*name) != Some(d))
        .map(|(name, (kind, labels, help))| {
            format!("| `{name}` | {kind} | {} | {help} |", labels.join(", "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "README rows missing or different:\n{}",
        missing.join("\n")
    );
    let unknown: Vec<_> = table
        .keys()
        .filter(|name| !declared.contains_key(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "README rows no code declares: {unknown:?}"
    );
}

/// The metric names a PromQL expression mentions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("milestone_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_committed_scrape_config_and_dashboard_hold_and_query_only_declared_metrics() {
    let config = root().join("ops/prometheus/prometheus.yml");
    promtool(
        &["check", "config", config.to_str().unwrap()],
        "",
        "ops/prometheus/prometheus.yml",
    );
    let declared = declared();
    // A histogram is queried through its series.
    let known: BTreeSet<String> = declared
        .iter()
        .flat_map(|(name, (kind, _, _))| match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect::<Vec<_>>(),
            _ => vec![name.clone()],
        })
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("ops/grafana/dashboards/milestone.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queried.extend(metric_names(expr));
        }
    }
    let unknown: Vec<_> = queried.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries undeclared metrics: {unknown:?}"
    );
    for wanted in [
        "milestone_http_requests_total",
        "milestone_http_request_duration_seconds_bucket",
        "milestone_projection_lag_events",
        "milestone_command_to_visible_seconds_bucket",
        "milestone_projection_dead_letters_total",
        "milestone_reconciler_escalations_total",
    ] {
        assert!(queried.contains(wanted), "no panel shows {wanted}");
    }
}
