//! Forwarding between nodes (SPEC §10), the decisions only: which messages leave,
//! how a message becomes stanzas and back, loop rules and de-duplication. No I/O.
//!
//! On the wire a forwarded message is its JSON, base64-encoded (binary-safe: XML 1.0
//! cannot carry every character JSON can, and servers normalise line ends), in the
//! `<body>` of one or more `chat` messages, each marked
//! `<forward xmlns='urn:flotilla:forward:1' id='ULID' part='i' parts='n'/>`. A body
//! larger than `max_part` is split; the receiver reassembles the parts of one message
//! in order (one sender's stanzas arrive in order, live or from offline storage).
//!
//! Loop rules. The sender puts its own node name at the end of `path` (unless it is
//! already last: the node received the message and relays it), and never sends a
//! message whose `noforward` is set or whose `path` holds its own name anywhere else
//! (the message went round and came back). The receiver refuses a message whose
//! `path` already holds the receiver's name, de-duplicates by `id`, sets `noforward`
//! and appends its own name. So two nodes pointed at each other make no loop, and a
//! ring A→B→C→A whose nodes relay (a rule that clears `noforward`) delivers each
//! message once on every node and stops where it started.

use std::collections::{HashSet, VecDeque};

use base64::Engine as _;
use flotilla_core::Message;
use flotilla_core::message::{NOFORWARD, PATH};

use crate::xml::Element;

/// The namespace of the forwarding marker.
pub const NS: &str = "urn:flotilla:forward:1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a message in the forward queue is not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("its noforward is set")]
    NoForward,
    #[error("its path already holds this node ({0}): it went round")]
    Looped(String),
    #[error("it is not a Flotilla message: {0}")]
    NotAMessage(String),
}

/// Why a forwarded message from a peer is not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("its payload is not base64: {0}")]
    NotBase64(String),
    #[error("it is not a Flotilla message: {0}")]
    NotAMessage(String),
    #[error("it has no id, so it cannot be de-duplicated")]
    NoId,
    #[error("its id '{marker}' on the stanza differs from the message's '{message}'")]
    IdMismatch { marker: String, message: String },
    #[error("its path already holds this node: a loop")]
    Loop,
    #[error("already delivered (id {0})")]
    Duplicate(String),
}

/// Makes a message from the forward queue ready to send, or says why it stays.
pub fn prepare_outgoing(payload: &[u8], node: &str) -> Result<Message, Skip> {
    let mut message = Message::from_json(payload).map_err(|e| Skip::NotAMessage(e.to_string()))?;
    if message.noforward() {
        return Err(Skip::NoForward);
    }
    let path = message.path();
    let own_last = path.last() == Some(&node);
    let earlier = if own_last { &path[..path.len() - 1] } else { &path[..] };
    if earlier.contains(&node) {
        return Err(Skip::Looped(node.to_string()));
    }
    if !own_last {
        message.push_path(node);
    }
    if message.id().is_none() {
        // A message on a bus always has one; one that does not cannot be
        // de-duplicated by its receivers.
        return Err(Skip::NotAMessage("it has no id".into()));
    }
    Ok(message)
}

/// The stanzas that carry `message` to `to`: one, or `parts` of at most `max_part`
/// base64 characters each.
pub fn encode(message: &Message, to: &str, max_part: usize) -> Vec<Element> {
    let id = message.id().unwrap_or_default().to_string();
    let encoded = B64.encode(message.to_json());
    let max_part = max_part.max(4);
    let chunks: Vec<&str> = if encoded.is_empty() {
        vec![""]
    } else {
        // base64 is ASCII: byte positions are character positions.
        encoded.as_bytes().chunks(max_part).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect()
    };
    let parts = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            Element::new("message")
                .attr("to", to)
                .attr("type", "chat")
                .attr("id", if parts == 1 { id.clone() } else { format!("{id}-{i}") })
                .child(Element::new("body").text(chunk))
                .child(
                    Element::new("forward")
                        .attr("xmlns", NS)
                        .attr("id", id.clone())
                        .attr("part", i.to_string())
                        .attr("parts", parts.to_string()),
                )
        })
        .collect()
}

