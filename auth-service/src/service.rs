//! What auth-service does, free of transport: every RPC is one method here.

use std::{net::IpAddr, sync::Arc, time::Duration};

use pair_common::time::now;
use uuid::Uuid;

use crate::{
    admission::{Admission, Purpose, Ticket, counted_address},
    domain::{self, User},
    error::AuthError,
    password::PasswordHasher,
    store::{NewSession, PairRotation, Rotation, SessionInfo, TokenStore, UserStore},
    tokens::{Claims, IssuedPair, TokenCodec, TokenUse},
};

/// Longest `user-agent` kept for a session.
const USER_AGENT_MAX: usize = 256;

/// Brute-force protection of Login: failed attempts are counted per username and per
/// client address in the token store; past the free failures each further attempt waits
/// (1 s, doubling, at most `max_delay`), even with the right password.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    pub enabled: bool,
    pub free_per_username: u32,
    pub free_per_address: u32,
    pub window: std::time::Duration,
    pub max_delay: std::time::Duration,
}

/// The caller of an authenticated RPC, from a verified, live access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub claims: Claims,
    pub username: String,
}

/// The service: stores, hasher and token codec, shared by every call.
#[derive(Clone)]
pub struct AuthCore {
    users: Arc<dyn UserStore>,
    tokens: Arc<dyn TokenStore>,
    hasher: PasswordHasher,
    codec: TokenCodec,
    throttle: Arc<LoginThrottle>,
    admission: Arc<Admission>,
    /// AUTH_REFRESH_RETRY_WINDOW: how long a rotated refresh token answers its new pair.
    retry_window: Duration,
}

impl AuthCore {
    pub fn new(
        users: Arc<dyn UserStore>,
        tokens: Arc<dyn TokenStore>,
        hasher: PasswordHasher,
        codec: TokenCodec,
        throttle: LoginThrottle,
        admission: Admission,
        retry_window: Duration,
    ) -> Self {
        Self {
            users,
            tokens,
            hasher,
            codec,
            throttle: Arc::new(throttle),
            admission: Arc::new(admission),
            retry_window,
        }
    }

    /// A place in front of password hashing for `client`, or RESOURCE_EXHAUSTED.
    async fn admit(&self, client: Option<IpAddr>, purpose: Purpose) -> Result<Ticket, AuthError> {
        self.admission
            .admit(self.tokens.as_ref(), client, purpose)
            .await
    }

