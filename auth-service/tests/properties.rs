//! Properties of what auth-service reads from the outside world: the token verifier
//! and the validators of the domain (docs/ARCHITECTURE.md). Whatever comes in, nothing panics; a token
//! verifies only as it was signed; what a validator accepts follows the rules.

use std::time::Duration;

use auth_service::{
    domain::{Email, Password, Username, parse_registration},
    tokens::{TokenCodec, TokenUse},
};
use proptest::prelude::*;
use uuid::Uuid;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn codec() -> TokenCodec {
    TokenCodec::new(
        SECRET,
        "auth-service",
        Duration::from_secs(900),
        Duration::from_secs(30 * 86_400),
    )
}

/// Text of every kind: anything printable, control characters included, and strings
/// near the shapes the parsers look for.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..64).prop_map(String::from_iter),
        "[A-Za-z0-9._@<>+ \t-]{0,40}",
        "[A-Za-z0-9._-]{0,40}@[A-Za-z0-9.-]{0,40}",
        "\\PC{0,300}",
    ]
}

/// Strings shaped like a JWT: three base64url segments.
fn jwt_shaped() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,300}\\.[A-Za-z0-9_-]{0,90}"
}

/// One change to a token: replace, insert or delete the byte at an index.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(token: &str, mutation: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    match mutation {
        Mutation::Replace(at, byte) => {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        Mutation::Insert(at, byte) => {
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, *byte);
        }
        Mutation::Delete(at) => {
            let at = at.index(bytes.len());
            bytes.remove(at);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_verifies(token in prop_oneof![text(), jwt_shaped()]) {
        let codec = codec();
        prop_assert!(codec.verify(&token, TokenUse::Access).is_none());
        prop_assert!(codec.verify(&token, TokenUse::Refresh).is_none());
    }

    #[test]
    fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let token = String::from_utf8_lossy(&bytes);
        let codec = codec();
        prop_assert!(codec.verify(&token, TokenUse::Access).is_none());
        prop_assert!(codec.verify(&token, TokenUse::Refresh).is_none());
    }

    #[test]
    fn a_real_header_and_payload_with_another_signature_never_verify(
        signature in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).expect("issue");
        let (signed, real) = pair.access_token.rsplit_once('.').expect("three segments");
        let forged = URL_SAFE_NO_PAD.encode(&signature);
        prop_assume!(forged != real);
        let token = format!("{signed}.{forged}");
        prop_assert!(codec.verify(&token, TokenUse::Access).is_none());
    }

    #[test]
    fn a_changed_byte_anywhere_in_a_valid_token_breaks_it(
        change in mutation(),
        refresh in any::<bool>(),
    ) {
        let codec = codec();
        let pair = codec.issue_pair(Uuid::now_v7(), Uuid::now_v7()).expect("issue");
        let (token, kind) = if refresh {
            (pair.refresh_token, TokenUse::Refresh)
        } else {
            (pair.access_token, TokenUse::Access)
        };
        prop_assert!(codec.verify(&token, kind).is_some());
        let mutated = mutate(&token, &change);
        prop_assume!(mutated != token);
        prop_assert!(
            codec.verify(&mutated, TokenUse::Access).is_none(),
            "{mutated} verified as an access token"
        );
        prop_assert!(
            codec.verify(&mutated, TokenUse::Refresh).is_none(),
            "{mutated} verified as a refresh token"
        );
    }

    #[test]
    fn an_accepted_username_follows_the_rules(raw in text()) {
        if let Ok(username) = Username::parse(&raw) {
            prop_assert_eq!(username.as_str(), raw.as_str());
            prop_assert!((3..=32).contains(&raw.chars().count()));
            prop_assert!(raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            prop_assert!(raw.starts_with(|c: char| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn every_username_that_follows_the_rules_is_accepted(
        raw in "[A-Za-z0-9][A-Za-z0-9._-]{2,31}",
    ) {
        prop_assert!(Username::parse(&raw).is_ok(), "{raw} was refused");
    }

    #[test]
    fn an_accepted_email_follows_the_rules(raw in text()) {
        if let Ok(email) = Email::parse(&raw) {
            prop_assert_eq!(email.as_str(), raw.as_str());
            prop_assert!((3..=254).contains(&raw.chars().count()));
            prop_assert!(raw.contains('@'));
            prop_assert!(!raw.contains(['<', '>']));
            prop_assert_eq!(raw.trim(), raw.as_str());
        }
    }

    #[test]
    fn a_plain_address_is_accepted(raw in "[a-z0-9]{1,30}@[a-z0-9]{1,30}\\.[a-z]{2,6}") {
        prop_assert!(Email::parse(&raw).is_ok(), "{raw} was refused");
    }

    #[test]
    fn an_accepted_password_follows_the_rules(raw in text(), username in text()) {
        if Password::parse(&raw, Some(&username)).is_ok() {
            prop_assert!((8..=1024).contains(&raw.chars().count()));
            if !username.is_empty() {
                prop_assert!(!raw.to_lowercase().contains(&username.to_lowercase()));
            }
        }
    }

    #[test]
    fn password_length_counts_characters(
        c in any::<char>().prop_filter("a character", |c| !c.is_whitespace()),
        length in 0usize..1100,
    ) {
        let raw = c.to_string().repeat(length);
        let accepted = Password::parse(&raw, None).is_ok();
        if !(8..=1024).contains(&length) {
            prop_assert!(!accepted, "{length} characters were accepted");
        }
    }

    #[test]
    fn a_registration_reports_exactly_the_fields_that_fail(
        username in prop_oneof![text(), "[a-z][a-z0-9]{2,20}"],
        email in prop_oneof![text(), "[a-z0-9]{1,20}@example\\.com"],
        password in prop_oneof![text(), "[a-z ]{8,40}"],
    ) {
        let mut failing = Vec::new();
        if Username::parse(&username).is_err() {
            failing.push("username");
        }
        if Email::parse(&email).is_err() {
            failing.push("email");
        }
        if Password::parse(&password, Some(&username)).is_err() {
            failing.push("password");
        }
        match parse_registration(&username, &email, &password) {
            Ok(new) => {
                prop_assert!(failing.is_empty());
                prop_assert_eq!(new.username.as_str(), username.as_str());
                prop_assert_eq!(new.email.as_str(), email.as_str());
                prop_assert_eq!(new.password.expose(), password.as_str());
            }
            Err(violations) => {
                let fields: Vec<&str> = violations.iter().map(|v| v.field).collect();
                prop_assert_eq!(fields, failing);
            }
        }
    }
}
