//! Paired JWTs (docs/ARCHITECTURE.md, "Tokens and sessions"): an access token and a refresh token of one session, each
//! naming its twin. HS256 is pinned at verification, the two kinds are told apart by the
//! header `typ` and by the `token_use` claim, and expiry has no leeway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ACCESS_TYP: &str = "at+jwt";
const REFRESH_TYP: &str = "rt+jwt";

/// Which of the pair a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    Access,
    Refresh,
}

impl TokenUse {
    fn typ(self) -> &'static str {
        match self {
            Self::Access => ACCESS_TYP,
            Self::Refresh => REFRESH_TYP,
        }
    }
}

/// The claims of either token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: Uuid,
    /// The session id.
    pub sid: Uuid,
    /// This token's id.
    pub jti: Uuid,
    /// The id of the other token of the pair.
    pub twin: Uuid,
    pub token_use: TokenUse,
    pub iat: u64,
    pub exp: u64,
}

/// A freshly signed pair and the facts the token store keeps about it.
#[derive(Debug, Clone)]
pub struct IssuedPair {
    pub access_token: String,
    pub refresh_token: String,
    pub access: Claims,
    pub refresh: Claims,
}

/// Signs and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct TokenCodec {
    issuer: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCodec")
            .field("issuer", &self.issuer)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, and the same in milliseconds.
pub fn now() -> (u64, u128) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.as_millis())
}

impl TokenCodec {
    pub fn new(secret: &[u8], issuer: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.validate_exp = true;
        Self {
            issuer: issuer.to_owned(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Signs a new pair for `session_id` of `user_id`.
    pub fn issue_pair(&self, user_id: Uuid, session_id: Uuid) -> anyhow::Result<IssuedPair> {
        let (iat, _) = now();
        let access_id = Uuid::now_v7();
        let refresh_id = Uuid::now_v7();
        let claims = |token_use, jti, twin, ttl: Duration| Claims {
            iss: self.issuer.clone(),
            sub: user_id,
            sid: session_id,
            jti,
            twin,
            token_use,
            iat,
            exp: iat + ttl.as_secs(),
        };
        let access = claims(TokenUse::Access, access_id, refresh_id, self.access_ttl);
        let refresh = claims(TokenUse::Refresh, refresh_id, access_id, self.refresh_ttl);
        Ok(IssuedPair {
            access_token: self.sign(&access)?,
            refresh_token: self.sign(&refresh)?,
            access,
            refresh,
        })
    }

    fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(claims.token_use.typ().to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Verifies `token` as a token of kind `expected`: signature (HS256 only), issuer,
    /// expiry (dead from its `exp` second on, RFC 7519), header `typ` and claim.
    /// Any failure is `None`: the caller only needs to know the token is not good.
    pub fn verify(&self, token: &str, expected: TokenUse) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let claims = data.claims;
        if data.header.typ.as_deref() != Some(expected.typ()) || claims.token_use != expected {
            return None;
        }
        let (_, now_ms) = now();
        if now_ms >= u128::from(claims.exp) * 1000 {
            return None;
        }
        Some(claims)
    }
}

/// Milliseconds until the token whose `exp` is `exp` dies (at least 1, for a TTL).
pub fn remaining_ms(exp: u64) -> u64 {
    let (_, now_ms) = now();
    let end = u128::from(exp) * 1000;
    u64::try_from(end.saturating_sub(now_ms))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn codec() -> TokenCodec {
        TokenCodec::new(
            b"0123456789abcdef0123456789abcdef",
            "auth-service",
            Duration::from_secs(900),
            Duration::from_secs(30 * 86_400),
        )
    }

    #[test]
    fn a_pair_names_its_twins_and_shares_user_and_session() {
        let user = Uuid::now_v7();
        let session = Uuid::now_v7();
        let pair = codec().issue_pair(user, session).unwrap();
        assert_eq!(pair.access.twin, pair.refresh.jti);
        assert_eq!(pair.refresh.twin, pair.access.jti);
        assert_eq!(pair.access.sid, session);
        assert_eq!(pair.refresh.sub, user);
        assert_eq!(pair.access.exp - pair.access.iat, 900);
        assert_eq!(pair.refresh.exp - pair.refresh.iat, 30 * 86_400);
    }

    #[test]
    fn each_token_verifies_only_as_its_own_kind() {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        assert_eq!(
            codec.verify(&pair.access_token, TokenUse::Access),
            Some(pair.access.clone())
        );
        assert_eq!(
            codec.verify(&pair.refresh_token, TokenUse::Refresh),
            Some(pair.refresh)
        );
        assert!(
            codec
                .verify(&pair.access_token, TokenUse::Refresh)
                .is_none()
        );
        assert!(
            codec
                .verify(&pair.refresh_token, TokenUse::Access)
                .is_none()
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let other = TokenCodec::new(
            b"another-secret-another-secret-xx",
            "auth-service",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        );
        let pair = other.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        assert!(
            codec()
                .verify(&pair.access_token, TokenUse::Access)
                .is_none()
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let payload = pair.access_token.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        for forged in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(codec.verify(&forged, TokenUse::Access).is_none());
        }
    }

    #[test]
    fn a_payload_changed_after_signing_is_refused() {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let mut parts: Vec<String> = pair.access_token.split('.').map(str::to_owned).collect();
        let mut claims = pair.access.clone();
        claims.sub = Uuid::now_v7();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert!(codec.verify(&parts.join("."), TokenUse::Access).is_none());
    }

    #[test]
    fn truncated_or_garbage_tokens_are_refused() {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let token = &pair.access_token;
        for bad in [
            &token[..token.len() - 3],
            "",
            "garbage",
            "a.b.c",
            &format!("Bearer {token}"),
        ] {
            assert!(
                codec.verify(bad, TokenUse::Access).is_none(),
                "{bad} verified"
            );
        }
    }

    #[test]
    fn a_token_is_dead_once_its_exp_second_has_come() {
        let codec = codec();
        let (now_s, _) = now();
        let claims = Claims {
            iss: "auth-service".into(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            jti: Uuid::now_v7(),
            twin: Uuid::now_v7(),
            token_use: TokenUse::Access,
            iat: now_s - 10,
            exp: now_s,
        };
        let token = codec.sign(&claims).unwrap();
        assert!(codec.verify(&token, TokenUse::Access).is_none());
    }
}
