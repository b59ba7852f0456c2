//! A real websocket client speaking either GraphQL subscription protocol.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The two subscription protocols a client may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// graphql-transport-ws (the `graphql-ws` library).
    TransportWs,
    /// The legacy subscriptions-transport-ws, whose subprotocol is named `graphql-ws`.
    LegacyWs,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::LegacyWs => "graphql-ws",
        }
    }
}

/// What the server said about one subscription.
#[derive(Debug)]
pub enum Said {
    Data(Value),
    Errors(Value),
    Complete,
    /// The connection closed.
    Closed,
}

pub struct Subscriber {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: Protocol,
    /// The subscription the last message was about.
    pub last_id: Option<String>,
}

/// How long a test waits for one message.
pub const WAIT: Duration = Duration::from_secs(10);

impl Subscriber {
    /// Opens a websocket on `http_address`'s `/graphql` without `connection_init`.
    pub async fn open(http_address: &str, protocol: Protocol) -> Self {
        let stream = TcpStream::connect(http_address.trim_start_matches("http://"))
            .await
            .unwrap();
        Self::open_on(stream, http_address, protocol).await
    }

    /// As [`Subscriber::open`], over a connection the test made.
    pub async fn open_on(stream: TcpStream, http_address: &str, protocol: Protocol) -> Self {
        let url = format!("{}/graphql", http_address.replace("http://", "ws://"));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
        Self {
            socket,
            protocol,
            last_id: None,
        }
    }

    /// Opens a websocket and initialises it.
    pub async fn connect(http_address: &str, protocol: Protocol) -> Self {
        let mut subscriber = Self::open(http_address, protocol).await;
        subscriber.init().await;
        subscriber
    }

    /// Opens a websocket and initialises it with a bearer token in `connection_init`.
    pub async fn connect_as(http_address: &str, protocol: Protocol, token: &str) -> Self {
        let mut subscriber = Self::open(http_address, protocol).await;
        let payload = json!({"Authorization": format!("Bearer {token}")});
        if let Err(code) = subscriber.init_with(payload).await {
            panic!("connection_init was refused: {code:?}");
        }
        subscriber
    }

    /// Sends `connection_init` and waits for its acknowledgement.
    pub async fn init(&mut self) {
        if let Err(code) = self.init_with(json!({})).await {
            panic!("connection_init was refused: {code:?}");
        }
    }

    /// Sends `connection_init` with `payload`; waits for its acknowledgement, or the close
    /// frame's code (if any) when the server refuses it.
    pub async fn init_with(&mut self, payload: Value) -> Result<(), Option<u16>> {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        loop {
            let message = self.receive().await?;
            match message["type"].as_str() {
                Some("connection_ack") => return Ok(()),
                Some("ka") => continue,
                Some("connection_error") => return Err(None),
                _ => panic!("expected connection_ack, got {message}"),
            }
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next GraphQL message, or the close frame's code (if any) when the connection
    /// closed.
    async fn receive(&mut self) -> Result<Value, Option<u16>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("no message from the server in time");
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Starts the subscription `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send(json!({
            "id": id,
            "type": kind,
            "payload": {"query": query, "variables": variables}
        }))
        .await;
    }

    /// What the server says next about a subscription.
    pub async fn next(&mut self) -> Said {
        loop {
            let message = match self.receive().await {
                Ok(message) => message,
                Err(_) => return Said::Closed,
            };
            self.last_id = message["id"].as_str().map(str::to_owned);
            match message["type"].as_str() {
                Some("next" | "data") => {
                    let payload = &message["payload"];
                    if payload.get("errors").is_some_and(|e| !e.is_null()) {
                        return Said::Errors(payload["errors"].clone());
                    }
                    return Said::Data(payload["data"].clone());
                }
                Some("error") => return Said::Errors(message["payload"].clone()),
                Some("complete") => return Said::Complete,
                Some("ka" | "ping" | "pong") => continue,
                other => panic!("unexpected message {other:?}: {message}"),
            }
        }
    }

    /// The next data of a subscription, failing on anything else.
    pub async fn data(&mut self) -> Value {
        match self.next().await {
            Said::Data(data) => data,
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// The next data of a subscription, or `None` when nothing arrives within `quiet`.
    pub async fn data_within(&mut self, quiet: Duration) -> Option<Value> {
        match tokio::time::timeout(quiet, self.next()).await {
            Err(_) => None,
            Ok(Said::Data(data)) => Some(data),
            Ok(other) => panic!("expected data, got {other:?}"),
        }
    }

    /// Whether nothing arrives within `quiet`.
    pub async fn stays_quiet(&mut self, quiet: Duration) -> bool {
        tokio::time::timeout(quiet, self.socket.next())
            .await
            .is_err()
    }

    /// Closes the websocket.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
