//! The keys that sign and verify tokens: HS256 secrets from `AUTH_JWT_SECRET` and
//! Ed25519 keys from `AUTH_JWT_PRIVATE_KEYS`, each known by its `kid`. The first Ed25519
//! key signs if there is one, else the first secret; every key verifies. A token names
//! its key by `kid`, and the key, never the token, says which algorithm checks it.
//! Rotation: README, "Signing keys, rotation and offline verification".

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest as _, Sha256};

/// The shortest HS256 secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;

/// Hashed before a secret to make its `kid`, so that the id says nothing about the
/// secret and cannot be mistaken for a hash made for another purpose.
const SECRET_KID_DOMAIN: &[u8] = b"auth-service/jwt-secret-kid/v1\0";

/// Where a key came from, to name it in a startup error (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// The n-th secret (from 1) of AUTH_JWT_SECRET.
    Secret(usize),
    /// The n-th file (from 1) of AUTH_JWT_PRIVATE_KEYS.
    File(usize, PathBuf),
    /// A random secret made at start.
    Random,
}

impl Origin {
    /// The setting the key comes from.
    fn variable(&self) -> &'static str {
        match self {
            Self::Secret(_) | Self::Random => "AUTH_JWT_SECRET",
            Self::File(..) => "AUTH_JWT_PRIVATE_KEYS",
        }
    }

    /// The key within its setting.
    fn item(&self) -> String {
        match self {
            Self::Secret(n) => format!("secret {n}"),
            Self::File(n, path) => format!("key {n} ({})", path.display()),
            Self::Random => "the random secret".into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable(), self.item())
    }
}

/// One key: what signs with it, what checks with it, and its public half if it has one.
pub struct Key {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The Ed25519 public key; `None` for a secret, which is never published.
    public: Option<[u8; 32]>,
    origin: Origin,
}

impl Key {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// An HS256 secret, known by a truncated hash of it.
    fn secret(secret: &[u8], origin: Origin) -> Self {
        let digest = Sha256::new()
            .chain_update(SECRET_KID_DOMAIN)
            .chain_update(secret)
            .finalize();
        Self {
            kid: URL_SAFE_NO_PAD.encode(&digest[..16]),
            algorithm: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            public: None,
            origin,
        }
    }

    /// An Ed25519 key, known by its RFC 7638 JWK thumbprint.
    fn ed25519(signing: &SigningKey, origin: Origin) -> Result<Self, String> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|_| format!("{origin}: cannot be encoded as PKCS#8"))?;
        let public = signing.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638: the required members, in lexicographic order, without whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let decoding = DecodingKey::from_ed_components(&x)
            .map_err(|_| format!("{origin}: its public key cannot be used"))?;
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes())),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding,
            public: Some(public),
            origin,
        })
    }
}

/// Every key that verifies, by `kid`, and the one that signs.
pub struct KeySet {
    /// Signing key first, in the order configured.
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    jwks: String,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(Key::kid).collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// The keys of AUTH_JWT_PRIVATE_KEYS (files read here: call off the async runtime)
    /// and of AUTH_JWT_SECRET, Ed25519 keys first. Errors are one line naming the
    /// variable and the item, never a secret.
    pub fn load(secrets: &[&[u8]], key_files: &[PathBuf]) -> Result<Self, String> {
        let mut keys = Vec::with_capacity(key_files.len() + secrets.len());
        for (n, path) in key_files.iter().enumerate() {
            keys.push(read_ed25519(n + 1, path)?);
        }
        for (n, secret) in secrets.iter().enumerate() {
            let origin = Origin::Secret(n + 1);
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "{origin} is shorter than {MIN_SECRET_BYTES} bytes ({} bytes)",
                    secret.len()
                ));
            }
            keys.push(Key::secret(secret, origin));
        }
        Self::new(keys)
    }

    /// One secret that signs and verifies (a random one, or in unit tests).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::from_keys(vec![Key::secret(secret, Origin::Random)])
    }

    fn from_keys(keys: Vec<Key>) -> Self {
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (key.kid.clone(), i))
            .collect();
        let jwks = jwks(&keys);
        Self { keys, by_kid, jwks }
    }

    fn new(keys: Vec<Key>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("AUTH_JWT_SECRET and AUTH_JWT_PRIVATE_KEYS list no key".into());
        }
        let mut seen: HashMap<&str, &Origin> = HashMap::new();
        for key in &keys {
            if let Some(first) = seen.insert(&key.kid, &key.origin) {
                let first = if first.variable() == key.origin.variable() {
                    first.item()
                } else {
                    first.to_string()
                };
                return Err(format!(
                    "{} is the same key as {first} (kid {})",
                    key.origin, key.kid
                ));
            }
        }
        Ok(Self::from_keys(keys))
    }

    /// The key new tokens are signed with.
    pub fn signer(&self) -> &Key {
        &self.keys[0]
    }

    /// The key named `kid`, if it is one of ours.
    pub fn verifier(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// The public keys as a JWK Set (RFC 7517), JSON text; secrets are never listed.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }
}

fn read_ed25519(n: usize, path: &Path) -> Result<Key, String> {
    let origin = Origin::File(n, path.to_owned());
    let pem =
        std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot be read: {e}"))?;
    parse_ed25519(&pem, origin)
}

