//! The rules of the change-driven cache, tested once, on a toy policy and a scripted
//! change source.

use super::*;

/// Entries named by id, with the owner and rank they are given; a value is its weight.
struct Items;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Item {
    owner: Option<u32>,
    id: u32,
    rank: u8,
}

impl Policy for Items {
    type Key = Item;
    type Value = usize;
    type Owner = u32;

    fn owner(key: &Item) -> Option<u32> {
        key.owner
    }

    fn weight(_: &Item, value: &usize) -> usize {
        *value
    }

    fn rank(key: &Item, _: &usize) -> u8 {
        key.rank
    }
}

fn item(owner: u32, id: u32) -> Item {
    Item {
        owner: Some(owner),
        id,
        rank: 0,
    }
}

fn live(budget: usize) -> ChangeCache<Items> {
    let cache = ChangeCache::new(budget);
    cache.set_live(true);
    cache
}

/// Reads `key` and keeps what was read (weight 10) if the cache allows; whether kept.
fn read(cache: &ChangeCache<Items>, key: &Item) -> bool {
    match cache.lookup(key, |_| ()) {
        Ok(()) => true,
        Err(Some(ticket)) => cache.keep(ticket, key.clone(), 10),
        Err(None) => false,
    }
}

fn hit(cache: &ChangeCache<Items>, key: &Item) -> bool {
    cache.lookup(key, |_| ()).is_ok()
}

#[test]
fn a_read_is_not_kept_if_anything_was_dropped_after_its_ticket() {
    let cache = live(1000);
    let key = item(1, 1);
    let Err(Some(ticket)) = cache.lookup(&key, |_| ()) else {
        panic!("a miss on a live cache gives a ticket")
    };
    // A change to another owner lands while the read is on its way: the read may predate
    // a change the cache cannot tell apart, so it is not kept.
    cache.drop_owner(&2);
    assert!(!cache.keep(ticket, key.clone(), 10));
    assert!(!hit(&cache, &key));

    let Err(Some(ticket)) = cache.lookup(&key, |_| ()) else {
        panic!("a miss")
    };
    cache.drop_all();
    assert!(
        !cache.keep(ticket, key.clone(), 10),
        "nor after a drop of all"
    );

    let Err(Some(ticket)) = cache.lookup(&key, |_| ()) else {
        panic!("a miss")
    };
    assert!(
        cache.keep(ticket, key.clone(), 10),
        "nothing dropped since: kept"
    );
    assert_eq!(cache.lookup(&key, |weight| *weight), Ok(10));
}

#[test]
fn an_amendment_changes_only_a_kept_entry_and_only_if_nothing_was_dropped_since_its_ticket() {
    let cache = live(1000);
    let (key, other) = (item(1, 1), item(1, 2));
    assert!(read(&cache, &key));

    // Nothing kept under `other`: an amendment never adds an entry.
    let ticket = cache.ticket().expect("a live cache gives tickets");
    assert!(!cache.amend(ticket, &other, |weight| *weight = 20));
    assert!(!hit(&cache, &other));

    // A drop after the ticket: the amendment may carry a read from before the change.
    let ticket = cache.ticket().expect("a ticket");
    cache.drop_owner(&2);
    assert!(!cache.amend(ticket, &key, |weight| *weight = 20));
    assert_eq!(cache.lookup(&key, |weight| *weight), Ok(10));

    // Nothing dropped since: amended, and its new weight counted.
    let ticket = cache.ticket().expect("a ticket");
    assert!(cache.amend(ticket, &key, |weight| *weight = 20));
    assert_eq!(cache.lookup(&key, |weight| *weight), Ok(20));
    assert_eq!(cache.weight(), 20);

    // A dark cache gives no ticket.
    cache.set_live(false);
    assert_eq!(cache.ticket(), None);
}

#[test]
fn nothing_is_kept_or_served_while_the_source_is_not_confirmed() {
    let cache = ChangeCache::<Items>::new(1000);
    let key = item(1, 1);
    assert_eq!(cache.lookup(&key, |_| ()), Err(None), "not live: no ticket");

    cache.set_live(true);
    let Err(Some(ticket)) = cache.lookup(&key, |_| ()) else {
        panic!("a miss")
    };
    cache.set_live(false);
    assert!(
        !cache.keep(ticket, key.clone(), 10),
        "a ticket of a live cache"
    );
    assert!(cache.is_empty());

    // A polled source vouches for a while only.
    cache.set_live(true);
    cache.vouch_until(Instant::now() + Duration::from_secs(60));
    assert!(read(&cache, &key));
    assert!(hit(&cache, &key), "served while vouched for");
    let Err(Some(ticket)) = cache.lookup(&item(1, 2), |_| ()) else {
        panic!("a miss")
    };
    cache.vouch_until(Instant::now() - Duration::from_millis(1));
    assert_eq!(
        cache.lookup(&key, |_| ()),
        Err(None),
        "kept, but not served"
    );
    assert!(!cache.keep(ticket, item(1, 2), 10), "nor kept once lapsed");
    cache.vouch_until(Instant::now() + Duration::from_secs(60));
    assert!(hit(&cache, &key), "served again after a check that passed");
}

