//! gRPC adapters: read metadata, convert proto to domain, call `AuthCore`, convert back.

use std::{net::IpAddr, sync::Arc};

use pair_common::time::{timestamp, unix_timestamp};
use pair_proto::auth::v1::{
    self as pb, auth_service_server::AuthService,
    introspection_service_server::IntrospectionService,
};
use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::{
    client::TrustedProxies,
    domain::User,
    error::AuthError,
    metrics::{AuthMetrics, IntrospectOutcome},
    service::{AuthCore, Principal},
    store::SessionInfo,
    tokens::IssuedPair,
};

/// Both gRPC services of auth-service over one `AuthCore`.
#[derive(Clone)]
pub struct AuthGrpc {
    core: AuthCore,
    metrics: Option<AuthMetrics>,
    proxies: Arc<TrustedProxies>,
}

impl AuthGrpc {
    pub fn new(core: AuthCore, metrics: Option<AuthMetrics>, proxies: TrustedProxies) -> Self {
        Self {
            core,
            metrics,
            proxies: Arc::new(proxies),
        }
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded.
    fn client<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        let forwarded: Option<Vec<&str>> = request
            .metadata()
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok())
            .collect();
        let peer = request.remote_addr().map(|addr| addr.ip());
        // A value that is not text is malformed: the peer is counted.
        self.proxies
            .client_address(peer, forwarded.as_deref().unwrap_or_default())
    }

    async fn principal(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let token = pair_common::status::bearer(metadata)
            .map_err(|e| AuthError::Unauthenticated(e.message()))?;
        Ok(self.core.authenticate(token).await?)
    }
}

impl From<User> for pb::User {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username,
            email: user.email,
            create_time: timestamp(user.create_time),
            update_time: timestamp(user.update_time),
        }
    }
}

impl From<IssuedPair> for pb::TokenPair {
    fn from(pair: IssuedPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer".into(),
            access_expire_time: unix_timestamp(pair.access.exp),
            refresh_expire_time: unix_timestamp(pair.refresh.exp),
        }
    }
}

fn session(info: SessionInfo, current: &Principal) -> pb::Session {
    pb::Session {
        id: info.id.to_string(),
        create_time: unix_timestamp(info.create_time),
        expire_time: unix_timestamp(info.expire_time),
        user_agent: info.user_agent,
        current: info.id == current.claims.sid,
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let client = self.client(&request);
        let r = request.into_inner();
        let user = self
            .core
            .register(&r.username, &r.email, &r.password, client)
            .await?;
        Ok(Response::new(pb::RegisterResponse {
            user: Some(user.into()),
        }))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let user_agent = request
            .metadata()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let client = self.client(&request);
        let r = request.into_inner();
        let (pair, user) = self
            .core
            .login(&r.username, &r.password, &user_agent, client)
            .await?;
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(pair.into()),
            user: Some(user.into()),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let pair = self
            .core
            .refresh(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(pair.into()),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        let user = self.core.profile(&principal).await?;
        Ok(Response::new(pb::GetProfileResponse {
            user: Some(user.into()),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        let r = request.into_inner();
        let (user, pair) = self
            .core
            .update_profile(&principal, r.username.as_deref(), r.email.as_deref())
            .await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            user: Some(user.into()),
            tokens: Some(pair.into()),
        }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        let client = self.client(&request);
        let r = request.into_inner();
        let pair = self
            .core
            .change_password(&principal, &r.current_password, &r.new_password, client)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {
            tokens: Some(pair.into()),
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        self.core.logout(&principal).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        let revoked = self.core.logout_all(&principal).await?;
        Ok(Response::new(pb::LogoutAllResponse {
            revoked_sessions: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        let sessions = self.core.sessions(&principal).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions
                .into_iter()
                .map(|s| session(s, &principal))
                .collect(),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let principal = self.principal(request.metadata()).await?;
        self.core
            .revoke_session(&principal, &request.into_inner().session_id)
            .await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }
}

#[tonic::async_trait]
impl IntrospectionService for AuthGrpc {
    async fn introspect(
        &self,
        request: Request<pb::IntrospectRequest>,
    ) -> Result<Response<pb::IntrospectResponse>, Status> {
        let principal = self.core.introspect(&request.into_inner().token).await;
        if let Some(metrics) = &self.metrics {
            metrics.introspected(match &principal {
                Ok(Some(_)) => IntrospectOutcome::Active,
                Ok(None) => IntrospectOutcome::Inactive,
                Err(_) => IntrospectOutcome::Error,
            });
        }
        let principal = principal?;
        let response = match principal {
            None => pb::IntrospectResponse::default(),
            Some(Principal { claims, username }) => pb::IntrospectResponse {
                active: true,
                user_id: claims.sub.to_string(),
                username,
                session_id: claims.sid.to_string(),
                token_id: claims.jti.to_string(),
                issue_time: unix_timestamp(claims.iat),
                expire_time: unix_timestamp(claims.exp),
            },
        };
        Ok(Response::new(response))
    }

    async fn list_keys(
        &self,
        _request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        Ok(Response::new(pb::ListKeysResponse {
            jwks: self.core.jwks().to_owned(),
        }))
    }
}
