//! A bearer token as Introspect and every authenticated call read it: the JWT header
//! (`kid`, `alg`, `typ`), the signature and the claims, for both kinds of token.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use auth_service::{
    keys::KeySet,
    tokens::{TokenCodec, TokenUse},
};
use libfuzzer_sys::fuzz_target;

static CODEC: LazyLock<TokenCodec> = LazyLock::new(|| {
    TokenCodec::new(
        KeySet::from_secret(b"fuzz-secret-fuzz-secret-fuzz-secret!"),
        "auth-service",
        Duration::from_secs(900),
        Duration::from_secs(3600),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for expected in [TokenUse::Access, TokenUse::Refresh] {
        if let Some(claims) = CODEC.verify(token, expected) {
            // Only a token we signed verifies, and a random input is not one.
            panic!("{token:?} verified as {expected:?}: {claims:?}");
        }
    }
    let _ = CODEC.reissued(token.to_owned(), token.to_owned());
});
