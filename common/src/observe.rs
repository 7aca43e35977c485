//! One tower layer around every gRPC call of a server: it carries the W3C trace
//! context (`traceparent`) into a tracing span and a task-local for outgoing calls, and
//! records Prometheus metrics when they are on.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use crate::metrics::GrpcMetrics;

/// A W3C trace context: the trace every log line of a call carries, and the parent id
/// an outgoing call names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub parent_id: u64,
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

thread_local! {
    /// xorshift state for ids: trace ids must be unique, not unpredictable.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let fallback = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
    getrandom::u64().unwrap_or(fallback) | 1
}

fn next_random() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

impl TraceContext {
    /// A new trace (for a call that came without one).
    pub fn new_root() -> Self {
        let trace_id = (u128::from(next_random()) << 64 | u128::from(next_random())).max(1);
        Self {
            trace_id,
            parent_id: next_random().max(1),
            flags: 0,
        }
    }

    /// The context of `traceparent` (version 00), or `None` if it is malformed; a
    /// malformed header is ignored, never an error.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version != "00"
            || parts.next().is_some()
            || !hex(trace, 32)
            || !hex(parent, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        let context = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            parent_id: u64::from_str_radix(parent, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (context.trace_id != 0 && context.parent_id != 0).then_some(context)
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::new_root)
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The `traceparent` for a call made on behalf of this one: same trace, a new
    /// parent (span) id.
    pub fn child_header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            next_random().max(1),
            self.flags
        )
    }

    /// The context of the gRPC call being served on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|context| *context).ok()
    }
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct CallLayer {
    metrics: Option<Arc<GrpcMetrics>>,
}

impl CallLayer {
    pub fn new(metrics: Option<Arc<GrpcMetrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`CallLayer`].
#[derive(Debug, Clone)]
pub struct CallService<S> {
    inner: S,
    metrics: Option<Arc<GrpcMetrics>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CallService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let trace = TraceContext::from_headers(request.headers());
        let path = request.uri().path();
        let span = tracing::info_span!("grpc", trace_id = %trace.trace_id_hex(), rpc = %path);
        let recorder = self
            .metrics
            .clone()
            .map(|metrics| Recorder::start(metrics, path));
        let started = Instant::now();
        let response = CURRENT
            .scope(trace, self.inner.call(request))
            .instrument(span.clone());
        Box::pin(async move {
            let response = response.await?;
            let headers = response.headers();
            span.in_scope(|| {
                let status = headers.get("grpc-status").and_then(|s| s.to_str().ok());
                tracing::debug!(
                    grpc_status = status.unwrap_or("in trailers"),
                    elapsed_us = started.elapsed().as_micros(),
                    "call answered"
                );
            });
            // A trailers-only answer (every error) carries its status in the headers.
            let recorder = match (recorder, headers.get("grpc-status")) {
                (Some(recorder), Some(code)) => {
                    recorder.finish(code.as_bytes());
                    None
                }
                (recorder, _) => recorder,
            };
            Ok(response.map(|inner| CallBody { inner, recorder }))
        })
    }
}

/// Records one call's outcome once: when its status is known, or when the response is
/// dropped without one (the client went away).
pub struct Recorder {
    metrics: Arc<GrpcMetrics>,
    path: String,
    start: Instant,
}

impl Recorder {
    fn start(metrics: Arc<GrpcMetrics>, path: &str) -> Self {
        metrics.started(path);
        Self {
            metrics,
            path: path.to_owned(),
            start: Instant::now(),
        }
    }

    fn finish(self, code: &[u8]) {
        let code: i32 = std::str::from_utf8(code)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(2);
        self.metrics.handled(&self.path, code, self.start.elapsed());
    }
}

/// The response body, watched for the trailers that carry the status.
pub struct CallBody<B> {
    inner: B,
    recorder: Option<Recorder>,
}

impl<B> Drop for CallBody<B> {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            recorder.finish(b"1"); // CANCELLED: the stream ended without a status.
        }
    }
}

impl<B: Body + Unpin> Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(trailers) = frame.trailers_ref()
            && let Some(recorder) = self.recorder.take()
        {
            recorder.finish(trailers.get("grpc-status").map_or(b"2", |v| v.as_bytes()));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_read_and_passed_on_with_a_new_parent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).unwrap();
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = context.child_header();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(child, header);
        assert_eq!(
            TraceContext::parse(&child).map(|c| c.trace_id),
            Some(context.trace_id)
        );
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn new_traces_get_distinct_ids() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id, b.trace_id);
    }
}
