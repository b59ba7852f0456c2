//! A trace receiver for benchmarks and tests: an OTLP/gRPC endpoint (the `TraceService` a
//! collector serves) that decodes every export it is sent, counts the spans and answers as a
//! collector does, then drops them. It lets a benchmark measure tracing with the exporter really
//! sending, without a collector's own cost beside it on the machine.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::transport::server::TcpIncoming;

/// What the sink has received so far.
#[derive(Debug, Default)]
pub struct Received {
    exports: AtomicU64,
    spans: AtomicU64,
}

impl Received {
    /// Export calls answered.
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }

    /// Spans in those exports.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

struct Counting(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Counting {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running sink: its address and counts; it stops when `shutdown` resolves.
pub struct OtlpSink {
    pub addr: SocketAddr,
    pub received: Arc<Received>,
    pub served: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl OtlpSink {
    /// The URL an exporter is given (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts a sink on `addr` (port 0: a free one) on the current runtime, serving until
/// `shutdown` resolves.
///
/// # Errors
/// When the address cannot be bound.
pub fn start(
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<OtlpSink> {
    let incoming = TcpIncoming::bind(addr)?.with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    let received = Arc::new(Received::default());
    let service = TraceServiceServer::new(Counting(received.clone()));
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown),
    );
    Ok(OtlpSink {
        addr,
        received,
        served,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[tokio::test]
    async fn the_sink_answers_an_export_and_counts_its_spans() {
        let sink = start("127.0.0.1:0".parse().unwrap(), std::future::pending()).unwrap();
        let mut client = TraceServiceClient::connect(sink.endpoint()).await.unwrap();
        let spans = vec![Span::default(); 3];
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        client.export(request.clone()).await.unwrap();
        client.export(request).await.unwrap();
        assert_eq!((sink.received.exports(), sink.received.spans()), (2, 6));
    }
}
