//! Paging of ListPosts: page sizes, and the opaque keyset token that points after the
//! last post of a page (never an offset, so posts written meanwhile shift nothing).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use pair_common::status::FieldViolation;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{Post, keep, parse_id};

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;

/// A page stops growing past this many bytes (approximately) even below its page size:
/// gRPC clients refuse messages over 4 MiB by default, and 100 posts may hold 20 MB.
const PAGE_BYTES_BUDGET: usize = 3 * 1024 * 1024;
/// Ids, times and protobuf framing of one post, on top of its text.
const POST_OVERHEAD_BYTES: usize = 128;

const TOKEN_VERSION: u8 = 1;
const CHECKSUM_BYTES: usize = 8;
/// Separates our checksums from those of any other SHA-256 use.
const CHECKSUM_DOMAIN: &[u8] = b"blog.v1.ListPosts page_token\0";
/// Longest token we issue (50 bytes in base64) with room to spare; longer is not ours.
const TOKEN_MAX_CHARS: usize = 96;

const FOREIGN_TOKEN: &str = "is not a page token issued by ListPosts: send the next_page_token of the previous page, or none";
const OTHER_FILTER: &str =
    "was issued for another author_id: page with the author_id it was issued for";

/// The page size a request asks for: 0 means the default, above the maximum means the
/// maximum, negative is an error.
pub fn page_size(requested: i32) -> Result<usize, String> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) => Ok(size.min(MAX_PAGE_SIZE)),
        Err(_) => Err("must not be negative".into()),
    }
}

/// A position in the newest-first order: posts sort by `create_time` then `id`, both
/// descending, so every post has a distinct position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub create_time: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(post: &Post) -> Self {
        Self {
            create_time: post.create_time,
            id: post.id,
        }
    }
}

/// What a `page_token` holds: where the next page starts, and the `author_id` filter it
/// was issued for. Clients see it as opaque base64url. The checksum catches tokens that
/// were altered or are not ours; it is not a secret, and needs none: a token only names
/// a position any caller could ask for anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub after: Cursor,
    pub author_id: Option<Uuid>,
}

impl PageToken {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(50);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&self.after.create_time.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.after.id.as_bytes());
        match self.author_id {
            None => bytes.push(0),
            Some(author_id) => {
                bytes.push(1);
                bytes.extend_from_slice(author_id.as_bytes());
            }
        }
        let checksum = checksum(&bytes);
        bytes.extend_from_slice(&checksum);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The token, or `None` if it is not one we issued (or was altered).
    pub fn decode(token: &str) -> Option<Self> {
        if token.len() > TOKEN_MAX_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (payload, sum) = bytes.split_at_checked(bytes.len().checked_sub(CHECKSUM_BYTES)?)?;
        if checksum(payload) != sum {
            return None;
        }
        let (&version, rest) = payload.split_first()?;
        if version != TOKEN_VERSION {
            return None;
        }
        let (micros, rest) = rest.split_first_chunk::<8>()?;
        let (id, rest) = rest.split_first_chunk::<16>()?;
        let author_id = match rest {
            [0] => None,
            [1, author @ ..] => Some(Uuid::from_bytes(<[u8; 16]>::try_from(author).ok()?)),
            _ => return None,
        };
        Some(Self {
            after: Cursor {
                create_time: DateTime::from_timestamp_micros(i64::from_be_bytes(*micros))?,
                id: Uuid::from_bytes(*id),
            },
            author_id,
        })
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_DOMAIN)
        .chain_update(payload)
        .finalize();
    let mut sum = [0u8; CHECKSUM_BYTES];
    sum.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    sum
}

/// A checked ListPosts request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub page_size: usize,
    pub author_id: Option<Uuid>,
    /// Where this page starts (exclusive); `None` for the first page.
    pub after: Option<Cursor>,
}

impl ListQuery {
    /// Checks a ListPosts request, reporting every bad field at once. A token is only
    /// valid with the `author_id` it was issued for.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        author_id: Option<&str>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let size = keep(&mut violations, "page_size", self::page_size(page_size));
        let author = match author_id {
            None => Some(None),
            Some(raw) => keep(&mut violations, "author_id", parse_id(raw)).map(Some),
        };
        let token = match page_token {
            "" => Some(None),
            token => match (PageToken::decode(token), author) {
                (None, _) => keep(&mut violations, "page_token", Err(FOREIGN_TOKEN.into())),
                (Some(token), Some(author)) if token.author_id != author => {
                    keep(&mut violations, "page_token", Err(OTHER_FILTER.into()))
                }
                (Some(token), _) => Some(Some(token.after)),
            },
        };
        match (size, author, token) {
            (Some(page_size), Some(author_id), Some(after)) => Ok(Self {
                page_size,
                author_id,
                after,
            }),
            _ => Err(violations),
        }
    }

    /// Rows to read: one more than a page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> usize {
        self.page_size + 1
    }

    /// The page made of `rows` (newest first, as read with `fetch_limit`), with the token
    /// of the next page if any post is left out.
    pub fn page(&self, rows: Vec<Post>) -> Page {
        let mut posts = Vec::with_capacity(rows.len().min(self.page_size));
        let mut bytes = 0;
        let mut more = false;
        for post in rows {
            let size = POST_OVERHEAD_BYTES
                + post.title.len()
                + post.content.len()
                + post.author_username.len();
            let over_budget = !posts.is_empty() && bytes + size > PAGE_BYTES_BUDGET;
            if posts.len() == self.page_size || over_budget {
                more = true;
                break;
            }
            bytes += size;
            posts.push(post);
        }
        let next_page_token = match posts.last() {
            Some(last) if more => PageToken {
                after: Cursor::of(last),
                author_id: self.author_id,
            }
            .encode(),
            _ => String::new(),
        };
        Page {
            posts,
            next_page_token,
        }
    }
}

