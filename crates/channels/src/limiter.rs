//! A send-rate limiter: spaces calls evenly at a configured rate, so a burst of replies stays
//! within a platform's throughput instead of earning rate-limit errors; slower for a while
//! when the platform reports the sender went too fast anyway.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How many times the spacing may double after rate-limit reports.
const MAX_SLOWDOWN_SHIFT: u32 = 4;
/// How long the spacing stays wider after the last rate-limit report.
const SLOWDOWN_HOLD: Duration = Duration::from_secs(300);
/// The spacing of a slowed limiter that had none (no configured rate).
const SLOWED_FLOOR: Duration = Duration::from_millis(250);

pub struct RateLimiter {
    interval: Duration,
    /// Held only to reserve a slot or record a report, never while sleeping.
    state: Mutex<State>,
}

struct State {
    next: Instant,
    /// The spacing is doubled this many times until `slowed_until`.
    shift: u32,
    slowed_until: Instant,
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
        let now = Instant::now();
        Self {
            interval,
            state: Mutex::new(State {
                next: now,
                shift: 0,
                slowed_until: now,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds every later call back for `duration` (a platform asked the whole sender to wait).
    pub async fn pause(&self, duration: Duration) {
        let mut state = self.state();
        state.next = state.next.max(Instant::now() + duration);
    }

    /// The platform reported that the sender goes too fast: later calls wait `pause`, and
    /// for five minutes from this report are spaced twice as widely as before it (up to 16
    /// times the configured spacing). Answers the spacing now in force.
    pub fn slow_down(&self, pause: Duration) -> Duration {
        let mut state = self.state();
        let now = Instant::now();
        state.shift = if now < state.slowed_until {
            (state.shift + 1).min(MAX_SLOWDOWN_SHIFT)
        } else {
            1
        };
        state.slowed_until = now + SLOWDOWN_HOLD;
        state.next = state.next.max(now + pause);
        self.spacing(&state, now)
    }

    fn spacing(&self, state: &State, now: Instant) -> Duration {
        if now >= state.slowed_until || state.shift == 0 {
            return self.interval;
        }
        self.interval.max(SLOWED_FLOOR) * (1u32 << state.shift)
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut state = self.state();
            let now = Instant::now();
            let slot = state.next.max(now);
            state.next = slot + self.spacing(&state, now);
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

    #[tokio::test(start_paused = true)]
    async fn rate_limit_reports_widen_the_spacing_for_a_while() {
        let limiter = RateLimiter::new(10.0);
        assert_eq!(
            limiter.slow_down(Duration::ZERO),
            Duration::from_millis(500)
        );
        assert_eq!(limiter.slow_down(Duration::ZERO), Duration::from_secs(1));
        for _ in 0..5 {
            limiter.slow_down(Duration::ZERO);
        }
        // At most 16 times the base spacing (itself no less than 250 ms once slowed).
        assert_eq!(limiter.slow_down(Duration::ZERO), Duration::from_secs(4));
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        // Five minutes without a report: back to the configured rate.
        tokio::time::sleep(SLOWDOWN_HOLD).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert!(start.elapsed() <= Duration::from_secs(4));
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_pauses_at_once_even_without_a_rate() {
        let limiter = RateLimiter::new(0.0);
        limiter.slow_down(Duration::from_secs(2));
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
