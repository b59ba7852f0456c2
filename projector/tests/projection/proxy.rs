//! A TCP proxy in front of PostgreSQL that can stop forwarding without closing anything: to
//! the database, a host behind it looks exactly like one that froze or was cut off by a
//! network partition (its sessions stay open, nothing more arrives).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    /// The URL of the database through the proxy.
    pub url: String,
    /// True while nothing is forwarded.
    frozen: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the database at `url` (a `postgres://user:password@host:port/db` URL).
    pub async fn to(url: &str) -> Self {
        let (before, authority, after) = split_authority(url);
        let upstream = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:5432")
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, gate) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (gate, upstream) = (gate.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        forward(client_read, server_write, gate.clone()),
                        forward(server_read, client_write, gate),
                    );
                });
            }
        });
        Self {
            url: format!("{before}127.0.0.1:{port}{after}"),
            frozen,
            accept,
        }
    }

    /// Stops forwarding in both directions; connections stay open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again what was held back and what comes next.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

/// `url` cut around its `host[:port]`: what comes before it, it, and what follows.
fn split_authority(url: &str) -> (&str, &str, &str) {
    let start = url
        .find('@')
        .map(|at| at + 1)
        .or_else(|| url.find("://").map(|s| s + 3))
        .expect("a postgres:// URL");
    let end = url[start..]
        .find('/')
        .map_or(url.len(), |slash| start + slash);
    (&url[..start], &url[start..end], &url[end..])
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if gate.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if gate.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