    /// The public keys that verify tokens, as a JWK Set (JSON text).
    pub fn jwks(&self) -> &str {
        self.codec.jwks()
    }

    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        let new =
            domain::parse_registration(username, email, password).map_err(AuthError::Validation)?;
        let ticket = self.admit(client, Purpose::Register).await?;
        let password_hash = self.hasher.hash(&new.password, &ticket).await?;
        drop(ticket);
        let now = now();
        let user = User {
            id: Uuid::now_v7(),
            username: new.username.as_str().to_owned(),
            email: new.email.as_str().to_owned(),
            create_time: now,
            update_time: now,
        };
        self.users.insert(&user, &password_hash).await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(user)
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        user_agent: &str,
        client: Option<IpAddr>,
    ) -> Result<(IssuedPair, User), AuthError> {
        domain::check_login(username, password).map_err(AuthError::Validation)?;
        // Before the user is looked up: the answer must not depend on whether it exists.
        let ticket = self.admit(client, Purpose::Verify).await?;
        let found = self.users.find_by_username(username).await?;
        // Failures count against the account (its id: a name freed and taken again
        // starts afresh) or, for a name that does not exist, against the name, so
        // both are throttled alike and the answers do not tell which names exist.
        let username_key = found.as_ref().map_or_else(
            || format!("n:{}", username.to_lowercase()),
            |f| format!("u:{}", f.user.id),
        );
        let address_key = client.map(|ip| format!("a:{}", counted_address(ip)));
        if self.throttle.enabled {
            let keys: Vec<String> = std::iter::once(username_key.clone())
                .chain(address_key.clone())
                .collect();
            if let Some(wait) = self.tokens.login_lock(&keys).await? {
                tracing::info!("login throttled after repeated failures");
                return Err(AuthError::Throttled(wait));
            }
        }
        let hash = found.as_ref().map(|f| f.password_hash.as_str());
        let verified = self.hasher.verify(password, hash, &ticket).await?;
        drop(ticket);
        if !verified {
            tracing::info!("login refused: wrong username or password");
            if self.throttle.enabled {
                // The address count is of failures against real accounts: it bounds how
                // many users one address can slow down, and guessing at names that do
                // not exist slows down no one (their usernames are still counted, so
                // the answers do not tell which names exist).
                let address_key = address_key.filter(|_| found.is_some());
                let keys: Vec<(String, u32)> =
                    std::iter::once((username_key, self.throttle.free_per_username))
                        .chain(address_key.map(|key| (key, self.throttle.free_per_address)))
                        .collect();
                self.tokens
                    .record_login_failure(&keys, self.throttle.window, self.throttle.max_delay)
                    .await?;
            }
            return Err(AuthError::InvalidCredentials);
        }
        if self.throttle.enabled {
            self.tokens.clear_login_failures(&username_key).await?;
        }
        let user = found.map(|f| f.user).ok_or(AuthError::InvalidCredentials)?;
        let pair = self
            .codec
            .issue_pair(user.id, Uuid::now_v7())
            .map_err(AuthError::Internal)?;
        let user_agent: String = user_agent.chars().take(USER_AGENT_MAX).collect();
        self.tokens
            .open_session(NewSession {
                access: &pair.access,
                refresh: &pair.refresh,
                username: &user.username,
                user_agent: &user_agent,
            })
            .await?;
        tracing::info!(user_id = %user.id, session_id = %pair.access.sid, "session opened");
        Ok((pair, user))
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedPair, AuthError> {
        const INVALID: AuthError =
            AuthError::Unauthenticated("refresh token is invalid, expired or revoked");
        if refresh_token.is_empty() {
            return Err(AuthError::invalid("refresh_token", "must not be empty"));
        }
        let claims = self
            .codec
            .verify(refresh_token, TokenUse::Refresh)
            .ok_or(INVALID)?;
        match self.rotate(&claims, claims.jti, true).await? {
            (Rotation::Rotated, pair) => Ok(pair),
            (
                Rotation::Replayed {
                    access_token,
                    refresh_token,
                },
                _,
            ) => {
                tracing::info!(user_id = %claims.sub, session_id = %claims.sid,
                    "a refresh token was presented again within the retry window: same pair");
                self.codec
                    .reissued(access_token, refresh_token)
                    .ok_or(INVALID)
            }
            (Rotation::Reused, _) => {
                tracing::warn!(user_id = %claims.sub, session_id = %claims.sid,
                    "a rotated refresh token was presented again: session revoked");
                Err(AuthError::Unauthenticated(
                    "refresh token was already used: the session is revoked",
                ))
            }
            (Rotation::Gone, _) => Err(INVALID),
        }
    }

    /// Tries to make a new pair the session's, if `expected_refresh` is still current;
    /// the store's outcome, and the pair it was given.
    async fn rotate(
        &self,
        claims: &Claims,
        expected_refresh: Uuid,
        reuse_is_theft: bool,
    ) -> Result<(Rotation, IssuedPair), AuthError> {
        let pair = self
            .codec
            .issue_pair(claims.sub, claims.sid)
            .map_err(AuthError::Internal)?;
        let outcome = self
            .tokens
            .rotate(PairRotation {
                expected_refresh,
                next: &pair,
                reuse_is_theft,
                retry_window: self.retry_window,
            })
            .await?;
        Ok((outcome, pair))
    }

    /// Rotates the caller's own session (after a profile or password change).
    async fn rotate_current(&self, principal: &Principal) -> Result<IssuedPair, AuthError> {
        match self
            .rotate(&principal.claims, principal.claims.twin, false)
            .await?
        {
            (Rotation::Rotated, pair) => Ok(pair),
            _ => Err(AuthError::Unauthenticated("the session was revoked")),
        }
    }

    /// The principal of a bare access token, if it is active.
    pub async fn introspect(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::invalid("token", "must not be empty"));
        }
        let Some(claims) = self.codec.verify(token, TokenUse::Access) else {
            return Ok(None);
        };
        let username = self.tokens.check_access(&claims).await?;
        Ok(username.map(|username| Principal { claims, username }))
    }

    /// The caller behind a bearer access token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let Some(claims) = self.codec.verify(token, TokenUse::Access) else {
            return Err(AuthError::Unauthenticated(
                "access token is invalid, expired or revoked",
            ));
        };
        match self.tokens.check_access(&claims).await? {
            Some(username) => Ok(Principal { claims, username }),
            None => Err(AuthError::Unauthenticated(
                "access token is invalid, expired or revoked",
            )),
        }
    }

    /// The caller's user. Remembered with the caller's Introspect answer on a Redis token
    /// store (`store/tracked.rs`): a profile change writes the user's sessions too, and
    /// Redis's push drops both on every instance.
    pub async fn profile(&self, principal: &Principal) -> Result<User, AuthError> {
        let ticket = match self.tokens.remembered_profile(&principal.claims) {
            Ok(user) => return Ok(User::clone(&user)),
            Err(ticket) => ticket,
        };
        let user = self
            .users
            .find_by_id(principal.claims.sub)
            .await?
            .map(|found| found.user)
            .ok_or(AuthError::Unauthenticated("the user no longer exists"))?;
        if let Some(ticket) = ticket {
            self.tokens
                .remember_profile(ticket, &principal.claims, Arc::new(user.clone()));
        }
        Ok(user)
    }

    pub async fn update_profile(
        &self,
        principal: &Principal,
        username: Option<&str>,
        email: Option<&str>,
    ) -> Result<(User, IssuedPair), AuthError> {
        let (username, email) =
            domain::parse_profile_change(username, email).map_err(AuthError::Validation)?;
        let user = self
            .users
            .update_profile(
                principal.claims.sub,
                username.as_ref(),
                email.as_ref(),
                now(),
            )
            .await?
            .ok_or(AuthError::Unauthenticated("the user no longer exists"))?;
        if username.is_some() {
            self.tokens.set_username(user.id, &user.username).await?;
        }
        let pair = self.rotate_current(principal).await?;
        tracing::info!(user_id = %user.id, "profile updated");
        Ok((user, pair))
    }

    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
        client: Option<IpAddr>,
    ) -> Result<IssuedPair, AuthError> {
        let new = domain::parse_password_change(current, new, &principal.username)
            .map_err(AuthError::Validation)?;
        let ticket = self.admit(client, Purpose::Verify).await?;
        let found = self
            .users
            .find_by_id(principal.claims.sub)
            .await?
            .ok_or(AuthError::Unauthenticated("the user no longer exists"))?;
        if !self
            .hasher
            .verify(current, Some(&found.password_hash), &ticket)
            .await?
        {
            return Err(AuthError::Unauthenticated("current_password is wrong"));
        }
        let hash = self.hasher.hash(&new, &ticket).await?;
        drop(ticket);
        self.users
            .set_password_hash(found.user.id, &hash, now())
            .await?;
        let pair = self.rotate_current(principal).await?;
        let revoked = self
            .tokens
            .revoke_all(found.user.id, Some(principal.claims.sid))
            .await?;
        tracing::info!(user_id = %found.user.id, revoked, "password changed; other sessions revoked");
        Ok(pair)
    }

    pub async fn logout(&self, principal: &Principal) -> Result<(), AuthError> {
        self.tokens
            .revoke_session(principal.claims.sub, principal.claims.sid)
            .await?;
        tracing::info!(user_id = %principal.claims.sub, session_id = %principal.claims.sid, "logged out");
        Ok(())
    }

    pub async fn logout_all(&self, principal: &Principal) -> Result<u32, AuthError> {
        let revoked = self.tokens.revoke_all(principal.claims.sub, None).await?;
        tracing::info!(user_id = %principal.claims.sub, revoked, "logged out of every session");
        Ok(revoked)
    }

    pub async fn sessions(&self, principal: &Principal) -> Result<Vec<SessionInfo>, AuthError> {
        Ok(self.tokens.list_sessions(principal.claims.sub).await?)
    }

    pub async fn revoke_session(
        &self,
        principal: &Principal,
        session_id: &str,
    ) -> Result<(), AuthError> {
        let session_id =
            domain::parse_id(session_id).map_err(|why| AuthError::invalid("session_id", why))?;
        if self
            .tokens
            .revoke_session(principal.claims.sub, session_id)
            .await?
        {
            Ok(())
        } else {
            Err(AuthError::NotFound("session"))
        }
    }

    /// Succeeds while both stores answer (for the health service).
    pub async fn ping(&self) -> Result<(), String> {
        let (users, tokens) = tokio::join!(self.users.ping(), self.tokens.ping());
        users.map_err(|e| format!("user database: {e}"))?;
        tokens.map_err(|e| format!("token store: {e}"))?;
        Ok(())
    }
}
