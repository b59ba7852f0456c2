//! `otlp-sink [ADDR]`: an OTLP/gRPC trace receiver that counts what it is sent and drops it
//! (default address 127.0.0.1:4317). Prints its address once listening; on SIGINT or SIGTERM,
//! prints how many exports and spans it received and exits.

use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".to_owned());
    let addr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("otlp-sink: `{addr}` is not an address (host:port): {e}");
            std::process::exit(2);
        }
    };
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => (int, term),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("otlp-sink: cannot watch for signals: {e}");
            std::process::exit(1);
        }
    };
    let stop = async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    let sink = match test_support::otlp_sink::start(addr, stop) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("otlp-sink: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("otlp-sink listening on {}", sink.addr);
    match sink.served.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("otlp-sink: serving failed: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("otlp-sink: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "otlp-sink received {} exports, {} spans",
        sink.received.exports(),
        sink.received.spans()
    );
}
