//! When to try a failed send again.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter: attempt n waits between half and all of
/// `initial * 2^(n-1)`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `attempt`-th failed attempt (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let millis = u64::try_from(full.as_millis()).unwrap_or(u64::MAX);
        if millis < 2 {
            return full;
        }
        let jittered = rand::rng().random_range(millis / 2..=millis);
        Duration::from_millis(jittered)
    }

    /// The wait when the platform said how long: its figure, plus a little jitter so that
    /// many replies held back together do not all come back in the same millisecond.
    pub fn after(&self, retry_after: Duration) -> Duration {
        let spread = (retry_after.as_millis() / 10).clamp(1, 1000) as u64;
        retry_after + Duration::from_millis(rand::rng().random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(b.delay(40) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn honours_retry_after() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let d = b.after(Duration::from_secs(30));
        assert!(d >= Duration::from_secs(30) && d <= Duration::from_secs(31));
    }
}
