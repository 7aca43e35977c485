//! One change-driven cache: answers kept in process, and dropped when the store they came
//! from says they changed. auth-service keeps Introspect answers in it (Redis pushes the
//! names of changed keys), blog-service posts and pages (PostgreSQL notifies, a SQLite
//! file is polled). A service supplies only a [`Policy`] (which owner each answer
//! belongs to, what it weighs) and a [`ChangeSource`] (how changes reach it); the rules
//! that keep answers true live here, and are tested here:
//!
//! - **Live flag.** Nothing is kept or served unless the change source is confirmed
//!   ([`supervise`] confirms it). A source that cannot push (a polled file) also vouches
//!   for a limited time after each check began ([`Rhythm::lease`]), so a stalled check
//!   cannot keep an answer alive.
//! - **Generation tickets.** A read takes a [`Ticket`] before it goes to the store; its
//!   answer is kept only if nothing was dropped since. An answer read before a change
//!   therefore never outlives the change's announcement.
//! - **Going dark drops everything**: a lost link, a check that fails or does not answer
//!   within its deadline. The loop then reconnects with a backoff (50 ms doubling to 1 s,
//!   back to 50 ms after a run that was confirmed).
//! - **A budget, emptied gradually.** Past it, entries go in rank order (the service's
//!   least useful first), each rank in the map's (random) order, until half the budget is
//!   used: a wave of cold reads does not flush the hot ones. One entry may weigh at most a
//!   quarter of the budget.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{Duration, Instant},
};

/// What a service keeps, and how its entries relate to the changes it is told about.
pub trait Policy: 'static {
    type Key: Hash + Eq + Clone + Send;
    type Value: Send;
    /// What a change names: a user, a post.
    type Owner: Hash + Eq + Send;

    /// The owner whose change drops the entry; `None` for an entry that any change drops
    /// (a page of posts, which any write may reshuffle).
    fn owner(key: &Self::Key) -> Option<Self::Owner>;
    /// What the entry counts against the budget.
    fn weight(key: &Self::Key, value: &Self::Value) -> usize;
    /// When room is made, entries of a lower rank go first.
    fn rank(key: &Self::Key, value: &Self::Value) -> u8;
}

/// What a lookup that missed hands to [`ChangeCache::keep`]: the generation it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// A change announced by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<O> {
    /// Everything of this owner (and every entry without one).
    Owner(O),
    /// Everything (a flush, a truncate, a name we cannot read).
    All,
}

struct Kept<V> {
    value: V,
    weight: usize,
}

struct State<P: Policy> {
    live: bool,
    /// For a polled source: kept answers are served until then.
    vouched_until: Option<Instant>,
    /// Bumped by every drop, so that a read sent before it is not kept after it.
    generation: u64,
    budget: usize,
    /// The sum of the weights in `entries`.
    weight: usize,
    entries: HashMap<P::Key, Kept<P::Value>>,
    owned: HashMap<P::Owner, Vec<P::Key>>,
    /// Keys without an owner: every change drops them.
    shared: Vec<P::Key>,
}

impl<P: Policy> State<P> {
    fn serving(&self) -> bool {
        self.live
            && self
                .vouched_until
                .is_none_or(|until| Instant::now() < until)
    }

    fn drop_all(&mut self) {
        self.generation += 1;
        self.entries.clear();
        self.owned.clear();
        self.shared.clear();
        self.weight = 0;
    }

    fn drop_owner(&mut self, owner: &P::Owner) {
        self.generation += 1;
        let owned = self.owned.remove(owner).unwrap_or_default();
        let shared = std::mem::take(&mut self.shared);
        for key in owned.iter().chain(&shared) {
            if let Some(gone) = self.entries.remove(key) {
                self.weight -= gone.weight;
            }
        }
    }