/// One part of a forwarded message, as read from a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub id: String,
    pub part: u32,
    pub parts: u32,
    pub data: String,
}

/// Reads the forwarding marker of a `<message>`; `None` when it has none, an error
/// when it has one that does not make sense.
pub fn read_part(stanza: &Element) -> Option<Result<Part, String>> {
    let marker = stanza.find("forward", Some(NS))?;
    let read = || -> Result<Part, String> {
        let id = marker.get_attr("id").filter(|id| !id.is_empty()).ok_or("the marker has no id")?.to_string();
        let number = |name: &str| -> Result<u32, String> {
            marker
                .get_attr(name)
                .ok_or_else(|| format!("the marker has no {name}"))?
                .parse::<u32>()
                .map_err(|_| format!("the marker's {name} is not a number"))
        };
        let (part, parts) = (number("part")?, number("parts")?);
        if parts == 0 || part >= parts {
            return Err(format!("part {part} of {parts} is impossible"));
        }
        let data = stanza.find("body", None).map(Element::text_content).unwrap_or_default();
        Ok(Part { id, part, parts, data })
    };
    Some(read())
}

/// Reassembles one sender's parts, in order, bounded.
#[derive(Debug, Default)]
pub struct Reassembly {
    current: Option<Part>,
}

/// What a part completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// Waiting for more parts.
    Incomplete,
    /// The whole base64 payload of message `id`.
    Complete { id: String, data: String },
    /// The part did not fit what was being reassembled (the earlier parts are
    /// dropped, with this reason); the new part starts over when it is a first part.
    Broken(String),
}

impl Reassembly {
    /// Takes the next part; `max_bytes` bounds a reassembled message.
    pub fn push(&mut self, part: Part, max_bytes: usize) -> Assembled {
        if part.parts == 1 {
            let broken = self.current.take().map(|p| format!("message {} ended after part {}", p.id, p.part));
            return match broken {
                // The single part is still good; report the broken one first next time.
                Some(reason) => {
                    self.current = Some(part);
                    Assembled::Broken(reason)
                }
                None => Assembled::Complete { id: part.id, data: part.data },
            };
        }
        let fits =
            |current: &Part| current.id == part.id && current.parts == part.parts && current.part + 1 == part.part;
        match self.current.take() {
            Some(mut current) if fits(&current) => {
                if current.data.len() + part.data.len() > max_bytes {
                    return Assembled::Broken(format!("message {} is larger than {max_bytes} bytes", part.id));
                }
                current.data.push_str(&part.data);
                current.part = part.part;
                if current.part + 1 == current.parts {
                    Assembled::Complete { id: current.id, data: current.data }
                } else {
                    self.current = Some(current);
                    Assembled::Incomplete
                }
            }
            Some(current) => {
                let reason = format!(
                    "message {} part {} of {} came after part {} of message {}",
                    part.id, part.part, part.parts, current.part, current.id
                );
                if part.part == 0 {
                    self.current = Some(part);
                }
                Assembled::Broken(reason)
            }
            None if part.part == 0 => {
                self.current = Some(part);
                Assembled::Incomplete
            }
            None => Assembled::Broken(format!("message {} part {} came without its first part", part.id, part.part)),
        }
    }

    /// Whether a message is half reassembled (its first stanzas not yet handled).
    pub fn pending(&self) -> bool {
        self.current.is_some()
    }

    /// After `push` returned `Broken` for a single-part message, the message itself.
    pub fn take_single(&mut self) -> Option<(String, String)> {
        match self.current.take() {
            Some(part) if part.parts == 1 => Some((part.id, part.data)),
            other => {
                self.current = other;
                None
            }
        }
    }
}

