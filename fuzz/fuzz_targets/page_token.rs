//! ListPosts `page_token` (and the request around it): a token is ours only if we would
//! have issued it, byte for byte.
#![no_main]

use blog_service::domain::page::{ListQuery, PageToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(decoded) = PageToken::decode(token) {
        assert_eq!(decoded.encode(), token, "accepted a token we never issue");
        assert_eq!(PageToken::decode(&decoded.encode()), Some(decoded));
    }
    let _ = ListQuery::parse(0, token, None);
    let _ = ListQuery::parse(-1, token, Some(token));
    let _ = ListQuery::parse(i32::MAX, "", Some(token));
});
