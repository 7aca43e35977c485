//! Paired JWTs (docs/ARCHITECTURE.md, "Tokens and sessions"): an access token and a
//! refresh token of one session, each naming its twin. A token is checked with the key
//! its `kid` names and that key's algorithm (see `keys`), the two kinds are told apart by
//! the header `typ` and by the `token_use` claim, and expiry has no leeway.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::KeySet;

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

/// Signs tokens with the signing key of a `KeySet` and verifies them with any of its keys.
#[derive(Clone, Debug)]
pub struct TokenCodec {
    issuer: String,
    keys: Arc<KeySet>,
    /// The checks of a live token, one per algorithm a key can have (made once: they
    /// are sets, and Introspect runs them on every call).
    live: Arc<[(Algorithm, Validation); 2]>,
    checked: Arc<CheckedSignatures>,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

/// EdDSA tokens whose signature and claims were already checked, by their exact text.
/// An Ed25519 check costs tens of times an HMAC, and Introspect sees the same token
/// again and again; expiry is still checked on every call (by `verify`). Bounded: when
/// full it is emptied, and the next checks refill it.
#[derive(Debug, Default)]
struct CheckedSignatures(Mutex<HashMap<Box<str>, Claims>>);

/// About 500 bytes an entry: a few MiB at most.
const CHECKED_SIGNATURES_MAX: usize = 8192;

impl CheckedSignatures {
    fn get(&self, token: &str, expected: TokenUse) -> Option<Claims> {
        let checked = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A token is only kept after its `typ` matched its `token_use`.
        checked
            .get(token)
            .filter(|c| c.token_use == expected)
            .cloned()
    }

    fn keep(&self, token: &str, claims: &Claims) {
        let mut checked = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.len() >= CHECKED_SIGNATURES_MAX {
            checked.clear();
        }
        checked.insert(token.into(), claims.clone());
    }
}

/// Seconds since the Unix epoch, and the same in milliseconds.
pub fn now() -> (u64, u128) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.as_millis())
}

/// What a token must satisfy besides its signature: only `algorithm`, the issuer, the
/// registered claims, and (if `check_exp`) an `exp` still to come, with no leeway.
fn validation(algorithm: Algorithm, issuer: &str, check_exp: bool) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = 0;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    validation.validate_exp = check_exp;
    validation
}

