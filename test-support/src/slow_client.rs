//! A client that sends a request's head and only the start of its body, then waits: what a
//! slow or broken client does to a server, to test that the server answers it anyway.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Sends `POST {path}` to `address` (`host:port`) announcing a JSON body of 100 bytes and
/// sending only `start` of it, and returns the answer as read (head and body). Checks that the
/// answer did not come before `due` (less half a second), and waits for it up to 20 s past.
pub async fn answer_to_unfinished_body(
    address: &str,
    path: &str,
    start: &str,
    due: Duration,
) -> String {
    assert!(
        start.len() < 100,
        "the body announced is longer than what is sent"
    );
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{start}"
    );
    let address = address.to_owned();
    // Blocking I/O on a thread of its own: the server may run on the caller's runtime.
    let (answer, waited) = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(due + Duration::from_secs(20)))
            .unwrap();
        socket.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut chunk = [0_u8; 4096];
        // Until the answer's JSON body is whole or the connection closes (or time is up).
        while !answer.ends_with(b"}") {
            match socket.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(
        waited >= due.saturating_sub(Duration::from_millis(500)),
        "answered after {waited:?}, before {due:?}: {answer}"
    );
    answer
}
