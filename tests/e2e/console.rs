//! The operations console in a real headless chromium, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`), against the real services. Each test keeps screenshots in
//! `target/console-screenshots/` (under `CARGO_TARGET_DIR` when set).

use crate::stack::{free_port, order_body, token, Stack};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_support::auth::{Role, TestIdentity};

/// How long the page may take to show what a test waits for: the services share two cores
/// with the other tests.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where chromium's binaries are, Debian's paths first.
fn executable(candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("none of {candidates:?} exists: install Debian's chromium and chromium-driver (scripts/test.sh does)")
        })
}

/// The folder the screenshots go to.
fn screenshots() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port, in a process group of its own so that it and the chromium it
/// starts are killed together when dropped, even when the test fails.
struct Driver {
    child: Child,
    port: u16,
    /// chromium's profile, removed when dropped.
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(executable(&[
            "/usr/bin/chromedriver",
            "/usr/lib/chromium/chromedriver",
        ]))
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
        Self {
            child,
            port,
            profile: tempfile::tempdir().unwrap(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless chromium showing the console of `stack`.
struct Browser {
    client: Client,
    _driver: Driver,
}

impl Browser {
    /// The console of `stack` in a window of `width` x `height`, its live connection up.
    async fn open(stack: &Stack, width: u32, height: u32) -> Self {
        let browser = Self::load(stack, width, height).await;
        browser
            .wait_for_text("#connection", |t| t == "connected")
            .await;
        browser
    }

    /// The console of `stack` loaded, whether or not its live connection is accepted (it is
    /// not without a token when authentication is on).
    async fn load(stack: &Stack, width: u32, height: u32) -> Self {
        let driver = Driver::start();
        let mut capabilities = serde_json::Map::new();
        let mut options = json!({
                "binary": executable(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"]),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    format!("--user-data-dir={}", driver.profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
        });
        // A window is never narrower than about 500 px: a phone's viewport is emulated.
        if width < 500 {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2 } });
        }
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let url = format!("http://127.0.0.1:{}", driver.port);
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
            }
        };
        client
            .goto(&format!("{}/console", stack.queries))
            .await
            .unwrap();
        Self {
            client,
            _driver: driver,
        }
    }

    /// The text of the first element matching `css`, once `ready` holds for it.
    async fn wait_for_text(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if ready(&text) {
                        return text;
                    }
                    last = Some(text);
                }
            }
            if Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!(
                    "{css} did not show what was awaited (last: {last:?}); the page's alert: {:?}",
                    self.alert().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no element matches `css`.
    async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "{css} is still shown");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn alert(&self) -> String {
        self.client
            .execute(
                "return document.getElementById('alert').textContent",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) if element.click().await.is_ok() => return,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => panic!("cannot click {css}"),
            }
        }
    }

    /// Types `text` into the field `css` (replacing what it held), and checks that the field
    /// holds it: typing a long value (a token) may lose keystrokes on a loaded machine, which
    /// would fail the test for the wrong reason. Tries three times, saying when it had to.
    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        let mut typed = None;
        for _ in 0..3 {
            field.clear().await.unwrap();
            field.send_keys(text).await.unwrap();
            typed = field.prop("value").await.unwrap();
            if typed.as_deref() == Some(text) {
                return;
            }
            // Lengths only: the text may be a token.
            let held = typed.as_deref().map(str::len);
            eprintln!(
                "{css} held {held:?} characters after typing {}; typing again",
                text.len()
            );
        }
        let held = typed.as_deref().map(str::len);
        panic!(
            "{css} holds {held:?} characters after typing {}",
            text.len()
        );
    }

    /// Finds an order or return with the mouse: fills the form and clicks Find.
    async fn find(&self, kind: &str, query: &str) {
        self.client
            .find(Locator::Css("#find-kind"))
            .await
            .unwrap()
            .select_by_value(kind)
            .await
            .unwrap();
        self.fill("#find-query", query).await;
        self.click("#find-submit").await;
    }

    /// Presses `key` wherever the focus is.
    async fn press(&self, key: Key) {
        let keys = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.client.perform_actions(keys).await.unwrap();
    }

    async fn active_id(&self) -> String {
        self.client
            .execute("return document.activeElement.id", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(screenshots().join(format!("{name}.png")), png);
        }
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Places an order and waits until the read models show it (as a user looking it up would).
async fn placed(stack: &Stack) -> String {
    let (status, body) = stack.command("/orders", order_body()).await;
    assert_eq!(status, 201, "{body}");
    stack
        .query_fresh("{ statusCounts { status } }", &token(&body))
        .await;
    body["order_id"].as_str().unwrap().to_owned()
}

async fn query(stack: &Stack, query: &str, variables: Value) -> Value {
    stack
        .http
        .post(format!("{}/graphql", stack.queries))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_console_finds_an_order_and_shows_its_status_change_live_as_commands_arrive() {
    let stack = Stack::start().await;
    let id = placed(&stack).await;
    let browser = Browser::open(&stack, 1280, 1000).await;

    browser.find("order", &id).await;
    browser
        .wait_for_text("#detail-status", |s| s == "PLACED")
        .await;
    browser
        .wait_for_text("#detail-pending", |s| s.contains("AUTHORIZE_PAYMENT"))
        .await;

    for (action, body) in [
        (
            "payment-authorized",
            json!({"payment_id": "pay-1", "amount_minor": crate::stack::TOTAL, "currency": "EUR"}),
        ),
        ("inventory-reserved", json!({"reservation_id": "res-1"})),
    ] {
        let (status, body) = stack.command(&format!("/orders/{id}/{action}"), body).await;
        assert_eq!(status, 200, "{body}");
    }

    browser
        .wait_for_text("#detail-status", |s| s == "ACCEPTED")
        .await;
    let timeline = browser
        .wait_for_text("#timeline", |t| t.contains("OrderAccepted"))
        .await;
    for event in ["OrderPlaced", "PaymentAuthorized", "InventoryReserved"] {
        assert!(timeline.contains(event), "{timeline}");
    }
    let correlations = browser
        .client
        .find_all(Locator::Css("#timeline .correlation"))
        .await
        .unwrap();
    assert_eq!(correlations.len(), 4, "one entry per event: {timeline}");
    for c in correlations {
        assert_ne!(
            c.text().await.unwrap(),
            "—",
            "each entry shows its correlation id"
        );
    }
    // Who caused each event: the stack serves without tokens, so every command's principal is
    // the anonymous caller of a service whose authentication is disabled.
    let principals = browser
        .client
        .find_all(Locator::Css("#timeline .principal"))
        .await
        .unwrap();
    assert_eq!(principals.len(), 4, "one principal per event: {timeline}");
    for p in principals {
        assert_eq!(p.text().await.unwrap(), "anonymous (auth-disabled)");
    }
    browser.screenshot("order-live").await;
    browser.close().await;
}

#[tokio::test]
async fn an_order_is_found_with_the_keyboard_alone() {
    let stack = Stack::start().await;
    let id = placed(&stack).await;
    let browser = Browser::open(&stack, 1280, 1000).await;

    let mut tabs = 0;
    while browser.active_id().await != "find-query" {
        browser.press(Key::Tab).await;
        tabs += 1;
        assert!(tabs < 12, "the search field is not reached with Tab");
    }
    let outline: Value = browser
        .client
        .execute(
            "return getComputedStyle(document.activeElement).outlineStyle",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(outline, json!("none"), "the focused field shows its focus");
    let field = browser.client.active_element().await.unwrap();
    field.send_keys(&id).await.unwrap();
    browser.press(Key::Enter).await;

    browser
        .wait_for_text("#detail-status", |s| s == "PLACED")
        .await;
    assert_eq!(
        browser.active_id().await,
        "detail-title",
        "the focus moves to what was found"
    );
    browser.screenshot("keyboard-find").await;
    browser.close().await;
}

#[tokio::test]
async fn at_phone_width_the_console_shows_an_order_without_horizontal_scrolling() {
    let stack = Stack::start().await;
    let id = placed(&stack).await;
    let browser = Browser::open(&stack, 375, 812).await;

    browser.find("order", &id).await;
    browser
        .wait_for_text("#detail-status", |s| s == "PLACED")
        .await;
    browser
        .wait_for_text("#order-counts", |t| t.contains("PLACED"))
        .await;

    let widths = browser
        .client
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, client) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(client <= 375, "the viewport is a phone's: {client}px");
    assert!(
        scroll <= client,
        "the page scrolls sideways: {scroll}px of content in {client}px"
    );
    browser.screenshot("phone").await;
    browser.close().await;
}

#[tokio::test]
async fn a_stalled_order_is_escalated_from_the_console() {
    let stack = Stack::start_with(&[("MILESTONE_DEADLINE_PLACED_SECS", "1".to_owned())]).await;
    let id = placed(&stack).await;
    let browser = Browser::open(&stack, 1280, 1000).await;
    let row = format!("#stalled-orders li[data-id='{id}']");

    browser.wait_for_text(&row, |t| t.contains("PLACED")).await;
    browser.screenshot("stalled").await;
    browser.click(&format!("{row} button.escalate")).await;

    browser
        .wait_for_text(&format!("{row} .escalated"), |t| t.contains("escalated"))
        .await;
    let order = query(
        &stack,
        "query ($id: ID!) { order(id: $id) { escalated escalationReason } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(order["data"]["order"]["escalated"], true, "{order}");
    assert_eq!(
        order["data"]["order"]["escalationReason"],
        "escalated from the operations console"
    );
    browser.close().await;
}

#[tokio::test]
async fn an_unknown_id_and_a_command_api_that_is_down_are_shown_as_errors() {
    let mut stack = Stack::start_with(&[("MILESTONE_DEADLINE_PLACED_SECS", "1".to_owned())]).await;
    let id = placed(&stack).await;
    let browser = Browser::open(&stack, 1280, 1000).await;

    let unknown = uuid::Uuid::new_v4().to_string();
    browser.find("order", &unknown).await;
    browser
        .wait_for_text("#alert", |t| t.contains("No order with id"))
        .await;

    let row = format!("#stalled-orders li[data-id='{id}']");
    browser.wait_for_text(&row, |t| t.contains("PLACED")).await;
    stack.kill_command_api();
    browser.click(&format!("{row} button.escalate")).await;
    browser
        .wait_for_text("#alert", |t| {
            t.contains("command API") && t.contains("cannot be reached")
        })
        .await;
    browser.screenshot("errors").await;
    browser.close().await;
}

#[tokio::test]
async fn with_authentication_on_the_console_acts_with_the_pasted_token_and_shows_who_decided() {
    let identity = TestIdentity::new();
    let mut settings = identity.settings();
    settings.push(("MILESTONE_DEADLINE_PLACED_SECS", "1".to_owned()));
    let stack = Stack::start_with(&settings).await;
    let (shop, support) = (identity.token(Role::Shop), identity.token(Role::Support));
    let (status, body) = stack.command_as(Some(&shop), "/orders", order_body()).await;
    assert_eq!(status, 201, "{body}");
    stack
        .query_fresh_as(Some(&support), "{ statusCounts { status } }", &token(&body))
        .await;
    let id = body["order_id"].as_str().unwrap().to_owned();
    let browser = Browser::load(&stack, 1280, 1000).await;

    // Without a token the query API refuses, and the console says what to do.
    browser.find("order", &id).await;
    browser
        .wait_for_text("#alert", |t| {
            t.contains("401") && t.contains("Paste a valid token")
        })
        .await;

    browser.fill("#token", &support).await;
    browser.click("#token-apply").await;
    browser
        .wait_for_text("#connection", |t| t == "connected")
        .await;
    browser.find("order", &id).await;
    browser
        .wait_for_text("#detail-status", |s| s == "PLACED")
        .await;
    browser
        .wait_for_text("#timeline .principal", |p| p == "dev-shop (shop)")
        .await;

    // The order is stalled (a 1 s deadline): support escalates it from the console, with the
    // pasted token, and the timeline names support as who decided.
    let row = format!("#stalled-orders li[data-id='{id}']");
    browser.wait_for_text(&row, |t| t.contains("PLACED")).await;
    browser.click(&format!("{row} button.escalate")).await;
    let timeline = browser
        .wait_for_text("#timeline", |t| t.contains("OrderEscalated"))
        .await;
    let principals = browser
        .client
        .find_all(Locator::Css("#timeline .principal"))
        .await
        .unwrap();
    let mut who = Vec::new();
    for p in principals {
        who.push(p.text().await.unwrap());
    }
    assert_eq!(
        who,
        ["dev-shop (shop)", "dev-support (support)"],
        "{timeline}"
    );
    browser.screenshot("authenticated").await;
    browser.close().await;
}

#[tokio::test]
async fn a_parked_order_is_retried_from_the_console_once_its_event_is_fixed() {
    let stack = Stack::start().await;
    let id = placed(&stack).await;
    // Written straight into the log by another tool: a PaymentAuthorized the projector cannot
    // read, so it dead-letters it and parks the order.
    let (db, connection) = tokio_postgres::connect(&stack.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.execute(
        "insert into es_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
         values ($1, 1, gen_random_uuid(), 'PaymentAuthorized', 1, $2, '{}')",
        &[&format!("order-{id}"), &json!({"payment": "p-1", "amount": 2250})],
    )
    .await
    .unwrap();
    let browser = Browser::open(&stack, 1280, 1000).await;
    let row = format!("#projections li[data-id='{id}']");

    browser
        .wait_for_text(&row, |t| t.contains("dead-lettered"))
        .await;
    browser.click(&format!("{row} button.retry")).await;
    browser
        .wait_for_text("#alert", |t| t.contains("still cannot be applied"))
        .await;
    browser.screenshot("parked").await;

    // The operator's fix: the stored payload corrected.
    db.execute(
        "update projection_dead_letters set data = $1 where stream_id = $2",
        &[
            &json!({"payment_id": "p-1", "amount": {"amount_minor": crate::stack::TOTAL, "currency": "EUR"}}),
            &format!("order-{id}"),
        ],
    )
    .await
    .unwrap();
    browser.click(&format!("{row} button.retry")).await;
    browser.wait_gone(&row).await;

    let order = query(
        &stack,
        "query ($id: ID!) { order(id: $id) { revision paymentId } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(order["data"]["order"]["revision"], 1, "{order}");
    assert_eq!(order["data"]["order"]["paymentId"], "p-1");
    browser.screenshot("retried").await;
    browser.close().await;
}
