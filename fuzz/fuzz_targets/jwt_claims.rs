//! JWT header and claims decoding behind a valid signature: the input is a header and a
//! payload (split at the first newline), signed here with the codec's own secret, so the
//! fuzzer reaches the claims checks that a forged signature never does. The first byte
//! chooses whether the header's `kid` is replaced with the key's.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use auth_service::{
    keys::KeySet,
    tokens::{TokenCodec, TokenUse, now},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";

static CODEC: LazyLock<TokenCodec> = LazyLock::new(|| {
    TokenCodec::new(
        KeySet::from_secret(SECRET),
        "auth-service",
        Duration::from_secs(900),
        Duration::from_secs(3600),
    )
});

static KID: LazyLock<String> =
    LazyLock::new(|| KeySet::from_secret(SECRET).signer().kid().to_owned());

fn sign(message: &str) -> String {
    jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("HMAC")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (header, payload) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let mut header = header.to_vec();
    if flags & 1 == 1 {
        if let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(&header) {
            object.insert("kid".into(), KID.as_str().into());
            header = serde_json::to_vec(&object).expect("json");
        }
    }
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let token = format!("{message}.{}", sign(&message));
    for expected in [TokenUse::Access, TokenUse::Refresh] {
        if let Some(claims) = CODEC.verify(&token, expected) {
            assert_eq!(claims.token_use, expected);
            assert_eq!(claims.iss, "auth-service");
            assert!(
                u128::from(claims.exp) * 1000 > now().1,
                "expired: {claims:?}"
            );
            let header: serde_json::Value = serde_json::from_slice(&header).expect("a header");
            assert_eq!(header["alg"], "HS256", "{header}");
            assert_eq!(header["kid"], KID.as_str(), "{header}");
        }
    }
});