fn parse_ed25519(pem: &str, origin: Origin) -> Result<Key, String> {
    let signing = SigningKey::from_pkcs8_pem(pem).map_err(|_| {
        format!(
            "{origin} is not an Ed25519 private key in PEM (PKCS#8, as `openssl genpkey -algorithm ed25519` writes)"
        )
    })?;
    Key::ed25519(&signing, origin)
}

/// Keys for unit tests: the Ed25519 keys of `pems` (the first signs), then `secrets`.
#[cfg(test)]
pub(crate) fn keys_for_tests(pems: &[&str], secrets: &[&[u8]]) -> KeySet {
    let mut keys: Vec<Key> = pems
        .iter()
        .enumerate()
        .map(|(n, pem)| parse_ed25519(pem, Origin::File(n + 1, "test.pem".into())).expect("pem"))
        .collect();
    keys.extend(
        secrets
            .iter()
            .enumerate()
            .map(|(n, secret)| Key::secret(secret, Origin::Secret(n + 1))),
    );
    KeySet::new(keys).expect("distinct keys")
}

fn jwks(keys: &[Key]) -> String {
    let public: Vec<serde_json::Value> = keys
        .iter()
        .filter_map(|key| {
            let x = key.public?;
            Some(serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(x),
                "kid": key.kid,
                "alg": "EdDSA",
                "use": "sig",
            }))
        })
        .collect();
    serde_json::json!({ "keys": public }).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 8037 appendix A.1: an Ed25519 private key, and A.3: its JWK thumbprint.
    pub(crate) const RFC8037_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
        -----END PRIVATE KEY-----\n";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{}-{name}", uuid::Uuid::now_v7().simple()));
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    const A: &[u8] = b"secret-a-secret-a-secret-a-secret-a";
    const B: &[u8] = b"secret-b-secret-b-secret-b-secret-b";

    #[test]
    fn an_ed25519_key_is_known_by_its_rfc7638_thumbprint_and_published() {
        let path = temp_file("rfc8037.pem", RFC8037_PEM);
        let keys = KeySet::load(&[A], std::slice::from_ref(&path)).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(keys.signer().kid(), RFC8037_THUMBPRINT);
        assert_eq!(keys.signer().algorithm(), Algorithm::EdDSA);
        let jwks: serde_json::Value = serde_json::from_str(keys.jwks()).unwrap();
        assert_eq!(
            jwks,
            serde_json::json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "x": RFC8037_X,
                "kid": RFC8037_THUMBPRINT, "alg": "EdDSA", "use": "sig",
            }]})
        );
    }

    #[test]
    fn secrets_are_never_published_and_their_kid_is_stable_and_reveals_nothing() {
        let keys = KeySet::load(&[A, B], &[]).unwrap();
        assert_eq!(keys.jwks(), r#"{"keys":[]}"#);
        let again = KeySet::load(&[B, A], &[]).unwrap();
        assert_eq!(
            keys.signer().kid(),
            again.verifier(keys.signer().kid()).unwrap().kid()
        );
        assert_ne!(keys.signer().kid(), again.signer().kid());
        let kid = keys.signer().kid();
        assert_eq!(kid.len(), 22);
        assert!(!kid.contains("secret"));
        assert_ne!(kid, URL_SAFE_NO_PAD.encode(&Sha256::digest(A)[..16]));
    }

    #[test]
    fn the_first_ed25519_key_signs_even_when_secrets_are_listed() {
        let path = temp_file("signer.pem", RFC8037_PEM);
        let keys = KeySet::load(&[A], std::slice::from_ref(&path)).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(keys.signer().algorithm(), Algorithm::EdDSA);
        let secret_kid = KeySet::load(&[A], &[]).unwrap().signer().kid().to_owned();
        assert_eq!(
            keys.verifier(&secret_kid).map(Key::algorithm),
            Some(Algorithm::HS256)
        );
    }

    #[test]
    fn a_short_secret_is_refused_by_position_without_showing_it() {
        let error = KeySet::load(&[A, b"short-secret-value"], &[]).unwrap_err();
        assert!(error.starts_with("AUTH_JWT_SECRET: secret 2 "), "{error}");
        assert!(!error.contains("short-secret-value"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn a_key_listed_twice_is_refused_naming_both() {
        let error = KeySet::load(&[A, B, A], &[]).unwrap_err();
        assert!(
            error.contains("secret 3") && error.contains("secret 1"),
            "{error}"
        );
        assert!(!error.contains("secret-a"), "{error}");
    }

    #[test]
    fn an_unreadable_or_wrong_key_file_is_refused_naming_its_path() {
        let missing = std::env::temp_dir().join("no-such-key.pem");
        let error = KeySet::load(&[], std::slice::from_ref(&missing)).unwrap_err();
        assert!(
            error.starts_with("AUTH_JWT_PRIVATE_KEYS: key 1 (")
                && error.contains("no-such-key.pem"),
            "{error}"
        );
        let not_a_key = temp_file(
            "garbage.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let error = KeySet::load(&[], &[missing.clone(), not_a_key.clone()][1..]).unwrap_err();
        let _ = std::fs::remove_file(&not_a_key);
        assert!(error.contains("is not an Ed25519 private key"), "{error}");
        assert!(!error.contains('\n'));
    }
}
