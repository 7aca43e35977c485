//! Oversized requests answer RESOURCE_EXHAUSTED, as gRPC's other implementations do
//! (tonic says OUT_OF_RANGE). The message size limit itself is set per service.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// The start of tonic's message for a request over the decoding limit.
const TOO_LARGE: &[u8] = b"Error, decoded message length too large";
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Rewrites the status of a request refused for its size.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeLimitStatusLayer;

impl<S> Layer<S> for SizeLimitStatusLayer {
    type Service = SizeLimitStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SizeLimitStatus { inner }
    }
}

/// See [`SizeLimitStatusLayer`].
#[derive(Debug, Clone)]
pub struct SizeLimitStatus<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SizeLimitStatus<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
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
            let too_large = headers
                .get("grpc-status")
                .is_some_and(|s| s == OUT_OF_RANGE)
                && headers
                    .get("grpc-message")
                    .is_some_and(|m| percent_decoded_starts_with(m, TOO_LARGE));
            if too_large {
                headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
            }
            Ok(response)
        })
    }
}

/// grpc-message is percent-encoded; the prefix we look for has only spaces and commas
/// to decode.
fn percent_decoded_starts_with(value: &HeaderValue, prefix: &[u8]) -> bool {
    let decoded = String::from_utf8_lossy(value.as_bytes())
        .replace("%20", " ")
        .replace("%2C", ",");
    decoded.as_bytes().starts_with(prefix)
}