#[test]
fn going_dark_drops_everything_and_a_new_link_starts_empty() {
    let cache = live(1000);
    let keys: Vec<Item> = (0..10).map(|id| item(id % 3, id)).collect();
    for key in &keys {
        assert!(read(&cache, key));
    }
    assert_eq!((cache.len(), cache.weight()), (10, 100));
    cache.set_live(false);
    assert_eq!((cache.len(), cache.weight()), (0, 0));
    cache.set_live(true);
    assert!(keys.iter().all(|key| !hit(&cache, key)), "nothing survives");
}

#[test]
fn a_change_drops_its_owners_entries_and_every_entry_without_an_owner() {
    let cache = live(1000);
    let (ann, bob) = (item(1, 1), item(2, 2));
    let page = Item {
        owner: None,
        id: 3,
        rank: 0,
    };
    for key in [&ann, &bob, &page] {
        assert!(read(&cache, key));
    }
    cache.apply(&Change::Owner(1));
    assert!(!hit(&cache, &ann) && !hit(&cache, &page));
    assert!(hit(&cache, &bob), "another owner's entry stays");
    assert_eq!(cache.weight(), 10);
    cache.apply(&Change::All);
    assert!(cache.is_empty());
    assert_eq!(cache.weight(), 0);
}

#[test]
fn a_full_cache_drops_low_ranks_first_down_to_half_and_never_exceeds_its_budget() {
    let budget = 1000;
    let cache = live(budget);
    let hot: Vec<Item> = (0..20)
        .map(|id| Item {
            owner: Some(7),
            id,
            rank: 2,
        })
        .collect();
    for key in &hot {
        assert!(read(&cache, key));
    }
    let mut made_room = false;
    for id in 100..400 {
        let key = Item {
            owner: Some(id % 5),
            id,
            rank: u8::try_from(id % 2).expect("0 or 1"),
        };
        let before = cache.weight();
        assert!(read(&cache, &key), "each read is kept when it is read");
        let after = cache.weight();
        assert!(after <= budget, "{after} over the budget");
        assert_eq!(after, cache.len() * 10, "the weight is what is kept");
        if after < before {
            made_room = true;
            assert!(
                (budget / 2 - 10..=budget / 2 + 10).contains(&after),
                "making room keeps about half: {after}"
            );
        }
    }
    assert!(made_room);
    assert!(hot.iter().all(|key| hit(&cache, key)), "the top rank stays");
    // The owner index follows what was dropped for room.
    cache.drop_owner(&7);
    assert!(hot.iter().all(|key| !hit(&cache, key)));
    assert_eq!(cache.weight(), cache.len() * 10);

    let Err(Some(ticket)) = cache.lookup(&item(1, 1), |_| ()) else {
        panic!("a miss")
    };
    assert!(
        !cache.keep(ticket, item(1, 1), budget / 4 + 1),
        "an entry over a quarter of the budget is not kept"
    );
}

#[test]
fn reconnect_waits_double_from_50ms_to_1s_and_start_over_after_a_confirmed_run() {
    let mut backoff = Backoff::new();
    let waits: Vec<u64> = (0..7)
        .map(|_| u64::try_from(backoff.next_wait().as_millis()).expect("a short wait"))
        .collect();
    assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
    backoff.reset();
    assert_eq!(backoff.next_wait(), Duration::from_millis(50));
}

/// What the scripted source does next.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    Pass,
    Fail,
    Hang,
    FindChange,
}

struct Script {
    /// Connects that fail before one succeeds.
    failures: usize,
    refuse: bool,
    check: Check,
    /// When each connect was attempted.
    attempts: Vec<Instant>,
}

#[derive(Clone)]
struct Control(Arc<Mutex<Script>>);

