//! Stream management (XEP-0198) counters, pure: how many stanzas we sent and how many
//! of them the server has acknowledged (`<a h='…'/>`), and how many we received and
//! have handled (what we answer to the server's `<r/>`).
//!
//! Counters are 32-bit and wrap (XEP-0198 §4), so "covers" is computed with wrapping
//! differences. An `h` that acknowledges more than was sent, or goes backwards, is a
//! protocol violation: the caller closes the stream (the server's view of what it
//! took can no longer be trusted), and everything unacknowledged is sent again on
//! the next stream, where the receiver's de-duplication removes what arrives twice.

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmError {
    #[error("the server acknowledged {h} stanzas but only {sent} were sent")]
    AheadOfSent { h: u32, sent: u32 },
    #[error("the server's acknowledgement went backwards from {acked} to {h}")]
    Backwards { h: u32, acked: u32 },
}

/// Outbound counter: stanzas sent on this stream, and how many the server took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outbound {
    sent: u32,
    acked: u32,
}

impl Outbound {
    /// A counter continuing a resumed stream: `h` sent, all acknowledged.
    pub fn starting_at(h: u32) -> Outbound {
        Outbound { sent: h, acked: h }
    }

    /// Counts one stanza sent; returns its number (1 for the first stanza after
    /// `<enable/>`), which an acknowledgement `h >= number` covers.
    pub fn sent_one(&mut self) -> u32 {
        self.sent = self.sent.wrapping_add(1);
        self.sent
    }

    /// Stanzas sent so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// Stanzas the server has acknowledged.
    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// Stanzas sent and not yet acknowledged.
    pub fn unacked(&self) -> u32 {
        self.sent.wrapping_sub(self.acked)
    }

    /// Takes the server's `h`; returns how many stanzas it newly acknowledged.
    pub fn ack(&mut self, h: u32) -> Result<u32, SmError> {
        let newly = h.wrapping_sub(self.acked);
        if newly > self.unacked() {
            // Either more than was sent, or (a huge wrapping difference) backwards.
            return Err(if newly > u32::MAX / 2 {
                SmError::Backwards { h, acked: self.acked }
            } else {
                SmError::AheadOfSent { h, sent: self.sent }
            });
        }
        self.acked = h;
        Ok(newly)
    }

    /// Whether the stanza numbered `number` (from [`Outbound::sent_one`]) is acknowledged.
    pub fn covers(&self, number: u32) -> bool {
        // `number` lies within the unacknowledged window iff its distance past
        // `acked` is 1..=unacked.
        let ahead = number.wrapping_sub(self.acked);
        ahead == 0 || ahead > self.unacked()
    }
}

/// Inbound counter: stanzas received and handled (for `<a h='…'/>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inbound {
    handled: u32,
}

impl Inbound {
    /// Counts `n` stanzas handled (durably, where that matters).
    pub fn handled(&mut self, n: u32) {
        self.handled = self.handled.wrapping_add(n);
    }

    /// The `h` to answer `<r/>` with.
    pub fn h(&self) -> u32 {
        self.handled
    }
}

/// The stream management namespace (version 3).
pub const NS: &str = "urn:xmpp:sm:3";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_cover_what_was_sent() {
        // (start acked/sent, sends, h given, expected result, covers(number) checks)
        struct Case {
            start: u32,
            sends: u32,
            h: u32,
            result: Result<u32, SmError>,
            covered: &'static [(u32, bool)],
        }
        let cases = [
            Case { start: 0, sends: 3, h: 2, result: Ok(2), covered: &[(1, true), (2, true), (3, false)] },
            Case { start: 0, sends: 3, h: 3, result: Ok(3), covered: &[(3, true)] },
            Case { start: 0, sends: 3, h: 0, result: Ok(0), covered: &[(1, false), (3, false)] },
            Case { start: 0, sends: 3, h: 4, result: Err(SmError::AheadOfSent { h: 4, sent: 3 }), covered: &[] },
            // Wrapping past 2^32.
            Case {
                start: u32::MAX - 1,
                sends: 4,
                h: 1,
                result: Ok(3),
                covered: &[(u32::MAX, true), (0, true), (1, true), (2, false)],
            },
            Case {
                start: u32::MAX - 1,
                sends: 4,
                h: 3,
                result: Err(SmError::AheadOfSent { h: 3, sent: 2 }),
                covered: &[],
            },
        ];
        for case in cases {
            let mut out = Outbound { sent: case.start, acked: case.start };
            for _ in 0..case.sends {
                out.sent_one();
            }
            assert_eq!(out.ack(case.h), case.result, "start {} h {}", case.start, case.h);
            for (number, covered) in case.covered {
                assert_eq!(out.covers(*number), *covered, "start {} h {} number {number}", case.start, case.h);
            }
        }
        let mut out = Outbound::default();
        out.sent_one();
        out.sent_one();
        out.ack(2).unwrap();
        assert_eq!(out.ack(1), Err(SmError::Backwards { h: 1, acked: 2 }));
        assert_eq!(out.unacked(), 0);
    }

    #[test]
    fn inbound_counts_and_wraps() {
        let mut inbound = Inbound { handled: u32::MAX };
        inbound.handled(2);
        assert_eq!(inbound.h(), 1);
    }
}