impl TokenCodec {
    pub fn new(keys: KeySet, issuer: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            issuer: issuer.to_owned(),
            keys: Arc::new(keys),
            live: Arc::new(
                [Algorithm::HS256, Algorithm::EdDSA]
                    .map(|algorithm| (algorithm, validation(algorithm, issuer, true))),
            ),
            checked: Arc::default(),
            access_ttl,
            refresh_ttl,
        }
    }

    /// The public keys that verify tokens, as a JWK Set (JSON text).
    pub fn jwks(&self) -> &str {
        self.keys.jwks()
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
        let key = self.keys.signer();
        let mut header = Header::new(key.algorithm());
        header.typ = Some(claims.token_use.typ().to_owned());
        header.kid = Some(key.kid().to_owned());
        Ok(jsonwebtoken::encode(&header, claims, key.encoding())?)
    }

    /// Verifies `token` as a token of kind `expected`: the key its `kid` names (none, or
    /// an unknown one, fails), that key's algorithm and no other, signature, issuer,
    /// expiry (dead from its `exp` second on, RFC 7519), header `typ` and claim.
    /// Any failure is `None`: the caller only needs to know the token is not good.
    pub fn verify(&self, token: &str, expected: TokenUse) -> Option<Claims> {
        let claims = self.verify_signed(token, expected, true)?;
        let (_, now_ms) = now();
        if now_ms >= u128::from(claims.exp) * 1000 {
            return None;
        }
        Some(claims)
    }

    fn verify_signed(&self, token: &str, expected: TokenUse, check_exp: bool) -> Option<Claims> {
        if let Some(claims) = self.checked.get(token, expected) {
            return Some(claims);
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.keys.verifier(header.kid.as_deref()?)?;
        if header.alg != key.algorithm() {
            return None;
        }
        let live = self
            .live
            .iter()
            .find(|(algorithm, _)| *algorithm == key.algorithm());
        let data = match live {
            Some((_, validation)) if check_exp => {
                jsonwebtoken::decode::<Claims>(token, key.decoding(), validation)
            }
            _ => jsonwebtoken::decode::<Claims>(
                token,
                key.decoding(),
                &validation(key.algorithm(), &self.issuer, check_exp),
            ),
        }
        .ok()?;
        let claims = data.claims;
        if data.header.typ.as_deref() != Some(expected.typ()) || claims.token_use != expected {
            return None;
        }
        if key.algorithm() == Algorithm::EdDSA {
            self.checked.keep(token, &claims);
        }
        Some(claims)
    }

    /// The pair a rotation issued, handed out again within the refresh retry window:
    /// both tokens are checked as ours; the access token may have expired since (when it
    /// lives shorter than the window), the refresh token may not.
    pub fn reissued(&self, access_token: String, refresh_token: String) -> Option<IssuedPair> {
        let refresh = self.verify(&refresh_token, TokenUse::Refresh)?;
        let access = self.verify_signed(&access_token, TokenUse::Access, false)?;
        (access.twin == refresh.jti && refresh.twin == access.jti).then_some(IssuedPair {
            access_token,
            refresh_token,
            access,
            refresh,
        })
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
    use crate::keys::{keys_for_tests, tests::RFC8037_PEM};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn codec() -> TokenCodec {
        TokenCodec::new(
            KeySet::from_secret(b"0123456789abcdef0123456789abcdef"),
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
            KeySet::from_secret(b"another-secret-another-secret-xx"),
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn ed25519_codec(secrets: &[&[u8]]) -> TokenCodec {
        TokenCodec::new(
            keys_for_tests(&[RFC8037_PEM], secrets),
            "auth-service",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
    }

    /// `claims` under the literal `header`, signed by HS256 with `key`.
    fn hs256(header: &str, claims: &Claims, key: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(key),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }

    fn header_of(token: &str) -> serde_json::Value {
        let header = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
    }

    #[test]
    fn every_token_names_its_key_and_an_ed25519_key_signs_with_eddsa() {
        let codec = ed25519_codec(&[SECRET]);
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let header = header_of(&pair.access_token);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(header["typ"], "at+jwt");
        assert!(codec.verify(&pair.access_token, TokenUse::Access).is_some());
    }

    #[test]
    fn tokens_of_a_secret_that_only_verifies_are_still_accepted() {
        let old = codec();
        let pair = old.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let rotated = ed25519_codec(&[SECRET]);
        assert_eq!(
            rotated.verify(&pair.access_token, TokenUse::Access),
            Some(pair.access)
        );
        let dropped = ed25519_codec(&[]);
        assert!(
            dropped
                .verify(&pair.refresh_token, TokenUse::Refresh)
                .is_none()
        );
    }

    #[test]
    fn an_eddsa_token_checked_before_still_dies_at_its_exp_and_keeps_its_kind() {
        let codec = ed25519_codec(&[]);
        let (now_s, _) = now();
        let mut claims = codec
            .issue_pair(Uuid::now_v7(), Uuid::now_v7())
            .unwrap()
            .access;
        claims.exp = now_s + 1;
        let token = codec.sign(&claims).unwrap();
        assert!(codec.verify(&token, TokenUse::Access).is_some());
        assert!(codec.verify(&token, TokenUse::Refresh).is_none());
        std::thread::sleep(Duration::from_millis(
            u64::try_from(u128::from(claims.exp) * 1000 - now().1).unwrap() + 20,
        ));
        assert!(codec.verify(&token, TokenUse::Access).is_none());
    }

    #[test]
    fn a_token_without_kid_or_with_an_unknown_kid_is_refused() {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let no_kid = hs256(r#"{"alg":"HS256","typ":"at+jwt"}"#, &pair.access, SECRET);
        assert!(codec.verify(&no_kid, TokenUse::Access).is_none());
        let unknown = hs256(
            r#"{"alg":"HS256","typ":"at+jwt","kid":"nobody"}"#,
            &pair.access,
            SECRET,
        );
        assert!(codec.verify(&unknown, TokenUse::Access).is_none());
        // The same construction with the right kid does verify: the refusals above are
        // for the kid alone.
        let kid = header_of(&pair.access_token)["kid"]
            .as_str()
            .unwrap()
            .to_owned();
        let good = hs256(
            &format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
            &pair.access,
            SECRET,
        );
        assert!(codec.verify(&good, TokenUse::Access).is_some());
    }

    #[test]
    fn an_hs256_token_keyed_with_the_public_key_is_refused() {
        let codec = ed25519_codec(&[]);
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let kid = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
        let public = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        for key in [public.as_slice(), kid.as_bytes()] {
            let forged = hs256(
                &format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
                &pair.access,
                key,
            );
            assert!(codec.verify(&forged, TokenUse::Access).is_none());
        }
    }

    #[test]
    fn an_ed25519_signature_by_another_key_under_a_known_kid_is_refused() {
        let codec = ed25519_codec(&[]);
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let other = SigningKey::from_bytes(&[7; 32]);
        let (header, payload, _) = {
            let mut parts = pair.access_token.split('.');
            (parts.next().unwrap(), parts.next().unwrap(), parts.next())
        };
        let message = format!("{header}.{payload}");
        let signature = other.sign(message.as_bytes()).to_bytes();
        let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature));
        assert!(codec.verify(&forged, TokenUse::Access).is_none());
    }

    #[test]
    fn a_replayed_pair_is_read_back_only_if_it_is_ours_and_twinned() {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let again = codec
            .reissued(pair.access_token.clone(), pair.refresh_token.clone())
            .unwrap();
        assert_eq!(again.access, pair.access);
        assert_eq!(again.refresh_token, pair.refresh_token);
        let other = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        assert!(
            codec
                .reissued(pair.access_token, other.refresh_token)
                .is_none()
        );
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
