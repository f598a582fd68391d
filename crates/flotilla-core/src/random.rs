//! Cheap non-cryptographic randomness for jitter, nick suffixes and sampling: a
//! per-thread splitmix64 generator seeded once from the operating system. Never use it
//! for secrets (tokens come from `getrandom` directly).

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Without an OS source, the clock is good enough for jitter.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes = (nanos as u64).to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// A uniformly distributed 64-bit value.
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A value in `0..bound` (`bound` > 0), without modulo bias worth mentioning for
/// bounds far below 2^64.
pub fn below(bound: u64) -> u64 {
    if bound == 0 { 0 } else { ((u128::from(next_u64()) * u128::from(bound)) >> 64) as u64 }
}

/// A fraction in `[0, 1)`.
pub fn fraction() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_spreads() {
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = below(10);
            assert!(v < 10);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert!((0..1000).map(|_| fraction()).all(|f| (0.0..1.0).contains(&f)));
    }
}
