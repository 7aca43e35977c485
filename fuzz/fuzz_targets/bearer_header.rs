//! The `authorization` metadata of every authenticated call: `Bearer <token>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pair_common::grpc::bearer_token;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = bearer_token(header) {
        assert!(!token.is_empty(), "an empty token from {header:?}");
        assert_eq!(token, token.trim(), "an untrimmed token from {header:?}");
        let (scheme, rest) = header.split_once(' ').expect("a scheme and a token");
        assert!(scheme.eq_ignore_ascii_case("bearer"), "{header:?}");
        assert!(rest.contains(token), "{header:?}");
    }
});