    fn insert(&mut self, key: P::Key, value: P::Value, weight: usize) {
        if self.weight + weight > self.budget {
            // Dropping for room changes nothing stored, so pending reads stay valid.
            self.make_room();
        }
        let owner = P::owner(&key);
        match self.entries.insert(key.clone(), Kept { value, weight }) {
            Some(old) => self.weight -= old.weight,
            None => match owner {
                Some(owner) => self.owned.entry(owner).or_default().push(key),
                None => self.shared.push(key),
            },
        }
        self.weight += weight;
    }

    /// Drops entries, lowest rank first, until at most half the budget is used. Dropping
    /// everything instead made a cache whose readers wander over more than its budget
    /// slower than none: every budget's worth of misses emptied it, hot entries included
    /// (BENCHMARKS.md, "How cost grows with state").
    fn make_room(&mut self) {
        let target = self.budget / 2;
        let ranks: BTreeSet<u8> = self
            .entries
            .iter()
            .map(|(key, kept)| P::rank(key, &kept.value))
            .collect();
        for rank in ranks {
            if self.weight <= target {
                break;
            }
            let weight = &mut self.weight;
            self.entries.retain(|key, kept| {
                if *weight <= target || P::rank(key, &kept.value) != rank {
                    return true;
                }
                *weight -= kept.weight;
                false
            });
        }
        let entries = &self.entries;
        self.owned.retain(|_, keys| {
            keys.retain(|key| entries.contains_key(key));
            !keys.is_empty()
        });
        self.shared.retain(|key| entries.contains_key(key));
    }
}

/// The kept answers; shared by a store and the task that supervises its change source.
pub struct ChangeCache<P: Policy> {
    state: Mutex<State<P>>,
}