/// One page of ListPosts; `next_page_token` is empty on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub posts: Vec<Post>,
    pub next_page_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    fn token(author_id: Option<Uuid>) -> PageToken {
        PageToken {
            after: Cursor {
                create_time: now(),
                id: Uuid::now_v7(),
            },
            author_id,
        }
    }

    fn post(content_len: usize) -> Post {
        let time = now();
        Post {
            id: Uuid::now_v7(),
            author_id: Uuid::now_v7(),
            author_username: "ann".into(),
            title: "title".into(),
            content: "x".repeat(content_len),
            create_time: time,
            update_time: time,
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.field).collect()
    }

    #[test]
    fn page_size_zero_means_twenty() {
        assert_eq!(page_size(0), Ok(20));
    }

    #[test]
    fn page_size_above_one_hundred_means_one_hundred() {
        assert_eq!(page_size(101), Ok(100));
        assert_eq!(page_size(i32::MAX), Ok(100));
        assert_eq!(page_size(100), Ok(100));
        assert_eq!(page_size(1), Ok(1));
    }

    #[test]
    fn a_negative_page_size_is_refused() {
        assert!(page_size(-1).is_err());
        assert!(page_size(i32::MIN).is_err());
    }

    #[test]
    fn a_page_token_survives_a_round_trip() {
        for author_id in [None, Some(Uuid::now_v7())] {
            let original = token(author_id);
            assert_eq!(PageToken::decode(&original.encode()), Some(original));
        }
    }

    #[test]
    fn a_page_token_is_url_safe() {
        let encoded = token(Some(Uuid::now_v7())).encode();
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn a_page_token_with_any_byte_changed_is_refused() {
        let encoded = token(Some(Uuid::now_v7())).encode();
        let bytes = URL_SAFE_NO_PAD.decode(&encoded).unwrap();
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x01;
            assert_eq!(
                PageToken::decode(&URL_SAFE_NO_PAD.encode(tampered)),
                None,
                "byte {index}"
            );
        }
    }

    #[test]
    fn garbage_is_not_a_page_token() {
        let long = "A".repeat(1000);
        for garbage in [
            "x",
            "not a token",
            "!!!!",
            "AAAAAAAAAAAAAAAAAAAA",
            long.as_str(),
        ] {
            assert_eq!(PageToken::decode(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn a_page_token_of_a_future_version_is_refused() {
        let mut payload = vec![TOKEN_VERSION + 1];
        payload.extend_from_slice(&[0; 8 + 16 + 1]);
        let sum = checksum(&payload);
        payload.extend_from_slice(&sum);
        assert_eq!(PageToken::decode(&URL_SAFE_NO_PAD.encode(payload)), None);
    }

    #[test]
    fn a_page_token_is_refused_with_another_author_filter() {
        let ann = Uuid::now_v7();
        let bob = Uuid::now_v7().to_string();
        let for_ann = token(Some(ann)).encode();
        let for_everyone = token(None).encode();

        let violations = ListQuery::parse(0, &for_ann, Some(&bob)).unwrap_err();
        assert_eq!(fields(&violations), ["page_token"]);
        assert!(ListQuery::parse(0, &for_ann, None).is_err());
        assert!(ListQuery::parse(0, &for_everyone, Some(&bob)).is_err());
        assert!(ListQuery::parse(0, &for_ann, Some(&ann.to_string())).is_ok());
        assert!(ListQuery::parse(0, &for_everyone, None).is_ok());
    }

    #[test]
    fn a_list_query_reports_every_bad_field_at_once() {
        let violations = ListQuery::parse(-5, "garbage", Some("not-a-uuid")).unwrap_err();
        assert_eq!(
            fields(&violations),
            ["page_size", "author_id", "page_token"]
        );
    }

    #[test]
    fn the_first_page_starts_at_the_newest_post() {
        let query = ListQuery::parse(0, "", None).unwrap();
        assert_eq!(query.after, None);
        assert_eq!(query.page_size, 20);
        assert_eq!(query.fetch_limit(), 21);
    }

    #[test]
    fn a_page_resumes_after_the_last_post_of_the_previous_one() {
        let author = Uuid::now_v7();
        let query = ListQuery {
            page_size: 2,
            author_id: Some(author),
            after: None,
        };
        let rows = vec![post(1), post(1), post(1)];
        let page = query.page(rows.clone());
        assert_eq!(page.posts, rows[..2]);
        let next = ListQuery::parse(2, &page.next_page_token, Some(&author.to_string())).unwrap();
        assert_eq!(next.after, Some(Cursor::of(&rows[1])));
    }

    #[test]
    fn the_last_page_has_no_next_page_token() {
        let query = ListQuery::parse(2, "", None).unwrap();
        let rows = vec![post(1), post(1)];
        let page = query.page(rows.clone());
        assert_eq!(page.posts, rows);
        assert_eq!(page.next_page_token, "");
        assert_eq!(query.page(Vec::new()).next_page_token, "");
    }

    #[test]
    fn a_page_of_large_posts_stops_below_four_mebibytes() {
        let query = ListQuery::parse(100, "", None).unwrap();
        let rows: Vec<Post> = (0..30).map(|_| post(200_000)).collect();
        let page = query.page(rows);
        let bytes: usize = page.posts.iter().map(|p| p.content.len()).sum();
        assert!(page.posts.len() < 30);
        assert!(bytes < 4 * 1024 * 1024);
        assert!(!page.next_page_token.is_empty());
    }
}