/// Turns a reassembled payload into the message to deliver, or says why not.
pub fn accept(marker_id: &str, data: &str, node: &str, seen: &SeenWindow) -> Result<Message, Refusal> {
    let json = B64.decode(data.trim()).map_err(|e| Refusal::NotBase64(e.to_string()))?;
    let mut message = Message::from_json(&json).map_err(|e| Refusal::NotAMessage(e.to_string()))?;
    let id = message.id().ok_or(Refusal::NoId)?.to_string();
    if id != marker_id {
        return Err(Refusal::IdMismatch { marker: marker_id.to_string(), message: id });
    }
    if message.path().contains(&node) {
        return Err(Refusal::Loop);
    }
    if seen.contains(&id) {
        return Err(Refusal::Duplicate(id));
    }
    message.set(NOFORWARD, true);
    message.push_path(node);
    debug_assert!(message.get(PATH).is_some());
    Ok(message)
}

/// The ids delivered most recently, at most `capacity` of them.
#[derive(Debug)]
pub struct SeenWindow {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl SeenWindow {
    pub fn new(capacity: usize) -> SeenWindow {
        SeenWindow { capacity: capacity.max(1), order: VecDeque::new(), set: HashSet::new() }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`; false when it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.to_string());
        self.set.insert(id.to_string());
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The ids, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01J0000000000000000000000A";

    fn message(extra: &str) -> Vec<u8> {
        format!(r#"{{"id":"{ID}","lastupdate":1700000000.5,"subject":"hi"{extra}}}"#).into_bytes()
    }

    #[test]
    fn what_leaves_the_forward_queue() {
        // (payload, node, outcome: Ok(path after) or the skip)
        type Case<'a> = (Vec<u8>, &'a str, Result<Vec<&'a str>, Skip>);
        let cases: Vec<Case> = vec![
            (message(""), "a", Ok(vec!["a"])),
            (message(r#","path":["x"]"#), "a", Ok(vec!["x", "a"])),
            // Received here and relayed: own name last, not added again.
            (message(r#","path":["x","a"]"#), "a", Ok(vec!["x", "a"])),
            (message(r#","path":["a","b"]"#), "a", Err(Skip::Looped("a".into()))),
            (message(r#","path":["a","b","a"]"#), "a", Err(Skip::Looped("a".into()))),
            (message(r#","noforward":1"#), "a", Err(Skip::NoForward)),
            (message(r#","noforward":true"#), "a", Err(Skip::NoForward)),
            (message(r#","noforward":0"#), "a", Ok(vec!["a"])),
            (b"not json".to_vec(), "a", Err(Skip::NotAMessage(String::new()))),
            (br#"{"subject":"no id"}"#.to_vec(), "a", Err(Skip::NotAMessage("it has no id".into()))),
            (message(r#","path":"a""#), "a", Err(Skip::NotAMessage(String::new()))),
        ];
        for (payload, node, expect) in cases {
            let got = prepare_outgoing(&payload, node);
            let text = String::from_utf8_lossy(&payload).to_string();
            match (got, expect) {
                (Ok(m), Ok(path)) => assert_eq!(m.path(), path, "{text}"),
                (Err(Skip::NotAMessage(_)), Err(Skip::NotAMessage(want))) if want.is_empty() => {}
                (got, expect) => assert_eq!(got.map(|m| m.path().join(",")), expect.map(|p| p.join(",")), "{text}"),
            }
        }
    }

    /// Sends through encode → read_part → reassembly → accept.
    fn round_trip(payload: &[u8], max_part: usize, node: &str, seen: &SeenWindow) -> Result<Message, Refusal> {
        let message = prepare_outgoing(payload, "sender").unwrap();
        let stanzas = encode(&message, "b@localhost", max_part);
        let mut reassembly = Reassembly::default();
        let mut out = None;
        for stanza in &stanzas {
            let part = read_part(stanza).unwrap().unwrap();
            match reassembly.push(part, 1 << 20) {
                Assembled::Incomplete => {}
                Assembled::Complete { id, data } => out = Some(accept(&id, &data, node, seen)),
                Assembled::Broken(reason) => panic!("{reason}"),
            }
        }
        out.expect("a complete message")
    }

    #[test]
    fn what_a_receiver_delivers() {
        let seen = SeenWindow::new(10);
        // Whole and split, binary-unfriendly text included.
        let tricky = message(r#","body":"line\r\nnext \u0000 \u0007 \uFFFE <&> ]]> 漢""#);
        for max_part in [4, 7, 100, 1 << 20] {
            let got = round_trip(&tricky, max_part, "b", &seen).unwrap();
            assert_eq!(got.path(), ["sender", "b"]);
            assert!(got.noforward());
            assert_eq!(got.lastupdate(), Some(1_700_000_000.5));
            assert_eq!(got.get_str("body"), Some("line\r\nnext \u{0} \u{7} \u{FFFE} <&> ]]> 漢"));
        }
        assert_eq!(round_trip(&message(""), 100, "sender", &seen).unwrap_err(), Refusal::Loop);
        let mut seen = SeenWindow::new(10);
        seen.insert(ID);
        assert_eq!(round_trip(&message(""), 100, "b", &seen).unwrap_err(), Refusal::Duplicate(ID.into()));
        let empty = SeenWindow::new(1);
        assert!(matches!(accept(ID, "%%%", "b", &empty), Err(Refusal::NotBase64(_))));
        assert!(matches!(accept(ID, &B64.encode("[1]"), "b", &empty), Err(Refusal::NotAMessage(_))));
        assert_eq!(accept(ID, &B64.encode(r#"{"a":1}"#), "b", &empty), Err(Refusal::NoId));
        assert!(matches!(accept("other", &B64.encode(message("")), "b", &empty), Err(Refusal::IdMismatch { .. })));
        assert!(matches!(
            accept(ID, &B64.encode(message(r#","path":[1,2]"#)), "b", &empty),
            Err(Refusal::NotAMessage(_))
        ));
    }

    #[test]
    fn markers_and_parts_out_of_order() {
        let stanza = |attrs: &str| {
            let mut e = Element::new("message").child(Element::new("body").text("QUJD"));
            let mut marker = Element::new("forward").attr("xmlns", NS);
            for pair in attrs.split(' ').filter(|s| !s.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap();
                marker = marker.attr(k, v);
            }
            e = e.child(marker);
            e
        };
        assert_eq!(read_part(&Element::new("message")), None);
        for (attrs, err) in [
            ("part=0 parts=1", "no id"),
            ("id=x parts=1", "no part"),
            ("id=x part=1 parts=1", "impossible"),
            ("id=x part=0 parts=0", "impossible"),
            ("id=x part=a parts=1", "not a number"),
        ] {
            let got = read_part(&stanza(attrs)).unwrap().unwrap_err();
            assert!(got.contains(err), "{attrs}: {got}");
        }
        let part = |id: &str, part: u32, parts: u32| Part { id: id.into(), part, parts, data: format!("{id}{part}") };
        let mut r = Reassembly::default();
        assert_eq!(
            r.push(part("x", 1, 3), 100),
            Assembled::Broken("message x part 1 came without its first part".into())
        );
        assert_eq!(r.push(part("x", 0, 3), 100), Assembled::Incomplete);
        assert!(matches!(r.push(part("y", 0, 2), 100), Assembled::Broken(_)));
        assert_eq!(r.push(part("y", 1, 2), 100), Assembled::Complete { id: "y".into(), data: "y0y1".into() });
        assert_eq!(r.push(part("z", 0, 2), 100), Assembled::Incomplete);
        assert!(matches!(r.push(part("w", 0, 1), 100), Assembled::Broken(_)));
        assert_eq!(r.take_single(), Some(("w".into(), "w0".into())));
        assert!(!r.pending());
        assert_eq!(r.push(part("v", 0, 2), 3), Assembled::Incomplete);
        assert!(matches!(r.push(part("v", 1, 2), 3), Assembled::Broken(reason) if reason.contains("larger")));
    }

    #[test]
    fn the_seen_window_forgets_the_oldest() {
        let mut seen = SeenWindow::new(2);
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        assert!(seen.insert("b"));
        assert!(seen.insert("c"));
        assert!(!seen.contains("a"));
        assert_eq!(seen.ids().collect::<Vec<_>>(), ["b", "c"]);
    }
}
