//! What a flood of clients can make one server hold (docs/ARCHITECTURE.md, "Overload"):
//! connections per process, HTTP/2 streams per connection, and calls in flight per
//! process. Past a limit nothing waits in a queue of ours: a connection over the limit is
//! closed as soon as it is accepted (the call fails at once, UNAVAILABLE in most gRPC
//! clients, a transport error in tonic, and may be tried on another replica), a stream over the HTTP/2 limit waits in the client (the server announced the
//! limit in its SETTINGS), and a call over the in-flight limit is answered
//! RESOURCE_EXHAUSTED at once, without running. Health checks are never shed: a probe
//! must see the server as it is, busy or not.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

/// The limits of one server. Zero means "no limit" for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections (HTTP/2 or HTTP/1.1) this process holds at once.
    pub max_connections: usize,
    /// Calls one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// Calls this process runs at once, health checks aside; past it RESOURCE_EXHAUSTED.
    pub max_calls_in_flight: usize,
}

impl Limits {
    /// The defaults every service uses unless told otherwise: under 256 MB resident in a
    /// flood of 2,000 or 8,000 connections of 20 calls each (BENCHMARKS.md, "Overload").
    /// 200 streams is hyper's own default: fewer refuses the bursts clients send before
    /// the server's SETTINGS reach them.
    pub const DEFAULT: Self = Self {
        max_connections: 1024,
        max_streams_per_connection: 200,
        max_calls_in_flight: 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Path prefix of the calls never shed.
const HEALTH: &str = "/grpc.health.v1.Health/";

/// Says at most once a second that something was refused, with how many since.
#[derive(Debug, Default)]
struct Refusals {
    count: AtomicU64,
    last_log_ms: AtomicU64,
}

impl Refusals {
    fn record(&self, what: &'static str, limit: usize, started: Instant) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= 1000)
            && self
                .last_log_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                limit,
                refused_so_far = count,
                "{what}: over the limit, refused"
            );
        }
    }
}

/// Counts open connections against `max_connections`.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
    refusals: Arc<Refusals>,
    started: Instant,
}

impl ConnectionLimit {
    pub fn new(max_connections: usize) -> Self {
        Self {
            permits: (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections))),
            limit: max_connections,
            refusals: Arc::default(),
            started: Instant::now(),
        }
    }

    /// The accepted `stream`, holding a place until it is closed; `None` (and the stream
    /// closed) when every place is taken.
    pub fn admit(&self, stream: TcpStream) -> Option<LimitedStream> {
        let permit = match &self.permits {
            None => None,
            Some(permits) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.refusals.record("connection", self.limit, self.started);
                    return None;
                }
            },
        };
        Some(LimitedStream {
            stream,
            _permit: permit,
        })
    }
}

/// An accepted connection and its place under the connection limit, given back when the
/// connection is dropped.
#[derive(Debug)]
pub struct LimitedStream {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Sheds calls over `max_calls_in_flight` with RESOURCE_EXHAUSTED (health checks aside).
#[derive(Debug, Clone)]
pub struct InFlightLayer {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
    refusals: Arc<Refusals>,
    started: Instant,
}

impl InFlightLayer {
    pub fn new(max_calls_in_flight: usize) -> Self {
        Self {
            permits: (max_calls_in_flight > 0)
                .then(|| Arc::new(Semaphore::new(max_calls_in_flight))),
            limit: max_calls_in_flight,
            refusals: Arc::default(),
            started: Instant::now(),
        }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            limit: self.clone(),
        }
    }
}

/// See [`InFlightLayer`].
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    limit: InFlightLayer,
}

/// How long a shed client should wait before it tries again (`RetryInfo` is for the
/// callers that read it; the message says the same to people).
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The answer to a call over the limit: RESOURCE_EXHAUSTED, trailers only.
pub fn overloaded<B: Default>() -> Response<B> {
    use tonic_types::{ErrorDetails, StatusExt as _};
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        "the server is at its limit of calls in flight: retry shortly, or on another replica",
        ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
    )
    .into_http()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InFlight<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<PermitBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let permit = match &self.limit.permits {
            Some(permits) if !request.uri().path().starts_with(HEALTH) => {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        self.limit
                            .refusals
                            .record("call", self.limit.limit, self.limit.started);
                        return Box::pin(std::future::ready(Ok(overloaded())));
                    }
                }
            }
            _ => None,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| PermitBody { inner, permit }))
        })
    }
}

/// A response body holding its call's place under the in-flight limit until it has
/// been sent (a stream is in flight for as long as it is open).
#[derive(Debug, Default)]
pub struct PermitBody<B> {
    inner: B,
    permit: Option<OwnedSemaphorePermit>,
}

impl<B: Body + Unpin> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None | Some(Err(_))) => self.permit = None,
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.permit = None,
            _ => {}
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
    fn the_shed_answer_is_resource_exhausted_with_a_retry_delay() {
        let response: Response<PermitBody<String>> = overloaded();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        use tonic_types::StatusExt as _;
        assert_eq!(
            status.get_details_retry_info().and_then(|r| r.retry_delay),
            Some(RETRY_AFTER)
        );
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_refused_and_a_closed_one_frees_its_place() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(2);
        let mut admitted = Vec::new();
        for _ in 0..3 {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            admitted.push(limit.admit(stream));
        }
        assert!(admitted[0].is_some() && admitted[1].is_some());
        assert!(admitted[2].is_none());
        admitted.remove(0);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(limit.admit(stream).is_some());
        let unlimited = ConnectionLimit::new(0);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(unlimited.admit(stream).is_some());
    }
}
