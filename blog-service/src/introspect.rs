//! blog-service's one client of auth-service: `Introspect`, over one shared channel.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use pair_proto::auth::v1::{
    IntrospectRequest, introspection_service_client::IntrospectionServiceClient,
};
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};
use uuid::Uuid;

use crate::error::BlogError;

/// The caller of a write, as auth-service reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    /// The user's current name, also for sessions opened before a rename.
    pub username: String,
}

/// Checks bearer tokens with auth-service. Clones share one channel (one HTTP/2
/// connection per process), which reconnects by itself after auth-service restarts.
#[derive(Debug, Clone)]
pub struct Introspector {
    client: IntrospectionServiceClient<Channel>,
    deadline: Duration,
}

impl Introspector {
    /// Sets up the channel without connecting, so blog-service starts (and serves reads)
    /// while auth-service is down. Each call, connecting included, ends within `deadline`.
    pub fn new(url: &str, deadline: Duration) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .context("BLOG_AUTH_URL is not a valid URL")?
            .connect_timeout(deadline)
            .timeout(deadline);
        Ok(Self {
            client: IntrospectionServiceClient::new(endpoint.connect_lazy()),
            deadline,
        })
    }

    /// A client of an auth-service that nothing runs, for tests of reads (which never
    /// ask auth-service).
    #[cfg(test)]
    pub(crate) fn nowhere(deadline: Duration) -> Self {
        Self::new("http://127.0.0.1:9", deadline).expect("a valid URL")
    }

    /// The caller behind a bare access token, or `None` if the token is not active.
    pub async fn introspect(&self, token: &str) -> Result<Option<Caller>, BlogError> {
        let mut request = tonic::Request::new(IntrospectRequest {
            token: token.to_owned(),
        });
        // Tells auth-service our deadline too, so it can give up when we do.
        request.set_timeout(self.deadline);
        // The same trace continues in auth-service's logs for this call.
        if let Some(trace) = pair_common::observe::TraceContext::current()
            && let Ok(value) = trace.child_header().parse()
        {
            request.metadata_mut().insert("traceparent", value);
        }
        let mut client = self.client.clone();
        // The endpoint's timeouts bound the request and the connect separately; this
        // bounds the whole call, so a write can never hang on auth-service.
        let answer = tokio::time::timeout(self.deadline, client.introspect(request))
            .await
            .map_err(|_| {
                BlogError::Unavailable(anyhow!(
                    "auth-service Introspect did not answer within {:?}",
                    self.deadline
                ))
            })?
            .map_err(failed)?
            .into_inner();
        if !answer.active {
            return Ok(None);
        }
        let user_id = Uuid::try_parse(&answer.user_id).map_err(|error| {
            BlogError::Internal(anyhow!(
                "auth-service Introspect returned a malformed user_id: {error}"
            ))
        })?;
        Ok(Some(Caller {
            user_id,
            username: answer.username,
        }))
    }
}

/// An Introspect call that failed. Transport failures, timeouts and overload mean
/// auth-service cannot be used right now: UNAVAILABLE, which clients retry. Any other
/// status is a fault of ours or of auth-service.
fn failed(status: tonic::Status) -> BlogError {
    let cause = anyhow!(
        "auth-service Introspect failed: {:?}: {}",
        status.code(),
        status.message()
    );
    // A status our own transport made (a broken, reset or refused HTTP/2 connection, as
    // when auth-service shuts down) carries its cause, whatever its code (h2 errors map
    // to INTERNAL); a status auth-service sent does not.
    let from_transport = std::error::Error::source(&status).is_some();
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted
        | Code::Aborted => BlogError::Unavailable(cause),
        _ if from_transport => BlogError::Unavailable(cause),
        _ => BlogError::Internal(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_and_timeouts_are_unavailable() {
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::cancelled("Timeout expired"),
            tonic::Status::deadline_exceeded("deadline"),
            tonic::Status::unknown("transport error"),
        ] {
            assert!(matches!(failed(status), BlogError::Unavailable(_)));
        }
    }

    #[test]
    fn a_broken_connection_is_unavailable_whatever_its_code() {
        // tonic reports an HTTP/2 connection error (e.g. a GOAWAY while auth-service
        // shuts down) as INTERNAL "h2 protocol error", with the error as its source.
        let mut status = tonic::Status::internal("h2 protocol error: http2 error");
        status.set_source(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        )));
        assert!(matches!(failed(status), BlogError::Unavailable(_)));
    }

    #[test]
    fn an_unexpected_answer_of_auth_service_is_internal() {
        assert!(matches!(
            failed(tonic::Status::unimplemented("no such service")),
            BlogError::Internal(_)
        ));
    }

    #[tokio::test]
    async fn an_unreachable_auth_service_is_unavailable_within_the_deadline() {
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = unused.local_addr().unwrap();
        drop(unused);
        let introspector =
            Introspector::new(&format!("http://{addr}"), Duration::from_millis(500)).unwrap();
        let started = std::time::Instant::now();
        let outcome = introspector.introspect("token").await;
        assert!(matches!(outcome, Err(BlogError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
