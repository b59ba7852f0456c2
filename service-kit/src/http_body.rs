//! A deadline on request bodies. actix-web times out a request's head
//! (`client_request_timeout`) but not its body: a client that announces a body and never
//! sends all of it holds its connection, and the handler waiting for it, for ever. Behind
//! [`body_deadline`], such a body fails after [`BODY_TIMEOUT`] with an error [`timed_out`]
//! recognises, which each API answers with `408 Request Timeout`.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a request's body may take to arrive in full, from the end of its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a body read behind [`body_deadline`] failed when its time ran out.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in full within {} s", .0.as_secs())]
pub struct BodyTimedOut(pub Duration);

/// The time a body read failed on, when it failed because its deadline passed.
pub fn timed_out(error: &PayloadError) -> Option<Duration> {
    match error {
        PayloadError::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<BodyTimedOut>())
            .map(|t| t.0),
        _ => None,
    }
}

/// Middleware (`App::wrap(from_fn(body_deadline))`): a request that announces a body
/// (`Content-Length` above zero, or chunked) must deliver it within [`BODY_TIMEOUT`]. A
/// websocket upgrade (the subscription websocket) is left alone: its payload is the
/// connection's life.
///
/// # Errors
/// The inner service's.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if announces_body(&req) {
        let payload = req.take_payload();
        let deadline: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(Deadline::new(payload, BODY_TIMEOUT));
        req.set_payload(Payload::Stream { payload: deadline });
    }
    next.call(req).await
}

fn announces_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    // As actix-http decides: only a websocket upgrade that is not chunked hands over the
    // connection; any other `Upgrade` header leaves an ordinary body.
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if websocket && !chunked {
        return false;
    }
    let sized = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > 0);
    sized || chunked
}

/// A body stream that fails with [`BodyTimedOut`] once `at` has passed and it has not ended.
/// The timer is set only when the body first has to be waited for: a body that came with its
/// head (most do) costs no timer.
struct Deadline<S> {
    inner: S,
    at: Instant,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl<S> Deadline<S> {
    /// `inner`, failing once `timeout` from now has passed.
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            at: Instant::now() + timeout,
            timeout,
            timer: None,
            done: false,
        }
    }
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            this.done = item.is_none();
            return Poll::Ready(item);
        }
        let at = this.at;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.done = true;
        let error = std::io::Error::new(std::io::ErrorKind::TimedOut, BodyTimedOut(this.timeout));
        Poll::Ready(Some(Err(PayloadError::Io(error))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_at_its_deadline_as_timed_out() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, _>>();
        sender
            .unbounded_send(Ok(Bytes::from_static(b"{\"a\"")))
            .unwrap();
        let timeout = Duration::from_secs(10);
        let mut body = Deadline::new(receiver, timeout);
        assert_eq!(body.next().await.unwrap().unwrap(), &b"{\"a\""[..]);
        let started = Instant::now();
        let error = body.next().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), timeout, "failed at its deadline");
        assert_eq!(timed_out(&error), Some(timeout), "{error}");
        assert!(error.to_string().contains("within 10 s"), "{error}");
        assert!(body.next().await.is_none(), "and ends there");
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_passed_on_whole() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, _>>();
        let timeout = Duration::from_secs(10);
        let mut body = Deadline::new(receiver, timeout);
        let feeder = tokio::spawn(async move {
            for chunk in [&b"{\"a\":"[..], &b"1}"[..]] {
                tokio::time::sleep(Duration::from_secs(4)).await;
                sender.unbounded_send(Ok(Bytes::from(chunk))).unwrap();
            }
        });
        let mut read = Vec::new();
        while let Some(chunk) = body.next().await {
            read.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(read, b"{\"a\":1}");
        feeder.await.unwrap();
    }

    #[test]
    fn only_a_websocket_upgrade_escapes_the_deadline() {
        use actix_web::test::TestRequest;
        let announces = |headers: &[(&str, &str)]| {
            let mut request = TestRequest::post();
            for (name, value) in headers {
                request = request.insert_header((*name, *value));
            }
            announces_body(&request.to_srv_request())
        };
        assert!(announces(&[("content-length", "100")]));
        assert!(announces(&[("transfer-encoding", "chunked")]));
        assert!(announces(&[("upgrade", "foo"), ("content-length", "100")]));
        assert!(announces(&[
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(!announces(&[("upgrade", "websocket")]));
        assert!(!announces(&[("content-length", "0")]));
        assert!(!announces(&[]));
    }

    #[test]
    fn other_payload_errors_are_not_taken_for_a_timeout() {
        assert_eq!(timed_out(&PayloadError::Incomplete(None)), None);
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "elsewhere");
        assert_eq!(timed_out(&PayloadError::Io(io)), None);
    }
}
