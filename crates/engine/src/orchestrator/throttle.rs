//! The per-contact turn rate limit: a token bucket per conversation (one contact on one
//! channel), so a customer who floods the gateway is answered at a steady pace, in few turns,
//! instead of costing one LLM turn per message. It only says when a turn may start; the lanes
//! decide what waits and what is merged. It knows no store and no platform.
//!
//! The same bucket, keyed by something else, makes the budgets of new conversations and LLM
//! calls (see `super::budgets`) and the web chat's per-address budget.
//!
//! The buckets live in memory, on the instance whose lanes work the conversation: a
//! conversation's lane runs on one instance at a time, so one bucket is enough. A restart, or
//! a partition moving to another instance, starts the contact with a full bucket again: at
//! most one extra burst of turns, never a lost or repeated message.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use concierge_domain::ConversationId;

/// The map is swept of full buckets (contacts who stopped writing) once it grows past this,
/// or past twice its size after the last sweep.
const SWEEP_AT_LEAST: usize = 1024;

/// One turn, in bucket units: a bucket refills `per_minute` units a microsecond, so one turn
/// a minute is one unit a microsecond. Integers, so a wait is exact.
const TURN: u64 = 60_000_000;

/// At most `per_minute` turns a minute per conversation (or per key `K`), after a first
/// `burst` back to back.
pub struct ContactRate<K = ConversationId> {
    per_minute: u64,
    /// A full bucket, in units.
    capacity: u64,
    // A std mutex: held for a few arithmetic operations, never across an `.await`.
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Units available at `at`.
    units: u64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> ContactRate<K> {
    /// The limit, or `None` when `per_minute` is 0 (no limit). A `burst` of 0 counts as 1.
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            per_minute: u64::from(per_minute),
            capacity: u64::from(burst.max(1)) * TURN,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: SWEEP_AT_LEAST,
            }),
        })
    }

    /// Takes one turn for `conversation` at `now`, or says how long until one is free.
    pub fn try_take(&self, conversation: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.map.len() >= buckets.sweep_at {
            buckets
                .map
                .retain(|_, b| self.refilled(*b, now) < self.capacity);
            buckets.sweep_at = SWEEP_AT_LEAST.max(buckets.map.len() * 2);
        }
        let bucket = buckets.map.entry(conversation.clone()).or_insert(Bucket {
            units: self.capacity,
            at: now,
        });
        let units = self.refilled(*bucket, now);
        if units >= TURN {
            *bucket = Bucket {
                units: units - TURN,
                at: now,
            };
            return Ok(());
        }
        *bucket = Bucket { units, at: now };
        Err(Duration::from_micros(
            (TURN - units).div_ceil(self.per_minute),
        ))
    }

    /// Takes `turns` more for `key` after the fact, as far as the bucket holds (the extra LLM
    /// calls of a turn that was let through on one).
    pub fn spend(&self, key: &K, turns: u64, now: Instant) {
        if turns == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.map.entry(key.clone()).or_insert(Bucket {
            units: self.capacity,
            at: now,
        });
        let units = self.refilled(*bucket, now);
        *bucket = Bucket {
            units: units.saturating_sub(turns.saturating_mul(TURN)),
            at: now,
        };
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> u64 {
        let micros =
            u64::try_from(now.saturating_duration_since(bucket.at).as_micros()).unwrap_or(u64::MAX);
        bucket
            .units
            .saturating_add(micros.saturating_mul(self.per_minute))
            .min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_domain::{ChannelId, ContactId};

    fn conversation(contact: &str) -> ConversationId {
        ConversationId::legacy(
            &ChannelId::parse("whatsapp").unwrap(),
            &ContactId::parse(contact).unwrap(),
        )
    }

    #[test]
    fn a_burst_then_one_turn_per_interval() {
        let rate = ContactRate::new(6, 2).unwrap();
        let ann = conversation("ann");
        let t0 = Instant::now();
        assert_eq!(rate.try_take(&ann, t0), Ok(()));
        assert_eq!(rate.try_take(&ann, t0), Ok(()));
        // Six a minute: the next one in ten seconds.
        assert_eq!(rate.try_take(&ann, t0), Err(Duration::from_secs(10)));
        let later = t0 + Duration::from_secs(4);
        assert_eq!(rate.try_take(&ann, later), Err(Duration::from_secs(6)));
        assert_eq!(rate.try_take(&ann, t0 + Duration::from_secs(10)), Ok(()));
        assert!(rate.try_take(&ann, t0 + Duration::from_secs(10)).is_err());
        // Another contact has a bucket of their own.
        assert_eq!(rate.try_take(&conversation("bob"), t0), Ok(()));
        // An idle contact gets the whole burst back, not more.
        let idle = t0 + Duration::from_secs(3600);
        assert_eq!(rate.try_take(&ann, idle), Ok(()));
        assert_eq!(rate.try_take(&ann, idle), Ok(()));
        assert!(rate.try_take(&ann, idle).is_err());
    }

    #[test]
    fn spent_turns_empty_the_bucket_as_far_as_it_holds() {
        let rate = ContactRate::<()>::new(60, 10).unwrap();
        let t0 = Instant::now();
        assert_eq!(rate.try_take(&(), t0), Ok(()));
        rate.spend(&(), 100, t0);
        assert_eq!(rate.try_take(&(), t0), Err(Duration::from_secs(1)));
        assert_eq!(rate.try_take(&(), t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn zero_is_no_limit_and_a_zero_burst_is_one() {
        assert!(ContactRate::<ConversationId>::new(0, 3).is_none());
        let rate = ContactRate::new(60, 0).unwrap();
        let t0 = Instant::now();
        assert_eq!(rate.try_take(&conversation("ann"), t0), Ok(()));
        assert_eq!(
            rate.try_take(&conversation("ann"), t0),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn full_buckets_are_swept() {
        let rate = ContactRate::new(60, 1).unwrap();
        let t0 = Instant::now();
        for i in 0..SWEEP_AT_LEAST {
            assert_eq!(rate.try_take(&conversation(&format!("c{i}")), t0), Ok(()));
        }
        // A minute later every bucket is full again: the sweep forgets them all.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(rate.try_take(&conversation("new"), later), Ok(()));
        let buckets = rate.buckets.lock().unwrap();
        assert_eq!(buckets.map.len(), 1);
        assert_eq!(buckets.sweep_at, SWEEP_AT_LEAST);
    }
}
