//! One session as a field of its user's hash: the field is the session id, the value
//! the session's current pair, its creation time and its user agent, packed as bytes.
//!
//! Packed because of what Redis does with a small hash: while every value is at most
//! 64 bytes (`hash-max-listpack-value`) and there are at most 512 fields, it stores the
//! hash as one flat listpack instead of a hashtable of separately allocated entries.
//! Ids as 16 raw bytes and times as 4 keep a session with a user agent of up to 20
//! bytes (a gRPC library's own: `grpc-go/1.64.0`, `tonic/0.14.2`) under that line.
//!
//! Layout of the value (the Lua scripts read it at these offsets, 1-based there):
//!
//! | bytes  | what                                        |
//! |--------|---------------------------------------------|
//! | 0..16  | refresh token id                            |
//! | 16..32 | access token id                             |
//! | 32..36 | access token `exp`, big-endian Unix seconds  |
//! | 36..40 | refresh token `exp`, same                   |
//! | 40..44 | creation time (first pair's `iat`), same    |
//! | 44..   | user agent, UTF-8                           |
//!
//! Times past 2106 (beyond `u32`) are stored as `u32::MAX`.

use uuid::Uuid;

/// Bytes before the user agent.
const HEAD: usize = 44;
/// Bytes a rotation replaces: the pair and the refresh expiry (not the creation time
/// or the user agent, which stay the session's). `scripts::ROTATE` keeps the value
/// from byte 41 (1-based) on.
pub(super) const PAIR: usize = 40;

/// The field of the user's hash that holds the username (a session id is 16 bytes, so
/// never this).
pub(super) const NAME_FIELD: &str = "name";

/// A session's current state, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) refresh_jti: Uuid,
    pub(super) access_jti: Uuid,
    pub(super) access_exp: u64,
    pub(super) refresh_exp: u64,
    pub(super) create_time: u64,
    pub(super) user_agent: String,
}

fn seconds(time: u64) -> [u8; 4] {
    u32::try_from(time).unwrap_or(u32::MAX).to_be_bytes()
}

/// The first `PAIR` bytes of a value: what a rotation writes.
pub(super) fn pair(
    refresh_jti: Uuid,
    access_jti: Uuid,
    access_exp: u64,
    refresh_exp: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD);
    out.extend_from_slice(refresh_jti.as_bytes());
    out.extend_from_slice(access_jti.as_bytes());
    out.extend_from_slice(&seconds(access_exp));
    out.extend_from_slice(&seconds(refresh_exp));
    debug_assert_eq!(out.len(), PAIR, "the ROTATE script splices at this offset");
    out
}

impl Record {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = pair(
            self.refresh_jti,
            self.access_jti,
            self.access_exp,
            self.refresh_exp,
        );
        out.extend_from_slice(&seconds(self.create_time));
        out.extend_from_slice(self.user_agent.as_bytes());
        out
    }

    /// `None` if `bytes` is not a value `encode` wrote.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let head = bytes.get(..HEAD)?;
        let id = |at: usize| Uuid::from_slice(&head[at..at + 16]).ok();
        let time = |at: usize| {
            let mut word = [0; 4];
            word.copy_from_slice(&head[at..at + 4]);
            u64::from(u32::from_be_bytes(word))
        };
        Some(Self {
            refresh_jti: id(0)?,
            access_jti: id(16)?,
            access_exp: time(32),
            refresh_exp: time(36),
            create_time: time(40),
            user_agent: String::from_utf8(bytes[HEAD..].to_vec()).ok()?,
        })
    }

    /// Whether the session still lives at `now` (Unix seconds): its refresh token has
    /// not expired.
    pub(super) fn live_at(&self, now: u64) -> bool {
        self.refresh_exp > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user_agent: &str) -> Record {
        Record {
            refresh_jti: Uuid::now_v7(),
            access_jti: Uuid::now_v7(),
            access_exp: 1_764_460_800,
            refresh_exp: 1_767_052_000,
            create_time: 1_764_460_000,
            user_agent: user_agent.into(),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        for user_agent in ["", "tonic/0.14.2", "Mozilla/5.0 (X11; Linux x86_64) é"] {
            let record = record(user_agent);
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
    }

    #[test]
    fn a_session_with_a_grpc_library_user_agent_fits_a_listpack_value() {
        assert!(record("grpc-go/1.64.0").encode().len() <= 64);
        assert!(record("loadgen-scale/1").encode().len() <= 64);
    }

    #[test]
    fn a_rotation_rewrites_the_pair_and_keeps_creation_time_and_user_agent() {
        let old = record("tonic/0.14.2");
        let (refresh_jti, access_jti) = (Uuid::now_v7(), Uuid::now_v7());
        let mut rotated = pair(refresh_jti, access_jti, 1_764_461_700, 1_767_053_000);
        rotated.extend_from_slice(&old.encode()[PAIR..]);
        let rotated = Record::decode(&rotated).expect("decodes");
        assert_eq!(
            rotated,
            Record {
                refresh_jti,
                access_jti,
                access_exp: 1_764_461_700,
                refresh_exp: 1_767_053_000,
                ..old
            }
        );
    }

    #[test]
    fn a_time_past_2106_is_stored_as_the_last_second_that_fits() {
        let mut far = record("");
        far.refresh_exp = u64::from(u32::MAX) + 10;
        let read = Record::decode(&far.encode()).expect("decodes");
        assert_eq!(read.refresh_exp, u64::from(u32::MAX));
        assert!(read.live_at(1_764_460_000));
    }

    #[test]
    fn a_value_too_short_or_not_utf8_is_refused() {
        assert_eq!(Record::decode(b"short"), None);
        let mut bad = record("").encode();
        bad.push(0xff);
        assert_eq!(Record::decode(&bad), None);
    }

    #[test]
    fn a_session_is_dead_from_its_refresh_expiry_second_on() {
        let record = record("");
        assert!(record.live_at(record.refresh_exp - 1));
        assert!(!record.live_at(record.refresh_exp));
    }
}
