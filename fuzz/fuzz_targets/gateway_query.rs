//! The HTTP gateway's `GET /posts` query string.
#![no_main]

use api_gateway::extract::PostsQuery;
use axum::response::IntoResponse as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    match PostsQuery::parse(query) {
        Ok(parsed) => {
            assert!(parsed.page_size >= 0);
            if let Some(author) = &parsed.author_id {
                let id = uuid::Uuid::parse_str(author).expect("a UUID");
                assert_eq!(id.hyphenated().to_string(), *author);
            }
        }
        Err(error) => {
            let status = error.into_response().status();
            assert!(status.is_client_error(), "{status}");
        }
    }
});
