//! Fair admission to password hashing. Every Login, Register and ChangePassword costs an
//! argon2 hash, and the hashing threads are few (one on a two-core machine). Before this
//! gate, a flood from one address filled the shared hashing queue and everybody else's
//! logins waited behind it or were turned away. Now each client address gets a bounded
//! share before it costs anything:
//!
//! - **in flight**: at most `in_flight_per_address` calls of one address may wait for or
//!   hold a hash in this process (counted here: it guards this process's queue);
//! - **hash budget**: at most `hashes.limit` hashes per address per `hashes.window`,
//!   counted in the token store, so every replica shares it;
//! - **registration budget**: at most `registrations.limit` Register calls that reach
//!   hashing per address per window, also in the token store.
//!
//! Past any of them the call is RESOURCE_EXHAUSTED with a retry delay, decided before the
//! user is looked up, so the answer is the same for a real and an unknown name. A limit
//! of 0 turns that check off. IPv6 clients are counted by their /64, the block one
//! subscriber gets.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use crate::{error::AuthError, store::TokenStore};

/// How long a client turned away for having too many calls in flight is told to wait:
/// a hash takes tens of milliseconds, so by then its earlier calls are done.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// How long a refusal is held before it is sent. A flooding client that ignores the
/// retry delay and calls again at once would otherwise make the server answer thousands
/// of refusals a second, and those answers take the CPU that other clients' logins need
/// (measured in tests/flood.rs: with refusals sent at once, a user's logins under a
/// 128-call flood took 0.4 to 2.5 s). Held for this long, each flooding call costs one
/// sleeping task, and 128 of them get at most 512 answers a second.
pub const REFUSAL_PAUSE: Duration = Duration::from_millis(250);

/// A count allowed per window; a limit of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub window: Duration,
}

/// The per-address limits in front of password hashing.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub in_flight_per_address: u32,
    pub hashes: Budget,
    pub registrations: Budget,
}

impl AdmissionLimits {
    /// No limit at all (for in-process callers and tests that measure something else).
    pub const NONE: Self = Self {
        in_flight_per_address: 0,
        hashes: Budget {
            limit: 0,
            window: Duration::from_secs(60),
        },
        registrations: Budget {
            limit: 0,
            window: Duration::from_secs(3600),
        },
    };
}

/// Why a call wants a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Login and ChangePassword: one hash.
    Verify,
    /// Register: one hash, and one of the address's registrations.
    Register,
}

/// The gate itself; one per process, shared by every call.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    in_flight: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// Held while a call may wait for or hold a hash; dropping it (also when the call is
/// cancelled) gives the address's place back.
#[derive(Debug)]
#[must_use = "the place is given back when the ticket is dropped"]
pub struct Ticket {
    /// The counted client address; `None` for in-process callers.
    address: Option<IpAddr>,
    /// The in-flight counts to give the place back to, when the address holds one.
    place: Option<Arc<Mutex<HashMap<IpAddr, u32>>>>,
}

impl Ticket {
    /// A ticket that holds no place (callers that are not limited, and tests).
    pub fn untracked(address: Option<IpAddr>) -> Self {
        Self {
            address: address.map(counted_address),
            place: None,
        }
    }

    /// The address the hashing queue serves this call under.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let (Some(in_flight), Some(address)) = (self.place.take(), self.address) {
            let mut counts = lock(&in_flight);
            if let Some(count) = counts.get_mut(&address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&address);
                }
            }
        }
    }
}

