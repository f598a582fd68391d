//! A per-wiki filter of the keys a wiki's definitions are filed under (exact pages and
//! users, shared patterns), consulted before the big tables shared by all wikis.
//!
//! Why: with millions of definitions those tables no longer fit in the CPU caches, and
//! most lookups find nothing (most titles are watched by nobody). A wiki's filter is a
//! few hundred bytes, so answering "certainly not here" from it costs a cache hit rather
//! than a trip to memory. It is a blocked Bloom filter: one 64-bit word per key, two bits
//! in it, about eight bits per key, so it says "maybe" for about one key in twenty that
//! is absent, and never "no" for a key that is present.
//!
//! Bloom filters cannot forget, so the wiki also counts its keys; the filter is rebuilt
//! from the counts when it fills up or when removals have left it mostly stale.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::IdHasher;

/// Bits of filter per key.
const BITS_PER_KEY: usize = 8;

#[derive(Default)]
pub(super) struct KeyFilter {
    words: Box<[u64]>,
    /// Keys added since the filter was built, stale ones included.
    filled: usize,
    /// Every key with how many entries use it.
    counts: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
}

impl KeyFilter {
    /// Whether `key` may have entries (false: it certainly has none).
    pub(super) fn may_contain(&self, key: u64) -> bool {
        if self.words.is_empty() {
            return false;
        }
        let (word, bits) = locate(key, self.words.len());
        self.words[word] & bits == bits
    }

    /// Asks the CPU to start loading the word `key` lives in, so that a later
    /// [`KeyFilter::may_contain`] finds it in cache: with many wikis the filters do not
    /// all fit in the caches, and the load can overlap other work on the change.
    pub(super) fn prefetch(&self, key: u64) {
        if !self.words.is_empty() {
            let (word, _) = locate(key, self.words.len());
            super::prefetch(&self.words[word]);
        }
    }

    /// One more entry under `key`.
    pub(super) fn add(&mut self, key: u64) {
        let count = self.counts.entry(key).or_insert(0);
        *count += 1;
        if *count > 1 {
            return;
        }
        self.filled += 1;
        if self.filled * BITS_PER_KEY > self.words.len() * 64 {
            self.rebuild();
        } else {
            let (word, bits) = locate(key, self.words.len());
            self.words[word] |= bits;
        }
    }

    /// One entry fewer under `key`.
    pub(super) fn remove(&mut self, key: u64) {
        let Some(count) = self.counts.get_mut(&key) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        self.counts.remove(&key);
        // Rebuild once stale keys outnumber live ones, so the filter stays selective.
        if self.filled > 2 * self.counts.len() + 8 {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let words = (self.counts.len() * 2 * BITS_PER_KEY).div_ceil(64).next_power_of_two().max(1);
        self.words = vec![0; words].into_boxed_slice();
        for &key in self.counts.keys() {
            let (word, bits) = locate(key, words);
            self.words[word] |= bits;
        }
        self.filled = self.counts.len();
    }
}

/// Spreads an internal number over all 64 bits (the splitmix64 finaliser), so it can
/// serve as a filter key.
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The word and the two bits of `key` in a filter of `words` words (a power of two).
/// Keys are already well-mixed hashes.
fn locate(key: u64, words: usize) -> (usize, u64) {
    let word = (key >> 32) as usize & (words - 1);
    let bits = (1u64 << (key & 63)) | (1u64 << ((key >> 6) & 63));
    (word, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixed(n: u64) -> u64 {
        mix(n)
    }

    #[test]
    fn never_forgets_a_present_key_and_rejects_most_absent_ones() {
        let mut filter = KeyFilter::default();
        assert!(!filter.may_contain(mixed(1)));
        for n in 0..1000 {
            filter.add(mixed(n));
        }
        assert!((0..1000).all(|n| filter.may_contain(mixed(n))));
        let false_hits = (1000..11_000).filter(|&n| filter.may_contain(mixed(n))).count();
        assert!(false_hits < 1000, "{false_hits} of 10000 absent keys pass");
    }

    #[test]
    fn removal_keeps_keys_still_in_use_and_rebuilds_when_stale() {
        let mut filter = KeyFilter::default();
        filter.add(mixed(7));
        filter.add(mixed(7));
        filter.remove(mixed(7));
        assert!(filter.may_contain(mixed(7)), "one entry still uses it");
        for n in 100..200 {
            filter.add(mixed(n));
        }
        for n in 100..200 {
            filter.remove(mixed(n));
        }
        assert!(filter.may_contain(mixed(7)));
        assert!(filter.filled <= 2 * filter.counts.len() + 8, "rebuilt after the removals");
        let false_hits = (100..200).filter(|&n| filter.may_contain(mixed(n))).count();
        assert!(false_hits < 20, "{false_hits} removed keys still pass");
    }
}
