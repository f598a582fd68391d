//! The consumer-group log of a queue (`groups.log`): one line per saved position,
//! `<crc32c as 8 hex digits> <json>\n`, where the JSON is
//! `{"group":NAME,"segment":BASE,"offset":BYTES,"seq":N}` and means "the group has
//! acknowledged everything before `seq`, which sits at `offset` in segment `segment`".
//! The last valid line for a group wins; damaged lines (a torn last line after a crash)
//! are ignored, which at worst replays a few acknowledged messages: at-least-once.

use std::collections::BTreeMap;

use super::queue::Position;

pub const FILE_NAME: &str = "groups.log";

#[derive(serde::Serialize, serde::Deserialize)]
struct Line<'a> {
    group: &'a str,
    #[serde(flatten)]
    position: Position,
}

pub fn encode_line(out: &mut Vec<u8>, group: &str, position: &Position) {
    let json = serde_json::to_vec(&Line { group, position: *position }).expect("plain data serializes");
    out.extend_from_slice(format!("{:08x} ", crc32c::crc32c(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
}

/// The last valid position of every group in the log; the count of damaged lines.
pub fn parse(text: &[u8]) -> (BTreeMap<String, Position>, usize) {
    let mut groups = BTreeMap::new();
    let mut damaged = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match parse_line(line) {
            Some((group, position)) => {
                groups.insert(group, position);
            }
            None => damaged += 1,
        }
    }
    (groups, damaged)
}

fn parse_line(line: &[u8]) -> Option<(String, Position)> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    let parsed: Line<'_> = serde_json::from_slice(json).ok()?;
    Some((parsed.group.to_string(), parsed.position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_valid_line_wins_and_damage_is_ignored() {
        let mut text = Vec::new();
        encode_line(&mut text, "reactor", &Position { segment: 0, offset: 24, seq: 0 });
        encode_line(&mut text, "reactor", &Position { segment: 0, offset: 124, seq: 3 });
        encode_line(&mut text, "other", &Position { segment: 5, offset: 24, seq: 5 });
        let mut torn = text.clone();
        encode_line(&mut torn, "reactor", &Position { segment: 9, offset: 99, seq: 99 });
        torn.truncate(torn.len() - 5);
        let (groups, damaged) = parse(&torn);
        assert_eq!(damaged, 1);
        assert_eq!(groups["reactor"], Position { segment: 0, offset: 124, seq: 3 });
        assert_eq!(groups["other"].seq, 5);
        let mut flipped = text.clone();
        flipped[20] ^= 1;
        assert_eq!(parse(&flipped).1, 1);
    }
}
