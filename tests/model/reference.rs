//! The reference model of tests/model.rs: users, sessions and token pairs as the server
//! should hold them, deadlines known only as ranges, and how an answer is checked
//! against every way the undecided deadlines could have fallen.

use super::*;

/// When something dies, known to lie in `[lo, hi]` (Unix ms): alive at `t` iff `t < death`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) lo: i64,
    pub(super) hi: i64,
}

impl Deadline {
    pub(super) fn exact(at: i64) -> Self {
        Self { lo: at, hi: at }
    }
}

#[derive(Debug, Clone)]
pub(super) struct UserM {
    pub(super) id: Uuid,
    pub(super) username: String,
    pub(super) email: String,
    pub(super) password: String,
}

#[derive(Debug, Clone)]
pub(super) struct SessionM {
    pub(super) id: Uuid,
    pub(super) user: usize,
    /// Unix seconds: the `iat` of its first pair.
    pub(super) create_time: i64,
    pub(super) user_agent: String,
    pub(super) revoked: bool,
    /// Index of its current pair in `Model::pairs`.
    pub(super) current: usize,
    /// When its current refresh token leaves the store: at the token's `exp`, or (a
    /// store that counts the TTL from the write) up to a second later.
    pub(super) key_death: Deadline,
}

/// A rotation of a pair's refresh token: the pair it gave, kept for the retry window.
#[derive(Debug, Clone)]
pub(super) struct RetryM {
    pub(super) next: usize,
    pub(super) death: Deadline,
}

#[derive(Debug, Clone)]
pub(super) struct PairM {
    pub(super) session: usize,
    pub(super) access_token: String,
    pub(super) refresh_token: String,
    pub(super) access_jti: Uuid,
    pub(super) iat: i64,
    pub(super) access_exp: i64,
    pub(super) refresh_exp: i64,
    pub(super) access_death: Deadline,
    pub(super) refresh_death: Deadline,
    /// Set once its refresh token was rotated away.
    pub(super) retry: Option<RetryM>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Model {
    pub(super) users: Vec<UserM>,
    pub(super) sessions: Vec<SessionM>,
    pub(super) pairs: Vec<PairM>,
}

/// Answers "is it still alive?" for the instant a call happened, known only to lie in
/// `[t0, t1]`. When the answer is certain it is given; otherwise it is taken from
/// `script` (a branch being explored), and each undecided question forks the branch
/// with the other answer. Either answer narrows the deadline to agree with it.
pub(super) struct Oracle {
    pub(super) t0: i64,
    pub(super) t1: i64,
    pub(super) script: Vec<bool>,
    pub(super) asked: usize,
    pub(super) forks: Vec<Vec<bool>>,
}

impl Oracle {
    pub(super) fn alive(&mut self, death: &mut Deadline) -> bool {
        if self.t1 < death.lo {
            return true;
        }
        if self.t0 >= death.hi {
            return false;
        }
        let alive = match self.script.get(self.asked) {
            Some(alive) => *alive,
            None => {
                let mut other = self.script.clone();
                other.push(false);
                self.forks.push(other);
                self.script.push(true);
                true
            }
        };
        self.asked += 1;
        if alive {
            death.lo = death.lo.max(self.t0 + 1);
        } else {
            death.hi = death.hi.min(self.t1);
        }
        alive
    }
}

/// A call's interval, widened by the clock slack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) t0: i64,
    pub(super) t1: i64,
}

impl Span {
    pub(super) fn of(start: i64, end: i64) -> Self {
        Self {
            t0: start - SLACK_MS,
            t1: end + SLACK_MS,
        }
    }
}

/// Runs `check` on a copy of `model` in every way the undecided deadlines could have
/// fallen, until one agrees with what the server answered; that copy is the new model.
pub(super) fn explore(
    model: &Model,
    span: Span,
    check: impl Fn(&mut Model, &mut Oracle) -> Result<(), String>,
) -> Result<Model, String> {
    let mut branches = vec![Vec::new()];
    let mut errors = Vec::new();
    while let Some(script) = branches.pop() {
        if errors.len() >= 64 {
            break;
        }
        let mut candidate = model.clone();
        let mut oracle = Oracle {
            t0: span.t0,
            t1: span.t1,
            script,
            asked: 0,
            forks: Vec::new(),
        };
        match check(&mut candidate, &mut oracle) {
            Ok(()) => return Ok(candidate),
            Err(error) => {
                errors.push(error);
                branches.extend(oracle.forks);
            }
        }
    }
    errors.dedup();
    Err(errors.join("\n   or, had time fallen otherwise: "))
}