impl Control {
    fn new(failures: usize) -> Self {
        Self(Arc::new(Mutex::new(Script {
            failures,
            refuse: false,
            check: Check::Pass,
            attempts: Vec::new(),
        })))
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Scripted {
    control: Control,
    changes: tokio::sync::mpsc::UnboundedReceiver<Change<u32>>,
}

impl ChangeSource<Items> for Scripted {
    type Link = ();
    const CACHE: &'static str = "test cache";
    const SOURCE: &'static str = "the scripted source";

    async fn connect(&mut self, _: &Weak<ChangeCache<Items>>) -> Result<(), Failure> {
        let mut script = self.control.script();
        script.attempts.push(Instant::now());
        if script.refuse {
            return Err(Failure::Refused(anyhow::anyhow!("refused")));
        }
        if script.failures > 0 {
            script.failures -= 1;
            return Err(Failure::Lost(anyhow::anyhow!("not yet")));
        }
        Ok(())
    }

    async fn next_change(&mut self, (): &mut ()) -> anyhow::Result<Change<u32>> {
        self.changes
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the link closed"))
    }

    async fn check(&mut self, (): &mut ()) -> anyhow::Result<Option<Change<u32>>> {
        let check = self.control.script().check;
        match check {
            Check::Pass => Ok(None),
            Check::Fail => Err(anyhow::anyhow!("the check failed")),
            Check::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(None)
            }
            Check::FindChange => Ok(Some(Change::All)),
        }
    }
}

const FAST: Rhythm = Rhythm {
    every: Duration::from_millis(10),
    deadline: Duration::from_millis(50),
    lease: None,
};

/// A supervised scripted source, and the handles a test drives it with.
struct Running {
    cache: Arc<ChangeCache<Items>>,
    control: Control,
    changes: tokio::sync::mpsc::UnboundedSender<Change<u32>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(failures: usize, refuse: bool, rhythm: Rhythm) -> Running {
    let cache = Arc::new(ChangeCache::new(1000));
    let control = Control::new(failures);
    control.script().refuse = refuse;
    let (changes, receiver) = tokio::sync::mpsc::unbounded_channel();
    let source = Scripted {
        control: control.clone(),
        changes: receiver,
    };
    let task = supervise(&cache, source, rhythm);
    Running {
        cache,
        control,
        changes,
        task,
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} within 5s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn the_loop_backs_off_goes_live_applies_changes_and_goes_dark_on_a_failed_check() {
    // Five failed connects: the waits grow to 1 s.
    let Running {
        cache,
        control,
        changes,
        ..
    } = start(5, false, FAST);
    wait_until("live", || cache.is_live()).await;
    let attempts = control.script().attempts.clone();
    assert_eq!(attempts.len(), 6);
    for (pair, wait) in attempts.windows(2).zip([50, 100, 200, 400, 800]) {
        let waited = pair[1] - pair[0];
        assert!(
            waited >= Duration::from_millis(wait),
            "waited {waited:?}, not {wait} ms"
        );
    }

    let (ann, bob) = (item(1, 1), item(2, 2));
    assert!(read(&cache, &ann) && read(&cache, &bob));
    changes.send(Change::Owner(1)).expect("the loop listens");
    wait_until("ann's entry dropped", || !hit(&cache, &ann)).await;
    assert!(hit(&cache, &bob));

    // A check that finds a change (a polled source) drops what it names.
    control.script().check = Check::FindChange;
    wait_until("everything dropped", || cache.is_empty()).await;
    assert!(cache.is_live());

    control.script().check = Check::Fail;
    assert!(read(&cache, &bob));
    wait_until("dark", || !cache.is_live()).await;
    assert!(cache.is_empty(), "going dark dropped everything");
    let lost = Instant::now();
    control.script().check = Check::Pass;
    wait_until("live again", || cache.is_live()).await;
    let reconnected = *control.script().attempts.last().expect("attempts");
    assert!(
        reconnected - lost < Duration::from_millis(500),
        "after a confirmed run the wait starts over at 50 ms, not 1 s: {:?}",
        reconnected - lost
    );
}

#[tokio::test]
async fn a_check_that_does_not_answer_within_its_deadline_takes_the_cache_dark() {
    let Running {
        cache,
        control,
        changes: _changes,
        ..
    } = start(0, false, FAST);
    wait_until("live", || cache.is_live()).await;
    assert!(read(&cache, &item(1, 1)));
    control.script().check = Check::Hang;
    wait_until("dark", || !cache.is_live()).await;
    assert!(cache.is_empty());
}

#[tokio::test]
async fn a_lost_link_takes_the_cache_dark() {
    let Running {
        cache,
        control,
        changes,
        ..
    } = start(0, false, FAST);
    wait_until("live", || cache.is_live()).await;
    assert!(read(&cache, &item(1, 1)));
    drop(changes);
    wait_until("dark", || !cache.is_live()).await;
    assert!(cache.is_empty());
    wait_until("a reconnect", || control.script().attempts.len() >= 2).await;
}

#[tokio::test]
async fn a_polled_source_serves_only_while_its_checks_vouch() {
    let rhythm = Rhythm {
        lease: Some(Duration::from_millis(40)),
        deadline: Duration::from_secs(30),
        ..FAST
    };
    let Running {
        cache,
        control,
        changes: _changes,
        ..
    } = start(0, false, rhythm);
    wait_until("live", || cache.is_live()).await;
    let key = item(1, 1);
    wait_until("kept", || read(&cache, &key)).await;
    // Checks that pass keep vouching, lease after lease.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hit(&cache, &key), "served while the checks pass");
    // The check stalls (no failure, no deadline yet): the lease runs out.
    control.script().check = Check::Hang;
    wait_until("not served", || cache.lookup(&key, |_| ()) == Err(None)).await;
    assert!(cache.is_live(), "still live: only the lease lapsed");
}

#[tokio::test]
async fn the_loop_ends_when_the_store_refuses_or_the_cache_is_gone() {
    let Running {
        cache,
        control,
        changes: _changes,
        task,
    } = start(0, true, FAST);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a refusal ends the loop")
        .expect("no panic");
    assert!(!cache.is_live());
    assert_eq!(control.script().attempts.len(), 1, "and is not retried");

    let Running {
        cache,
        changes: _changes,
        task,
        ..
    } = start(0, false, FAST);
    wait_until("live", || cache.is_live()).await;
    drop(cache);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the loop ends with its cache")
        .expect("no panic");
}
