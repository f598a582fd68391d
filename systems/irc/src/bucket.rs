//! Flood control: a token bucket. A connection may send `burst` paced lines at once,
//! then one every `1/rate` seconds, so a server's flood protection never kicks a bot
//! that has much to say. The same bucket paces how fast a connector opens connections,
//! so a fleet (re)starting together does not storm the server.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: up to `burst` tokens, refilled at `rate` tokens per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is at least one token.
    pub fn new(burst: u32, rate: f64, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { burst, rate: if rate > 0.0 { rate } else { f64::MIN_POSITIVE }, tokens: burst, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }

    /// Takes a token if one is there; otherwise says how long until one is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(now))
        }
    }

    /// How long until a token is there (zero if one is).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).min(1e9))
        }
    }

    /// Tokens available now (whole ones).
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        self.tokens.floor() as u32
    }
}

/// Hands out start times at most `rate` per second with a burst of `burst` (the generic
/// cell rate algorithm): each caller reserves the next free slot and waits for it, so
/// many tasks asking at once are spread evenly instead of retrying together.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    burst: u32,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(rate: f64, burst: u32) -> Pacer {
        let interval = if rate > 0.0 { Duration::from_secs_f64(1.0 / rate) } else { Duration::from_secs(1) };
        Pacer { interval, burst: burst.max(1), next: None }
    }

    /// Reserves a slot; returns when it starts (never before `now`).
    pub fn reserve(&mut self, now: Instant) -> Instant {
        // Up to `burst` slots may be used at once after a quiet spell.
        let earliest = now.checked_sub(self.interval * (self.burst - 1)).unwrap_or(now);
        let slot = self.next.map_or(earliest, |next| next.max(earliest));
        self.next = Some(slot + self.interval);
        slot.max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spreads_a_crowd() {
        let start = Instant::now() + Duration::from_secs(100);
        let mut pacer = Pacer::new(10.0, 3);
        let slots: Vec<u64> = (0..6).map(|_| (pacer.reserve(start) - start).as_millis() as u64).collect();
        assert_eq!(slots, vec![0, 0, 0, 100, 200, 300]);
        // After a quiet second the burst is available again.
        let later = start + Duration::from_secs(2);
        let slots: Vec<u64> = (0..4).map(|_| (pacer.reserve(later) - later).as_millis() as u64).collect();
        assert_eq!(slots, vec![0, 0, 0, 100]);
    }

    /// Takes at each offset (ms after start); records which takes succeeded.
    fn check(burst: u32, rate: f64, takes_at_ms: &[u64], expect: &str) {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(burst, rate, start);
        let got: String = takes_at_ms
            .iter()
            .map(|ms| if bucket.try_take(start + Duration::from_millis(*ms)).is_ok() { 'y' } else { 'n' })
            .collect();
        assert_eq!(got, expect, "burst {burst} rate {rate} at {takes_at_ms:?}");
    }

    #[test]
    fn pacing() {
        check(3, 1.0, &[0, 0, 0, 0], "yyyn");
        check(3, 1.0, &[0, 0, 0, 999, 1000], "yyyny");
        check(1, 2.0, &[0, 100, 500, 600, 1000], "ynyny");
        // Idle time refills only up to the burst.
        check(2, 10.0, &[0, 0, 10_000, 10_000, 10_000], "yyyyn");
        check(0, 1.0, &[0, 0], "yn");
    }

    #[test]
    fn waits_say_when_the_next_token_comes() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, 4.0, start);
        assert_eq!(bucket.try_take(start), Ok(()));
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0).round() as u64;
        assert_eq!(bucket.try_take(start).map_err(ms), Err(250));
        assert_eq!(ms(bucket.wait(start + Duration::from_millis(100))), 150);
        assert_eq!(bucket.available(start + Duration::from_millis(250)), 1);
    }
}
