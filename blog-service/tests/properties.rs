//! Properties of what blog-service reads from the outside world: post titles and
//! content (docs/ARCHITECTURE.md), UpdatePost and ListPosts requests, and page tokens. Whatever
//! comes in, nothing panics; what is accepted follows the rules; a page token decodes
//! only as we issued it.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use blog_service::domain::{
    Content, NewPost, Title,
    page::{Cursor, ListQuery, PageToken},
    parse_post_update,
};
use chrono::DateTime;
use proptest::prelude::*;
use uuid::Uuid;

/// Text of every kind, white space and NUL included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
        "[ \t\n\u{a0}\u{3000}]{0,5}[a-z\u{0}]{0,10}[ \t\n\u{2003}]{0,5}",
        "\\PC{0,300}",
    ]
}

/// `c` repeated about as often as a length limit allows, on both sides of it.
fn around(limit: usize) -> impl Strategy<Value = String> {
    (any::<char>(), (limit - 3)..=(limit + 3), "[ \t]{0,2}")
        .prop_map(|(c, n, pad)| format!("{pad}{}{pad}", c.to_string().repeat(n)))
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn page_token() -> impl Strategy<Value = PageToken> {
    // Any time within ±10,000 years, to the microsecond.
    (
        -315_000_000_000_000_000i64..315_000_000_000_000_000,
        uuid(),
        proptest::option::of(uuid()),
    )
        .prop_map(|(micros, id, author_id)| PageToken {
            after: Cursor {
                create_time: DateTime::from_timestamp_micros(micros).expect("in range"),
                id,
            },
            author_id,
        })
}

fn title_ok(raw: &str) -> bool {
    let trimmed = raw.trim();
    (1..=200).contains(&trimmed.chars().count()) && !trimmed.contains('\0')
}

fn content_ok(raw: &str) -> bool {
    (1..=50_000).contains(&raw.chars().count()) && !raw.contains('\0')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_title_is_accepted_exactly_when_it_follows_the_rules(
        raw in prop_oneof![text(), around(200)],
    ) {
        match Title::parse(&raw) {
            Ok(title) => {
                prop_assert!(title_ok(&raw));
                prop_assert_eq!(title.as_str(), raw.trim());
            }
            Err(_) => prop_assert!(!title_ok(&raw)),
        }
    }

    #[test]
    fn content_is_accepted_exactly_when_it_follows_the_rules(
        raw in prop_oneof![text(), around(50_000)],
    ) {
        match Content::parse(&raw) {
            Ok(content) => {
                prop_assert!(content_ok(&raw));
                prop_assert_eq!(content.as_str(), raw.as_str());
            }
            Err(_) => prop_assert!(!content_ok(&raw)),
        }
    }

    #[test]
    fn a_new_post_reports_exactly_the_fields_that_fail(title in text(), content in text()) {
        let mut failing = Vec::new();
        if !title_ok(&title) {
            failing.push("title");
        }
        if !content_ok(&content) {
            failing.push("content");
        }
        match NewPost::parse(&title, &content) {
            Ok(post) => {
                prop_assert!(failing.is_empty());
                prop_assert_eq!(post.title.as_str(), title.trim());
                prop_assert_eq!(post.content.as_str(), content.as_str());
            }
            Err(violations) => {
                let fields: Vec<&str> = violations.iter().map(|v| v.field).collect();
                prop_assert_eq!(fields, failing);
            }
        }
    }

    #[test]
    fn an_accepted_update_has_a_valid_id_and_sets_a_valid_field(
        id in prop_oneof![text(), uuid().prop_map(|id| id.to_string())],
        title in proptest::option::of(text()),
        content in proptest::option::of(text()),
    ) {
        if let Ok((parsed, change)) = parse_post_update(&id, title.as_deref(), content.as_deref()) {
            prop_assert_eq!(Some(parsed), Uuid::try_parse(&id).ok());
            prop_assert!(change.title.is_some() || change.content.is_some());
            prop_assert_eq!(change.title.is_some(), title.is_some());
            prop_assert_eq!(change.content.is_some(), content.is_some());
            if let (Some(parsed), Some(raw)) = (&change.title, &title) {
                prop_assert_eq!(parsed.as_str(), raw.trim());
            }
        }
    }

    #[test]
    fn arbitrary_text_is_never_a_page_token(raw in prop_oneof![text(), "[A-Za-z0-9_-]{0,120}"]) {
        prop_assert_eq!(PageToken::decode(&raw), None);
    }

    #[test]
    fn bytes_we_did_not_checksum_are_never_a_page_token(
        bytes in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        prop_assert_eq!(PageToken::decode(&URL_SAFE_NO_PAD.encode(&bytes)), None);
    }

    #[test]
    fn every_page_token_we_issue_decodes_to_itself(token in page_token()) {
        let encoded = token.encode();
        prop_assert!(encoded.len() <= 96);
        prop_assert_eq!(PageToken::decode(&encoded), Some(token));
    }

    #[test]
    fn a_changed_page_token_is_refused(
        token in page_token(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0..3u8,
    ) {
        let mut bytes = token.encode().into_bytes();
        match how {
            0 => { let i = at.index(bytes.len()); bytes[i] = byte; }
            1 => { let i = at.index(bytes.len() + 1); bytes.insert(i, byte); }
            _ => { let i = at.index(bytes.len()); bytes.remove(i); }
        }
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(changed != token.encode());
        prop_assert_eq!(PageToken::decode(&changed), None);
    }

    #[test]
    fn a_list_query_never_panics_and_bounds_its_page_size(
        page_size in any::<i32>(),
        page_token in prop_oneof![text(), page_token().prop_map(|t| t.encode())],
        author_id in proptest::option::of(prop_oneof![text(), uuid().prop_map(|id| id.to_string())]),
    ) {
        match ListQuery::parse(page_size, &page_token, author_id.as_deref()) {
            Ok(query) => {
                prop_assert!(page_size >= 0);
                let expected = if page_size == 0 { 20 } else { page_size.min(100) };
                prop_assert_eq!(i64::try_from(query.page_size).ok(), Some(i64::from(expected)));
                prop_assert_eq!(query.author_id, author_id.as_deref().and_then(|a| Uuid::try_parse(a).ok()));
            }
            Err(violations) => prop_assert!(!violations.is_empty()),
        }
    }
}