pub(super) type Answer<T> = Result<T, (Code, String)>;

pub(super) fn answer<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Answer<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| (status.code(), status.message().to_owned()))
}

pub(super) fn expect_code<T: std::fmt::Debug>(
    answer: &Answer<T>,
    code: Code,
) -> Result<(), String> {
    match answer {
        Err((got, _)) if *got == code => Ok(()),
        other => Err(format!("expected {code:?}, got {other:?}")),
    }
}

pub(super) fn expect_ok<T: std::fmt::Debug>(
    answer: &Answer<T>,
    expected: &str,
) -> Result<(), String> {
    match answer {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("expected OK ({expected}), got {error:?}")),
    }
}

pub(super) fn seconds(timestamp: Option<&prost_types::Timestamp>) -> Option<i64> {
    timestamp.map(|t| t.seconds)
}

impl Model {
    pub(super) fn session_live(&mut self, session: usize, oracle: &mut Oracle) -> bool {
        let s = &mut self.sessions[session];
        !s.revoked && oracle.alive(&mut s.key_death)
    }

    /// Whether the access token of `pair` is active: the current pair of a live session,
    /// not expired.
    pub(super) fn access_active(&mut self, pair: usize, oracle: &mut Oracle) -> bool {
        let session = self.pairs[pair].session;
        self.sessions[session].current == pair
            && self.session_live(session, oracle)
            && oracle.alive(&mut self.pairs[pair].access_death)
    }

    pub(super) fn revoke(&mut self, session: usize) {
        self.sessions[session].revoked = true;
    }

    /// Takes in a pair the server issued for `session` (during `span`): it must be new,
    /// of that user and session, twinned, with the configured lifetimes. Returns its index.
    pub(super) fn accept_pair(
        &mut self,
        session: usize,
        tokens: &pb::TokenPair,
        span: Span,
    ) -> Result<usize, String> {
        let access = claims_of(&tokens.access_token);
        let refresh = claims_of(&tokens.refresh_token);
        let s = &self.sessions[session];
        let user = &self.users[s.user];
        let field = |claims: &serde_json::Value, name: &str| -> Result<String, String> {
            claims[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("claim {name} missing in {claims}"))
        };
        let number = |claims: &serde_json::Value, name: &str| -> Result<i64, String> {
            claims[name]
                .as_i64()
                .ok_or_else(|| format!("claim {name} missing in {claims}"))
        };
        for claims in [&access, &refresh] {
            if field(claims, "sub")? != user.id.to_string()
                || field(claims, "sid")? != s.id.to_string()
            {
                return Err(format!(
                    "a pair for session {} of user {} has claims {claims}",
                    s.id, user.id
                ));
            }
        }
        let access_jti: Uuid = field(&access, "jti")?.parse().map_err(|e| format!("{e}"))?;
        if field(&access, "twin")? != field(&refresh, "jti")?
            || field(&refresh, "twin")? != access_jti.to_string()
        {
            return Err(format!("the pair is not twinned: {access} / {refresh}"));
        }
        let iat = number(&access, "iat")?;
        let (access_exp, refresh_exp) = (number(&access, "exp")?, number(&refresh, "exp")?);
        if iat < span.t0.div_euclid(1000)
            || iat > span.t1.div_euclid(1000)
            || number(&refresh, "iat")? != iat
            || access_exp != iat + ms(ACCESS_TTL) / 1000
            || refresh_exp != iat + ms(REFRESH_TTL) / 1000
        {
            return Err(format!(
                "times of a pair issued in {span:?}: {access} / {refresh}"
            ));
        }
        if tokens.token_type != "Bearer"
            || seconds(tokens.access_expire_time.as_ref()) != Some(access_exp)
            || seconds(tokens.refresh_expire_time.as_ref()) != Some(refresh_exp)
        {
            return Err(format!(
                "the pair's fields disagree with its claims: {tokens:?}"
            ));
        }
        if self.pairs.iter().any(|p| {
            p.access_token == tokens.access_token || p.refresh_token == tokens.refresh_token
        }) {
            return Err("a rotation answered a pair issued before".into());
        }
        self.pairs.push(PairM {
            session,
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            access_jti,
            iat,
            access_exp,
            refresh_exp,
            access_death: Deadline::exact(access_exp * 1000),
            refresh_death: Deadline::exact(refresh_exp * 1000),
            retry: None,
        });
        let pair = self.pairs.len() - 1;
        let s = &mut self.sessions[session];
        s.current = pair;
        s.key_death = Deadline {
            lo: refresh_exp * 1000,
            hi: span.t1 + ms(REFRESH_TTL),
        };
        Ok(pair)
    }