impl<P: Policy> ChangeCache<P> {
    /// An empty cache, not live, that keeps at most `budget` (in [`Policy::weight`]s).
    pub fn new(budget: usize) -> Self {
        Self {
            state: Mutex::new(State {
                live: false,
                vouched_until: None,
                generation: 0,
                budget,
                weight: 0,
                entries: HashMap::new(),
                owned: HashMap::new(),
                shared: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `read` of the kept value under `key`; on a miss, a ticket for [`Self::keep`]
    /// (`None`: the cache is not serving, do not keep the answer).
    pub fn lookup<R>(
        &self,
        key: &P::Key,
        read: impl FnOnce(&P::Value) -> R,
    ) -> Result<R, Option<Ticket>> {
        let state = self.state();
        if !state.serving() {
            return Err(None);
        }
        match state.entries.get(key) {
            Some(kept) => Ok(read(&kept.value)),
            None => Err(Some(Ticket(state.generation))),
        }
    }

    /// A ticket for [`Self::amend`] (or [`Self::keep`]) without a lookup; `None` when the
    /// cache is not serving.
    pub fn ticket(&self) -> Option<Ticket> {
        let state = self.state();
        state.serving().then_some(Ticket(state.generation))
    }

    /// Changes the value kept under `key`, with what was read after `ticket` was taken, if
    /// it is still kept and nothing was dropped since; whether it was changed. Never adds
    /// an entry: what is kept was vouched for by the read that kept it, and an addition to
    /// it may be read later. A weight that grows is counted; room is made at the next
    /// keep.
    pub fn amend(&self, ticket: Ticket, key: &P::Key, change: impl FnOnce(&mut P::Value)) -> bool {
        let mut state = self.state();
        if !state.serving() || state.generation != ticket.0 {
            return false;
        }
        let state = &mut *state;
        let Some(kept) = state.entries.get_mut(key) else {
            return false;
        };
        change(&mut kept.value);
        let weight = P::weight(key, &kept.value);
        state.weight = state.weight - kept.weight + weight;
        kept.weight = weight;
        true
    }

    /// Keeps `value`, read after `ticket` was taken, unless anything was dropped since or
    /// the cache is not serving; whether it was kept.
    pub fn keep(&self, ticket: Ticket, key: P::Key, value: P::Value) -> bool {
        let mut state = self.state();
        let weight = P::weight(&key, &value);
        if !state.serving() || state.generation != ticket.0 || weight > state.budget / 4 {
            return false;
        }
        state.insert(key, value, weight);
        true
    }

    /// Drops what `owner` owns and every entry without an owner.
    pub fn drop_owner(&self, owner: &P::Owner) {
        self.state().drop_owner(owner);
    }

    /// Drops everything, staying live (after a failed read: fail closed).
    pub fn drop_all(&self) {
        self.state().drop_all();
    }

    /// Applies a change the store announced.
    pub fn apply(&self, change: &Change<P::Owner>) {
        match change {
            Change::Owner(owner) => self.drop_owner(owner),
            Change::All => self.drop_all(),
        }
    }

    /// Whether the change source is confirmed.
    pub fn is_live(&self) -> bool {
        self.state().live
    }

    /// Drops everything, then keeps and serves (`true`) or not (`false`). [`supervise`]
    /// calls it; a source calls `set_live(false)` when it learns first that its link is
    /// gone.
    pub fn set_live(&self, live: bool) {
        let mut state = self.state();
        state.drop_all();
        state.live = live;
    }

    /// Serves kept answers until `until` only (a polled source's check vouches for them).
    pub fn vouch_until(&self, until: Instant) {
        self.state().vouched_until = Some(until);
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum of the kept entries' weights.
    pub fn weight(&self) -> usize {
        self.state().weight
    }
}

/// How a link to the change source is checked.
#[derive(Clone, Copy, Debug)]
pub struct Rhythm {
    /// After this long without a change, the link is checked.
    pub every: Duration,
    /// A check that takes longer counts as a lost link.
    pub deadline: Duration,
    /// For a source that cannot push: a check that passed vouches for the kept answers
    /// until this long after it began.
    pub lease: Option<Duration>,
}

impl Rhythm {
    /// A link that pushes changes: checked after 250 ms of silence, 500 ms to answer.
    /// Together they find a frozen store within the 2 s health allows.
    pub const KEEPALIVE: Self = Self {
        every: Duration::from_millis(250),
        deadline: Duration::from_millis(500),
        lease: None,
    };
}

/// Why a link could not be set up.
#[derive(Debug)]
pub enum Failure {
    /// Try again after the backoff.
    Lost(anyhow::Error),
    /// The store refuses (no RESP3, no tracking): retrying will not help.
    Refused(anyhow::Error),
}

/// Where changes come from: a connection that pushes them, or one that is asked.
pub trait ChangeSource<P: Policy>: Send + 'static {
    /// One confirmed connection (or set of them).
    type Link: Send;
    /// The cache's name in the logs ("post cache").
    const CACHE: &'static str;
    /// What must be back for the cache to come back, in the logs.
    const SOURCE: &'static str;

    /// Connects and subscribes; the cache goes live once this returns. A source that
    /// delivers changes outside [`Self::next_change`] (Redis's push callback) applies
    /// them to `cache` itself.
    fn connect(
        &mut self,
        cache: &Weak<ChangeCache<P>>,
    ) -> impl Future<Output = Result<Self::Link, Failure>> + Send;

    /// The next change announced on `link`; an error when the link is lost. Pending for
    /// ever if changes arrive another way.
    fn next_change(
        &mut self,
        link: &mut Self::Link,
    ) -> impl Future<Output = anyhow::Result<Change<P::Owner>>> + Send {
        let _ = link;
        std::future::pending()
    }

    /// Checks that `link` still works (and, for a polled source, whether anything
    /// changed).
    fn check(
        &mut self,
        link: &mut Self::Link,
    ) -> impl Future<Output = anyhow::Result<Option<Change<P::Owner>>>> + Send;
}

/// Keeps `cache` in step with `source` until the cache is dropped: connect, go live,
/// apply changes and check the link, and on any failure drop everything, go dark, wait
/// the backoff and start over.
pub fn supervise<P: Policy, S: ChangeSource<P>>(
    cache: &Arc<ChangeCache<P>>,
    source: S,
    rhythm: Rhythm,
) -> tokio::task::JoinHandle<()>
where
    ChangeCache<P>: Send + Sync,
{
    tokio::spawn(run(Arc::downgrade(cache), source, rhythm))
}

/// Reconnect waits: 50 ms, doubling to 1 s; back to 50 ms after a confirmed run, so a
/// failover is followed quickly.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const LAST: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::LAST);
        wait
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

enum Ended {
    CacheGone,
    Lost {
        error: anyhow::Error,
        confirmed: bool,
    },
    Refused(anyhow::Error),
}

async fn run<P: Policy, S: ChangeSource<P>>(
    cache: Weak<ChangeCache<P>>,
    mut source: S,
    rhythm: Rhythm,
) where
    ChangeCache<P>: Send + Sync,
{
    let mut backoff = Backoff::new();
    let mut told = false;
    loop {
        match one_run(&mut source, &cache, rhythm).await {
            Ended::CacheGone => return,
            Ended::Refused(error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    "{} stays off: the store refuses to announce changes",
                    S::CACHE
                );
                return;
            }
            Ended::Lost { error, confirmed } => {
                let Some(cache) = cache.upgrade() else { return };
                if confirmed {
                    backoff.reset();
                }
                // Once per outage, not once per attempt.
                if confirmed || !told {
                    tracing::warn!(
                        error = %format!("{error:#}"),
                        "{} off until {} is back",
                        S::CACHE,
                        S::SOURCE
                    );
                    told = true;
                }
                cache.set_live(false);
            }
        }
        tokio::time::sleep(backoff.next_wait()).await;
        if cache.strong_count() == 0 {
            return;
        }
    }
}

/// One link, from connect to failure.
async fn one_run<P: Policy, S: ChangeSource<P>>(
    source: &mut S,
    cache: &Weak<ChangeCache<P>>,
    rhythm: Rhythm,
) -> Ended {
    let lost = |error| Ended::Lost {
        error,
        confirmed: true,
    };
    let started = Instant::now();
    let mut link = match source.connect(cache).await {
        Ok(link) => link,
        Err(Failure::Lost(error)) => {
            return Ended::Lost {
                error,
                confirmed: false,
            };
        }
        Err(Failure::Refused(error)) => return Ended::Refused(error),
    };
    {
        let Some(cache) = cache.upgrade() else {
            return Ended::CacheGone;
        };
        let mut state = cache.state();
        state.drop_all();
        state.vouched_until = rhythm.lease.map(|lease| started + lease);
        state.live = true;
    }
    tracing::debug!("{} on: {} announces changes", S::CACHE, S::SOURCE);
    loop {
        match tokio::time::timeout(rhythm.every, source.next_change(&mut link)).await {
            Ok(Ok(change)) => match cache.upgrade() {
                Some(cache) => cache.apply(&change),
                None => return Ended::CacheGone,
            },
            Ok(Err(error)) => return lost(error),
            Err(_) => {
                if cache.strong_count() == 0 {
                    return Ended::CacheGone;
                }
                let started = Instant::now();
                let checked = tokio::time::timeout(rhythm.deadline, source.check(&mut link)).await;
                let change = match checked {
                    Ok(Ok(change)) => change,
                    Ok(Err(error)) => return lost(error),
                    Err(_) => {
                        return lost(anyhow::anyhow!(
                            "{} did not answer within {:?}",
                            S::SOURCE,
                            rhythm.deadline
                        ));
                    }
                };
                let Some(cache) = cache.upgrade() else {
                    return Ended::CacheGone;
                };
                if let Some(change) = change {
                    cache.apply(&change);
                }
                if let Some(lease) = rhythm.lease {
                    cache.vouch_until(started + lease);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
