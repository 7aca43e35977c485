//! The domain of blog-service: the post, its validated fields (docs/ARCHITECTURE.md, "The pair and its layers") and the
//! rules of paging (`page`).

pub mod page;

use chrono::{DateTime, Utc};
use pair_common::status::FieldViolation;
use uuid::Uuid;

const TITLE_MAX: usize = 200;
const CONTENT_MAX: usize = 50_000;

/// A stored post, as the rest of the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub id: Uuid,
    pub author_id: Uuid,
    /// The author's name as Introspect last reported it on one of their writes.
    pub author_username: String,
    pub title: String,
    pub content: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

pub use pair_common::time::now;

/// A title of 1-200 characters after trimming Unicode white space; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        check_length(trimmed, TITLE_MAX)?;
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Content of 1-50,000 characters, stored exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    pub fn parse(raw: &str) -> Result<Self, String> {
        check_length(raw, CONTENT_MAX)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lengths count code points, never bytes. NUL is refused because PostgreSQL text cannot
/// hold it: without this check it would surface as an internal error.
fn check_length(text: &str, max: usize) -> Result<(), String> {
    let length = text.chars().count();
    if length == 0 {
        return Err("must not be empty".into());
    }
    if length > max {
        return Err(format!(
            "must be at most {max} characters long (got {length})"
        ));
    }
    if text.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(())
}

/// What CreatePost needs, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPost {
    pub title: Title,
    pub content: Content,
}

impl NewPost {
    /// Checks a new post, reporting every bad field at once.
    pub fn parse(title: &str, content: &str) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let title = keep(&mut violations, "title", Title::parse(title));
        let content = keep(&mut violations, "content", Content::parse(content));
        match (title, content) {
            (Some(title), Some(content)) => Ok(Self { title, content }),
            _ => Err(violations),
        }
    }
}

/// The fields an UpdatePost sets; at least one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostChange {
    pub title: Option<Title>,
    pub content: Option<Content>,
}

/// Checks an UpdatePost: the post id and the fields it sets, every bad field at once.
pub fn parse_post_update(
    id: &str,
    title: Option<&str>,
    content: Option<&str>,
) -> Result<(Uuid, PostChange), Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let id = keep(&mut violations, "id", parse_id(id));
    if title.is_none() && content.is_none() {
        violations.push(FieldViolation::new("title", "set title, content or both"));
        violations.push(FieldViolation::new("content", "set title, content or both"));
    }
    let title = title.and_then(|raw| keep(&mut violations, "title", Title::parse(raw)));
    let content = content.and_then(|raw| keep(&mut violations, "content", Content::parse(raw)));
    match id {
        Some(id) if violations.is_empty() => Ok((id, PostChange { title, content })),
        _ => Err(violations),
    }
}

/// A UUID from a request field.
pub fn parse_id(raw: &str) -> Result<Uuid, String> {
    Uuid::try_parse(raw).map_err(|_| "must be a UUID".to_owned())
}

/// The value of `result`, or `None` with its reason recorded against `field`.
fn keep<T>(
    violations: &mut Vec<FieldViolation>,
    field: &'static str,
    result: Result<T, String>,
) -> Option<T> {
    result
        .map_err(|why| violations.push(FieldViolation::new(field, why)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(violations: &[FieldViolation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_title_is_stored_trimmed() {
        let title = Title::parse(" \u{3000}\tHello, world\n ").unwrap();
        assert_eq!(title.as_str(), "Hello, world");
    }

    #[test]
    fn a_title_of_only_white_space_is_empty() {
        assert!(Title::parse("").is_err());
        assert!(Title::parse(" \t\n\u{a0}\u{2003}").is_err());
    }

    #[test]
    fn a_title_may_have_200_characters_but_not_201() {
        assert!(Title::parse(&"a".repeat(200)).is_ok());
        assert!(Title::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn title_length_counts_code_points_not_bytes() {
        // 200 four-byte characters: 800 bytes, still 200 characters.
        assert!(Title::parse(&"😀".repeat(200)).is_ok());
        assert!(Title::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn white_space_around_a_title_does_not_count_towards_its_length() {
        let padded = format!("   {}   ", "a".repeat(200));
        assert_eq!(Title::parse(&padded).unwrap().as_str().len(), 200);
    }

    #[test]
    fn content_may_have_50_000_characters_but_not_50_001() {
        assert!(Content::parse(&"ж".repeat(50_000)).is_ok());
        assert!(Content::parse(&"a".repeat(50_001)).is_err());
        assert!(Content::parse("").is_err());
    }

    #[test]
    fn content_is_kept_exactly_as_sent() {
        assert_eq!(Content::parse("  body\n").unwrap().as_str(), "  body\n");
    }

    #[test]
    fn nul_characters_are_refused_because_the_database_cannot_store_them() {
        assert!(Title::parse("a\0b").is_err());
        assert!(Content::parse("a\0b").is_err());
    }

    #[test]
    fn a_new_post_reports_every_bad_field_at_once() {
        let violations = NewPost::parse("   ", &"x".repeat(50_001)).unwrap_err();
        assert_eq!(fields(&violations), ["title", "content"]);
    }

    #[test]
    fn a_valid_new_post_has_its_title_trimmed() {
        let post = NewPost::parse("  Title ", "Body").unwrap();
        assert_eq!(post.title.as_str(), "Title");
        assert_eq!(post.content.as_str(), "Body");
    }

    #[test]
    fn an_update_must_set_at_least_one_field() {
        let id = Uuid::now_v7().to_string();
        let violations = parse_post_update(&id, None, None).unwrap_err();
        assert_eq!(fields(&violations), ["title", "content"]);
    }

    #[test]
    fn an_update_changes_only_the_fields_it_sets() {
        let id = Uuid::now_v7();
        let (parsed, change) = parse_post_update(&id.to_string(), None, Some("new")).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(change.title, None);
        assert_eq!(change.content.unwrap().as_str(), "new");
    }

    #[test]
    fn an_update_reports_a_malformed_id_with_the_bad_fields() {
        let violations = parse_post_update("not-a-uuid", Some(" "), Some("")).unwrap_err();
        assert_eq!(fields(&violations), ["id", "title", "content"]);
    }

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
