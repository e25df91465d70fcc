//! A send-rate limiter: spaces calls evenly at a configured rate, so a burst of replies stays
//! within a platform's throughput instead of earning rate-limit errors.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second` calls a second at most; a rate of 0 or less means no limit.
    pub fn new(per_second: f64) -> Self {
        // A rate too small to express waits an hour between calls, never panics.
        let interval = if per_second > 0.0 && per_second.is_finite() {
            Duration::try_from_secs_f64(1.0 / per_second)
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(3600))
        } else {
            Duration::ZERO
        };
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Holds every later call back for `duration` (a platform asked the whole sender to wait).
    pub async fn pause(&self, duration: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + duration);
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let slot = {
            // Held only to reserve a slot, never while sleeping.
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_at_the_rate() {
        let limiter = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Five calls at 10/s: the fifth waits four intervals.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_later_call() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.pause(Duration::from_secs(3)).await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
