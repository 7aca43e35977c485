//! A request over the decoding limit is answered RESOURCE_EXHAUSTED, as other gRPC
//! servers answer it and their clients expect. tonic answers OUT_OF_RANGE and says why
//! only in the message text, so this layer reads that text.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";
/// The start of tonic's message for a request over the decoding limit.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// See the module documentation. It only ever looks at a trailers-only answer (the
/// status in the headers), which is how tonic refuses a request it cannot decode.
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeLayer;

impl<S> Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversize { inner }
    }
}

/// See [`OversizeLayer`].
#[derive(Debug, Clone)]
pub struct Oversize<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Oversize<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers_mut();
            if is_too_large(headers) {
                headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
            }
            Ok(response)
        })
    }
}

fn is_too_large(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|s| s == OUT_OF_RANGE)
        && headers.get("grpc-message").is_some_and(|m| {
            // grpc-message is percent-encoded; the prefix has only spaces and a comma.
            String::from_utf8_lossy(m.as_bytes())
                .replace("%20", " ")
                .replace("%2C", ",")
                .starts_with(TOO_LARGE)
        })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A service that answers every request with one status, trailers-only.
    #[derive(Clone)]
    struct Answer {
        status: &'static str,
        message: &'static str,
    }

    impl Service<Request<()>> for Answer {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let mut response = Response::new(());
            let headers = response.headers_mut();
            headers.insert("grpc-status", HeaderValue::from_static(self.status));
            headers.insert("grpc-message", HeaderValue::from_static(self.message));
            std::future::ready(Ok(response))
        }
    }

    /// The status a client sees through the layer when the service answers `status`.
    async fn seen(status: &'static str, message: &'static str) -> String {
        let response = OversizeLayer
            .layer(Answer { status, message })
            .call(Request::new(()))
            .await
            .expect("infallible");
        let status = response.headers()["grpc-status"].to_str().expect("ascii");
        status.to_owned()
    }

    #[tokio::test]
    async fn a_request_over_the_size_limit_is_answered_resource_exhausted() {
        // tonic's words (codec/decode.rs), percent-encoded as they go on the wire.
        let tonic_says = "Error,%20decoded%20message%20length%20too%20large:%20found%20300000%20bytes,%20the%20limit%20is:%20262144%20bytes";
        assert_eq!(seen(OUT_OF_RANGE, tonic_says).await, RESOURCE_EXHAUSTED);
    }

    #[tokio::test]
    async fn every_other_status_passes_unchanged() {
        assert_eq!(seen(OUT_OF_RANGE, "page%20past%20the%20end").await, "11");
        let too_large = "Error,%20decoded%20message%20length%20too%20large";
        assert_eq!(seen("3", too_large).await, "3");
        assert_eq!(seen("0", "").await, "0");
    }
}
