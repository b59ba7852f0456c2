//! A trace receiver for benchmarks and tests: an OTLP/gRPC endpoint (the `TraceService` a
//! collector serves) that counts the spans of every export it is sent and answers as a collector
//! does, then drops them. It lets a benchmark measure tracing with the exporter really sending,
//! without a collector's own cost beside it on the machine: an export is read only as deep as
//! counting its spans needs (each span is a length-prefixed slice that is skipped, not decoded).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
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

/// `ExportTraceServiceRequest` as far as counting its spans goes: the fields left out are
/// skipped by the decoder, and a span stays the bytes it was sent as.
#[derive(Clone, PartialEq, prost::Message)]
struct SkimmedExport {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<SkimmedResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SkimmedResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<SkimmedScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SkimmedScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<prost::bytes::Bytes>,
}

/// The gRPC service `opentelemetry.proto.collector.trace.v1.TraceService`, its one method
/// `Export` answered with the skimming decoder (the generated server decodes every span).
#[derive(Clone)]
struct Counting(Arc<Received>);

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl tonic::server::NamedService for Counting {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tonic::server::UnaryService<SkimmedExport> for Counting {
    type Response = ExportTraceServiceResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<SkimmedExport>) -> Self::Future {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        std::future::ready(Ok(tonic::Response::new(
            ExportTraceServiceResponse::default(),
        )))
    }
}

impl<B> Service<http::Request<B>> for Counting
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let export = self.clone();
        Box::pin(async move {
            if request.uri().path() != EXPORT_PATH {
                return Ok(
                    tonic::Status::unimplemented("only trace exports are received here")
                        .into_http(),
                );
            }
            let mut grpc = tonic::server::Grpc::new(tonic::codec::ProstCodec::<
                ExportTraceServiceResponse,
                SkimmedExport,
            >::default());
            Ok(grpc.unary(export, request).await)
        })
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
    let service = Counting(received.clone());
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
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
        }
    }

    /// A span with every kind of field a service sends filled in.
    fn span(name: &str) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![9; 8],
            parent_span_id: vec![8; 8],
            name: name.to_owned(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_100_000,
            attributes: vec![
                attribute("http.route", "/orders"),
                attribute("instance", "o-1"),
            ],
            ..Span::default()
        }
    }

    fn scope(spans: Vec<Span>) -> ScopeSpans {
        ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "command-api".to_owned(),
                ..InstrumentationScope::default()
            }),
            spans,
            ..ScopeSpans::default()
        }
    }

    #[tokio::test]
    async fn the_sink_answers_an_export_and_counts_its_spans() {
        let sink = start("127.0.0.1:0".parse().unwrap(), std::future::pending()).unwrap();
        let mut client = TraceServiceClient::connect(sink.endpoint()).await.unwrap();
        let resource = Some(Resource {
            attributes: vec![attribute("service.name", "command-api")],
            ..Resource::default()
        });
        // Two services' resources, one of them with two scopes: 3 + 1 + 2 spans.
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: resource.clone(),
                    scope_spans: vec![
                        scope(vec![
                            span("POST /orders"),
                            span("command.execute"),
                            span("append"),
                        ]),
                        scope(vec![span("batch")]),
                    ],
                    ..ResourceSpans::default()
                },
                ResourceSpans {
                    resource,
                    scope_spans: vec![scope(vec![span("a"), span("b")])],
                    ..ResourceSpans::default()
                },
            ],
        };
        client.export(request.clone()).await.unwrap();
        client.export(request).await.unwrap();
        client
            .export(ExportTraceServiceRequest::default())
            .await
            .unwrap();
        assert_eq!((sink.received.exports(), sink.received.spans()), (3, 12));
    }
}
