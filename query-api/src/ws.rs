//! Subscriptions over a websocket on `GET /graphql` (graphql-transport-ws, and the legacy
//! subscriptions-transport-ws as `graphql-ws`), through async-graphql's actix support, with the
//! limits: open connections, subscriptions per connection, how long `connection_init` may take,
//! and the keep-alive. The caller is authenticated at `connection_init`: its payload's
//! `Authorization` entry (`{"Authorization": "Bearer <token>"}`), else the upgrade request's
//! header; without a valid token the connection is refused, and it is closed when that token
//! expires (the client connects again with a fresh one and resumes with `after:`).

use crate::http::error_response;
use crate::schema::live::SubscriptionBudget;
use crate::startup::AppState;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use async_graphql::Data;
use async_graphql_actix_web::GraphQLSubscription;
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Whether a request asks to open a websocket: the guard of [`subscribe`]'s route.
pub fn is_upgrade(ctx: &actix_web::guard::GuardContext<'_>) -> bool {
    ctx.head()
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The open subscription websockets of the process.
#[derive(Clone, Default)]
pub struct Connections(Arc<AtomicUsize>);

impl Connections {
    /// How many are open.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn take(&self, max: usize) -> Option<ConnectionSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(ConnectionSlot(Arc::clone(&self.0)))
    }
}

/// One open websocket, counted until the connection's data is dropped.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /graphql` with `Upgrade: websocket`.
///
/// # Errors
/// A handshake that is not a websocket's, or no GraphQL subprotocol offered (400).
pub async fn subscribe(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let config = &app.config;
    let Some(slot) = app.connections.take(config.max_connections) else {
        return Ok(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_CONNECTIONS",
            &format!(
                "at most {} subscription connections are served; retry later",
                config.max_connections
            ),
        ));
    };
    let mut data = Data::default();
    data.insert(slot);
    data.insert(app.live.clone());
    data.insert(SubscriptionBudget::new(
        config.max_subscriptions_per_connection,
    ));
    let initialized = Arc::new(AtomicBool::new(false));
    let on_init = Arc::clone(&initialized);
    let auth = app.auth.clone();
    let upgrade = service_kit::auth::http::caller(&req);
    let (expiry, expires) = tokio::sync::oneshot::channel();
    let payload = Deadlines {
        inner: payload,
        end: Box::pin(connection_end(
            initialized,
            config.connection_init_timeout,
            expires,
        )),
    };
    GraphQLSubscription::new(app.schema.clone())
        .with_data(data)
        .on_connection_init(move |payload| async move {
            on_init.store(true, Ordering::Release);
            let caller = crate::auth::websocket_caller(&auth, upgrade, &payload)
                .await
                .map_err(|e| async_graphql::Error::new(e.to_string()))?;
            let _ = expiry.send(caller.expires_at);
            let mut data = Data::default();
            data.insert(caller);
            Ok(data)
        })
        .keepalive_timeout(config.keepalive_timeout)
        .start(&req, payload)
}

/// When the server ends a connection: `connection_init` has not come within `init_timeout`,
/// or the token it authenticated with (sent on `expires` once accepted) has expired. Never,
/// for a connection accepted without an expiry.
async fn connection_end(
    initialized: Arc<AtomicBool>,
    init_timeout: std::time::Duration,
    mut expires: tokio::sync::oneshot::Receiver<Option<std::time::SystemTime>>,
) -> &'static str {
    let accepted = tokio::select! {
        accepted = &mut expires => accepted,
        () = tokio::time::sleep(init_timeout) => {
            if !initialized.load(Ordering::Acquire) {
                return "no connection_init within the time allowed";
            }
            // Its token is being checked: the outcome decides.
            (&mut expires).await
        }
    };
    match accepted {
        Ok(Some(at)) => {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left).await;
            "the token the connection was opened with has expired; connect again with a fresh one"
        }
        // Accepted without an expiry, or refused (the protocol closes that connection itself).
        Ok(None) | Err(_) => std::future::pending().await,
    }
}

/// The client's frames, ended with an error (closing the connection) when [`connection_end`]
/// says so.
struct Deadlines<S> {
    inner: S,
    end: Pin<Box<dyn Future<Output = &'static str> + Send>>,
}

impl<S> Stream for Deadlines<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(reason) = self.end.as_mut().poll(cx) {
            self.end = Box::pin(std::future::pending());
            let ended = std::io::Error::new(std::io::ErrorKind::TimedOut, reason);
            return Poll::Ready(Some(Err(PayloadError::Io(ended))));
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
