//! `scripts/run.sh` as a developer runs it, stopped by a signal sent to the script alone (a
//! supervisor, `kill <pid>`) or by Ctrl-C (SIGINT to the terminal's whole process group).

use crate::stack::{binary, signal};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SERVICES: [&str; 5] = [
    "command-api",
    "projector",
    "query-api",
    "reconciler",
    "relay",
];

/// A process's parent and short name, from `/proc/<pid>/stat`; `None` once it is gone or a
/// zombie.
fn stat(pid: u32) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let name = text[open + 1..close].to_owned();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?;
    let parent = rest.next()?.parse().ok()?;
    (state != "Z").then_some((parent, name))
}

fn alive(pid: u32) -> bool {
    stat(pid).is_some()
}

/// Every live process below `root`, with its name.
fn descendants(root: u32) -> HashMap<u32, String> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some((parent, name)) = stat(pid) {
            parents.push((pid, parent, name));
        }
    }
    let mut found = HashMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, parent, name) in &parents {
            if *parent == p && found.insert(*pid, name.clone()).is_none() {
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Three free ports on 127.0.0.1 below Linux's ephemeral range (32768 and up), where no
/// `bind(0)` of another test takes its ports from; each held until all are chosen, so that
/// they differ.
fn ports_below_ephemeral() -> [u16; 3] {
    let mut held = Vec::new();
    while held.len() < 3 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, listener));
        }
    }
    [held[0].0, held[1].0, held[2].0]
}

/// Kills whatever the test started and is still running, however the test ends.
struct Leftovers {
    script: Child,
    processes: Vec<u32>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        // The script's whole group, started before the test knew their pids (a test that
        // fails before the services are ready), then whatever left the group.
        signal(&format!("-{}", self.script.id()), "KILL");
        for pid in &self.processes {
            if alive(*pid) {
                signal(&pid.to_string(), "KILL");
            }
        }
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// How the script is stopped.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM to the script alone.
    TermToScript,
    /// SIGINT to the script's whole process group, as Ctrl-C in its terminal sends it.
    CtrlC,
}

#[tokio::test]
async fn the_run_script_stopped_by_sigterm_stops_every_service_and_frees_the_ports() {
    run_and_stop(Stop::TermToScript).await;
}

#[tokio::test]
async fn the_run_script_stopped_by_ctrl_c_shows_every_services_last_line_and_leaves_nothing() {
    let output = run_and_stop(Stop::CtrlC).await;
    // The services' own last lines reach the terminal: their prefixers outlive them.
    for (service, last) in [
        ("command-api", "command API stopped"),
        ("projector", "projector stopped"),
        ("query-api", "query API stopped"),
        ("reconciler", "reconciler stopped"),
        ("relay", "relay stopped"),
    ] {
        let prefix = format!("[{service}] ");
        assert!(
            output
                .iter()
                .any(|line| line.starts_with(&prefix) && line.contains(&format!("\"{last}\""))),
            "{service}'s last line ({last:?}) is not shown:\n{}",
            output.join("\n")
        );
    }
    assert_eq!(output.last().map(String::as_str), Some("stopped"));
}

/// Runs the script until it says Milestone is running, stops it as `how` says, checks that
/// nothing it started is left running and its ports are free, and returns what it printed.
async fn run_and_stop(how: Stop) -> Vec<String> {
    let bins: Vec<PathBuf> = SERVICES.iter().map(|s| binary(s)).collect();
    let bin_dir = bins[0].parent().unwrap().to_owned();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let database = format!("run_{}", uuid::Uuid::new_v4().simple());
    // Below the ephemeral range: a port another test's server holds from `free_port` (one
    // restarting its broker on the same port, say) cannot be handed out here.
    let [cport, qport, nport] = ports_below_ephemeral();
    let nats_store = tempfile::tempdir().unwrap();
    let script = Command::new("bash")
        .arg(root.join("scripts/run.sh"))
        .env("MILESTONE_DATABASE", &database)
        .env("MILESTONE_ADMIN_DATABASE_URL", test_support::admin_url())
        .env("MILESTONE_SKIP_POSTGRES_SETUP", "1")
        .env("MILESTONE_BIN_DIR", &bin_dir)
        .env("MILESTONE_COMMAND_API_ADDR", format!("127.0.0.1:{cport}"))
        .env("MILESTONE_QUERY_API_ADDR", format!("127.0.0.1:{qport}"))
        .env("MILESTONE_NATS_ADDR", format!("127.0.0.1:{nport}"))
        .env("MILESTONE_NATS_STORE_DIR", nats_store.path())
        .env_remove("MILESTONE_NATS_URL")
        .env("MILESTONE_DB_POOL_SIZE", "2")
        .env("MILESTONE_HTTP_WORKERS", "1")
        // The services' last lines are at `info`.
        .env(
            "RUST_LOG",
            match how {
                Stop::TermToScript => "warn",
                Stop::CtrlC => "info",
            },
        )
        .env_remove("MILESTONE_READ_MODEL_URL")
        .env_remove("MILESTONE_EVENT_STORE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, as a terminal's foreground job has.
        .process_group(0)
        .spawn()
        .expect("run bash scripts/run.sh");
    let pid = script.id();
    let mut run = Leftovers {
        script,
        processes: Vec::new(),
    };
    let (lines, received) = mpsc::channel();
    let stdout = run.script.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut output = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains("Milestone is running") => break,
            Ok(line) => output.push(line),
            Err(_) => panic!("the script did not become ready:\n{}", output.join("\n")),
        }
    }

    let running = descendants(pid);
    run.processes = running.keys().copied().collect();
    for service in SERVICES.iter().chain(&["nats-server"]) {
        assert!(
            running.values().any(|name| name == service),
            "{service} is not running under the script: {running:?}"
        );
    }

    let sent = match how {
        Stop::TermToScript => signal(&pid.to_string(), "TERM"),
        // A process group's id is its leader's pid.
        Stop::CtrlC => signal(&format!("-{pid}"), "INT"),
    };
    assert!(sent, "the script could not be signalled");
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.script.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the script did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    // What is left once the script has gone stays; a moment covers pipes closing behind it.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut remaining: Vec<(&u32, &String)> = running.iter().collect();
    while !remaining.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        remaining.retain(|(pid, _)| alive(**pid));
    }
    assert!(
        remaining.is_empty(),
        "left running after the script stopped: {remaining:?}"
    );
    for port in [cport, qport, nport] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
    drop(run);
    // The rest of what it printed: the pipe closes once the last writer is gone.
    while let Ok(line) = received.recv_timeout(Duration::from_secs(5)) {
        output.push(line);
    }
    test_support::drop_database(&test_support::database_url(&database)).await;
    output
}