/// `refusal`, after `REFUSAL_PAUSE`.
async fn pause(refusal: AuthError) -> AuthError {
    tokio::time::sleep(REFUSAL_PAUSE).await;
    refusal
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The address limits count `ip` under: an IPv4 address (also one mapped into IPv6) as
/// it is, an IPv6 address by its /64.
pub fn counted_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            in_flight: Arc::default(),
        }
    }

    /// Admits one call of `client` (unknown for in-process callers, which are not
    /// limited) that is about to cost a hash, or says how long it must wait.
    pub async fn admit(
        &self,
        tokens: &dyn TokenStore,
        client: Option<IpAddr>,
        purpose: Purpose,
    ) -> Result<Ticket, AuthError> {
        let Some(address) = client.map(counted_address) else {
            return Ok(Ticket::untracked(None));
        };
        let ticket = match self.take_place(address) {
            Ok(ticket) => ticket,
            Err(refused) => return Err(pause(refused).await),
        };
        let subject = format!("a:{address}");
        let mut budgets = Vec::with_capacity(2);
        if purpose == Purpose::Register && self.limits.registrations.limit > 0 {
            budgets.push(("registrations", self.limits.registrations));
        }
        if self.limits.hashes.limit > 0 {
            budgets.push(("hashes", self.limits.hashes));
        }
        if !budgets.is_empty()
            && let Some(wait) = tokens.spend_allowance(&subject, &budgets).await?
        {
            tracing::debug!(purpose = ?purpose, "password check refused: address over its budget");
            return Err(pause(AuthError::RateLimited(wait)).await);
        }
        Ok(ticket)
    }

    fn take_place(&self, address: IpAddr) -> Result<Ticket, AuthError> {
        let limit = self.limits.in_flight_per_address;
        if limit == 0 {
            return Ok(Ticket::untracked(Some(address)));
        }
        let mut counts = lock(&self.in_flight);
        let count = counts.entry(address).or_insert(0);
        if *count >= limit {
            tracing::debug!("password check refused: address has too many in flight");
            return Err(AuthError::RateLimited(IN_FLIGHT_RETRY));
        }
        *count += 1;
        Ok(Ticket {
            address: Some(address),
            place: Some(self.in_flight.clone()),
        })
    }

    /// Calls of `address` now waiting for or holding a hash (for tests).
    pub fn in_flight(&self, address: IpAddr) -> u32 {
        lock(&self.in_flight)
            .get(&counted_address(address))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryTokenStore;

    fn limits(in_flight: u32, hashes: u32, registrations: u32) -> AdmissionLimits {
        AdmissionLimits {
            in_flight_per_address: in_flight,
            hashes: Budget {
                limit: hashes,
                window: Duration::from_secs(60),
            },
            registrations: Budget {
                limit: registrations,
                window: Duration::from_secs(3600),
            },
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn wait_of(result: Result<Ticket, AuthError>) -> Duration {
        match result {
            Err(AuthError::RateLimited(wait)) => wait,
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_address_gets_only_its_places_in_flight_and_gets_them_back_on_drop() {
        let store = MemoryTokenStore::new(Duration::from_secs(60));
        let admission = Admission::new(limits(2, 0, 0));
        let a = ip("192.0.2.1");
        let first = admission.admit(&store, a, Purpose::Verify).await.unwrap();
        let _second = admission.admit(&store, a, Purpose::Verify).await.unwrap();
        let wait = wait_of(admission.admit(&store, a, Purpose::Verify).await);
        assert_eq!(wait, IN_FLIGHT_RETRY);
        // Another address is not affected.
        let _other = admission
            .admit(&store, ip("192.0.2.2"), Purpose::Verify)
            .await
            .unwrap();
        drop(first);
        assert_eq!(admission.in_flight(a.unwrap()), 1);
        let _third = admission.admit(&store, a, Purpose::Verify).await.unwrap();
    }

    #[tokio::test]
    async fn the_hash_budget_refuses_past_its_limit_with_the_time_left_in_the_window() {
        let store = MemoryTokenStore::new(Duration::from_secs(60));
        let admission = Admission::new(limits(0, 3, 0));
        let a = ip("192.0.2.3");
        for _ in 0..3 {
            drop(admission.admit(&store, a, Purpose::Verify).await.unwrap());
        }
        let wait = wait_of(admission.admit(&store, a, Purpose::Verify).await);
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60));
        drop(
            admission
                .admit(&store, ip("192.0.2.4"), Purpose::Verify)
                .await
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn registrations_have_their_own_budget_and_logins_are_not_counted_in_it() {
        let store = MemoryTokenStore::new(Duration::from_secs(60));
        let admission = Admission::new(limits(0, 100, 2));
        let a = ip("192.0.2.5");
        for _ in 0..5 {
            drop(admission.admit(&store, a, Purpose::Verify).await.unwrap());
        }
        for _ in 0..2 {
            drop(admission.admit(&store, a, Purpose::Register).await.unwrap());
        }
        let wait = wait_of(admission.admit(&store, a, Purpose::Register).await);
        assert!(wait > Duration::from_secs(3500), "{wait:?}");
        // Logins from that address still go on.
        drop(admission.admit(&store, a, Purpose::Verify).await.unwrap());
    }

    #[tokio::test]
    async fn callers_without_an_address_and_zero_limits_are_not_limited() {
        let store = MemoryTokenStore::new(Duration::from_secs(60));
        let strict = Admission::new(limits(1, 1, 1));
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(strict.admit(&store, None, Purpose::Register).await.unwrap());
        }
        let open = Admission::new(AdmissionLimits::NONE);
        for _ in 0..10 {
            held.push(
                open.admit(&store, ip("192.0.2.6"), Purpose::Register)
                    .await
                    .unwrap(),
            );
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a = counted_address("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap());
        let b = counted_address("2001:db8:1:2::1".parse().unwrap());
        let c = counted_address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            counted_address("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }
}
