//! Exponential backoff with jitter, the one retry policy of the workspace: the
//! supervisor's restarts, connectors that reconnect on their own (IRC, EventStreams),
//! and the bus stages' retries (`flotilla_bus::stage`: Redis delivery, the IRC log
//! writer, a failing bus). Each failure doubles the wait up to a ceiling, and the
//! actual wait is drawn from the upper half of it with [`crate::random`], so a fleet
//! restarted together does not reconnect together.
//!
//! Pure: it computes waits and never sleeps; the caller sleeps on its own clock.

use std::time::Duration;

/// Backoff state: how long to wait before the next attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), failures: 0 }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before trying again.
    pub fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.min.saturating_mul(1u32 << exponent.min(31)).min(self.max);
        // Between half and all of the ceiling.
        ceiling.mul_f64(0.5 + crate::random::fraction() * 0.5)
    }

    /// Forgets past failures (after a success that lasted).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_ceiling() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = Duration::from_secs(2 * (1u64 << i)).min(Duration::from_secs(300));
            assert!(*d >= ceiling / 2 && *d <= ceiling, "attempt {i}: {d:?} vs {ceiling:?}");
        }
        assert_eq!(backoff.failures(), 12);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(2));
    }
}
