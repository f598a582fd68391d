//! ULIDs: 128-bit, lexicographically sortable ids (48 bits of milliseconds since the
//! Unix epoch, 80 bits of randomness), written as 26 Crockford base-32 characters.
//!
//! Ids made by one process are strictly increasing even within one millisecond (the
//! random part is incremented, as the ULID spec's "monotonic" mode says), so sorting by
//! id sorts by creation order on a node. The random part only has to be unique, not
//! secret: it comes from a small PRNG seeded once from the operating system.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID as its 128-bit value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Ulid(pub u128);

impl Ulid {
    /// The millisecond timestamp part.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// A new id for `now_ms`, strictly greater than every id this process made before.
    pub fn generate(now_ms: u64) -> Ulid {
        static STATE: Mutex<Option<Generator>> = Mutex::new(None);
        let mut guard = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.get_or_insert_with(Generator::seeded).next(now_ms)
    }

    /// The 26-character text form.
    pub fn to_text(self) -> String {
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 125 - 5 * i as u32;
            let index = if shift >= 128 { 0 } else { ((self.0 >> shift) & 0x1f) as usize };
            *slot = ALPHABET[index];
        }
        // The first character carries only the top 3 bits.
        out[0] = ALPHABET[(self.0 >> 125) as usize & 0x7];
        String::from_utf8(out.to_vec()).expect("alphabet is ASCII")
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Why a text is not a ULID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlidError {
    #[error("a ULID has 26 characters, this has {0}")]
    Length(usize),
    #[error("'{0}' is not a Crockford base-32 character")]
    Character(char),
    #[error("the ULID overflows 128 bits")]
    Overflow,
}

impl FromStr for Ulid {
    type Err = UlidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 26 {
            return Err(UlidError::Length(text.chars().count()));
        }
        let mut value: u128 = 0;
        for (i, c) in text.chars().enumerate() {
            let digit = decode_char(c).ok_or(UlidError::Character(c))?;
            if i == 0 && digit > 7 {
                return Err(UlidError::Overflow);
            }
            value = (value << 5) | u128::from(digit);
        }
        Ok(Ulid(value))
    }
}

fn decode_char(c: char) -> Option<u8> {
    let upper = c.to_ascii_uppercase();
    let upper = match upper {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET.iter().position(|&a| a as char == upper).map(|p| p as u8)
}

struct Generator {
    last_ms: u64,
    last_random: u128,
    prng: u64,
}

const RANDOM_MASK: u128 = (1u128 << 80) - 1;

impl Generator {
    fn seeded() -> Generator {
        let mut seed = [0u8; 8];
        // Without an OS random source, fall back to the address of a stack value mixed
        // with the time: ids must still be unique per process, not unpredictable.
        if getrandom::fill(&mut seed).is_err() {
            let local = 0u8;
            seed = ((&local as *const u8 as u64) ^ 0x9e37_79b9_7f4a_7c15).to_le_bytes();
        }
        Generator { last_ms: 0, last_random: 0, prng: u64::from_le_bytes(seed) | 1 }
    }

    fn next_random(&mut self) -> u128 {
        // splitmix64, twice, for 80 bits.
        let mut draw = || {
            self.prng = self.prng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.prng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let high = u128::from(draw());
        let low = u128::from(draw());
        ((high << 64) | low) & RANDOM_MASK
    }

    fn next(&mut self, now_ms: u64) -> Ulid {
        // A clock that steps back keeps the old millisecond so ids stay increasing.
        let ms = now_ms.max(self.last_ms) & ((1u64 << 48) - 1);
        let random = if ms == self.last_ms {
            if self.last_random == RANDOM_MASK {
                // 2^80 ids in one millisecond: borrow the next millisecond.
                self.last_ms += 1;
                self.next_random() >> 1
            } else {
                self.last_random + 1
            }
        } else {
            self.last_ms = ms;
            // Leave headroom so increments within this millisecond cannot overflow.
            self.next_random() >> 1
        };
        self.last_random = random;
        Ulid((u128::from(self.last_ms) << 80) | random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        for value in [0u128, 1, u128::MAX >> 2, (1u128 << 127) | 12345] {
            let id = Ulid(value);
            let text = id.to_text();
            assert_eq!(text.len(), 26);
            assert_eq!(text.parse::<Ulid>().unwrap(), id);
        }
    }

    #[test]
    fn known_value() {
        // The ULID spec's example timestamp 1469918176385 encodes as "01ARYZ6S41".
        let id = Ulid(u128::from(1_469_918_176_385u64) << 80);
        assert!(id.to_text().starts_with("01ARYZ6S41"), "{}", id.to_text());
        assert_eq!(id.timestamp_ms(), 1_469_918_176_385);
    }

    #[test]
    fn ids_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let mut g = Generator::seeded();
        let a = g.next(1000);
        let b = g.next(1000);
        let c = g.next(999);
        let d = g.next(1001);
        assert!(a < b && b < c && c < d);
        assert!(a.to_text() < b.to_text());
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!("abc".parse::<Ulid>(), Err(UlidError::Length(3)));
        assert!(matches!("0000000000000000000000000U".parse::<Ulid>(), Err(UlidError::Character('U'))));
        assert_eq!("80000000000000000000000000".parse::<Ulid>(), Err(UlidError::Overflow));
    }
}