    /// A rotation of `pair` (the current pair of its session) into `tokens`.
    pub(super) fn rotate(
        &mut self,
        pair: usize,
        tokens: &pb::TokenPair,
        span: Span,
    ) -> Result<(), String> {
        let session = self.pairs[pair].session;
        let next = self.accept_pair(session, tokens, span)?;
        self.pairs[pair].retry = Some(RetryM {
            next,
            death: Deadline {
                lo: span.t0 + ms(RETRY_WINDOW),
                hi: span.t1 + ms(RETRY_WINDOW),
            },
        });
        Ok(())
    }

    /// Refresh with the refresh token of `pair`, answered `answer`.
    pub(super) fn refresh(
        &mut self,
        oracle: &mut Oracle,
        pair: usize,
        answer: &Answer<pb::TokenPair>,
        span: Span,
    ) -> Result<(), String> {
        let session = self.pairs[pair].session;
        if !oracle.alive(&mut self.pairs[pair].refresh_death) {
            return expect_code(answer, Code::Unauthenticated)
                .map_err(|e| format!("an expired refresh token: {e}"));
        }
        if !self.session_live(session, oracle) {
            return expect_code(answer, Code::Unauthenticated)
                .map_err(|e| format!("a refresh token of an ended session: {e}"));
        }
        if self.sessions[session].current == pair {
            expect_ok(answer, "the current refresh token rotates")?;
            let tokens = answer.as_ref().map_err(|_| String::new())?;
            return self.rotate(pair, tokens, span);
        }
        let current = self.sessions[session].current;
        let replay = match self.pairs[pair].retry.as_mut() {
            Some(retry) if retry.next == current => oracle.alive(&mut retry.death),
            _ => false,
        };
        if replay {
            expect_ok(answer, "a retry within the window answers the same pair")?;
            let tokens = answer.as_ref().map_err(|_| String::new())?;
            let next = &self.pairs[current];
            if tokens.access_token != next.access_token
                || tokens.refresh_token != next.refresh_token
                || seconds(tokens.access_expire_time.as_ref()) != Some(next.access_exp)
                || seconds(tokens.refresh_expire_time.as_ref()) != Some(next.refresh_exp)
            {
                return Err(format!(
                    "a retry within the window answered another pair than the rotation's: {tokens:?}"
                ));
            }
            return Ok(());
        }
        // Reuse of a rotated refresh token: theft; the whole session ends.
        self.pairs[pair].retry = None;
        self.revoke(session);
        expect_code(answer, Code::Unauthenticated)
            .map_err(|e| format!("reuse of a rotated refresh token must end the session: {e}"))
    }

    pub(super) fn user_sessions(&self, user: usize) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|s| self.sessions[*s].user == user)
            .collect()
    }

    /// The pair to present for `pick`, if any pair exists.
    pub(super) fn pick_pair(&self, pick: PairPick) -> Option<usize> {
        let PairPick(which, n) = pick;
        let all: Vec<usize> = (0..self.pairs.len()).collect();
        let candidates: Vec<usize> = match which {
            Which::Current => all
                .iter()
                .copied()
                .filter(|p| {
                    let s = &self.sessions[self.pairs[*p].session];
                    s.current == *p && !s.revoked
                })
                .collect(),
            Which::Rotated => all
                .iter()
                .copied()
                .filter(|p| self.pairs[*p].retry.is_some())
                .collect(),
            Which::Any => all.clone(),
        };
        n.of(&candidates).or_else(|| n.of(&all))
    }
}
