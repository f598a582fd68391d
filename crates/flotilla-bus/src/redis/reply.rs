//! Reading Redis's replies to the stream commands the bus sends: entries (an id and
//! its fields), `XREAD`/`XREADGROUP`'s per-stream lists, `XAUTOCLAIM`'s triple and the
//! flat field lists of `XINFO`. Replies come as RESP2 or RESP3; both shapes are read.

use std::sync::Arc;

use ::redis::Value;
use bytes::Bytes;

/// The field holding the payload in every entry the bus writes.
pub(crate) const PAYLOAD_FIELD: &str = "m";

/// A reply that does not have the shape the command documents (a bug, or not Redis).
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis: {0}")]
pub(crate) struct UnexpectedReply(pub String);

fn unexpected(what: &str, value: &Value) -> UnexpectedReply {
    let shown: String = format!("{value:?}").chars().take(200).collect();
    UnexpectedReply(format!("expected {what}, got {shown}"))
}

/// One stream entry as read.
#[derive(Debug)]
pub(crate) struct Entry {
    pub id: Arc<str>,
    /// `None` when the entry was deleted while still pending (Redis then answers the id
    /// with no fields), or it has no payload field.
    pub payload: Option<Bytes>,
}

/// The milliseconds part of an entry id (`<ms>-<n>`): when Redis accepted the entry.
pub(crate) fn timestamp_ms(id: &str) -> u64 {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().unwrap_or(0)
}

pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_string()),
        _ => None,
    }
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// The items of a list (nil is an empty one), or the value back.
fn items(value: Value) -> Result<Vec<Value>, Value> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(other),
    }
}

/// A list of entries: `[[id, [field, value, …] | nil], …]`.
pub(crate) fn entries(value: Value) -> Result<Vec<Entry>, UnexpectedReply> {
    let list = items(value).map_err(|v| unexpected("a list of entries", &v))?;
    list.into_iter().map(entry).collect()
}

fn entry(value: Value) -> Result<Entry, UnexpectedReply> {
    let bad = |v: &Value| unexpected("an entry [id, fields]", v);
    let Value::Array(mut pair) = value else { return Err(bad(&value)) };
    if pair.len() != 2 {
        return Err(bad(&Value::Array(pair)));
    }
    let fields = pair.pop().unwrap_or(Value::Nil);
    let id = text(&pair[0]).ok_or_else(|| bad(&pair[0]))?;
    let mut entry = Entry { id: Arc::from(id), payload: None };
    let fields: Vec<(Value, Value)> = match fields {
        Value::Nil => Vec::new(),
        Value::Array(flat) => {
            let mut flat = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        other => return Err(bad(&other)),
    };
    for (key, value) in fields {
        if text(&key).as_deref() == Some(PAYLOAD_FIELD) {
            entry.payload = match value {
                Value::BulkString(bytes) => Some(Bytes::from(bytes)),
                other => text(&other).map(Bytes::from),
            };
        }
    }
    Ok(entry)
}

/// `XREAD`/`XREADGROUP` of one stream: nil (nothing in time), `[[key, entries]]`
/// (RESP2) or `{key: entries}` (RESP3).
pub(crate) fn read_reply(value: Value) -> Result<Vec<Entry>, UnexpectedReply> {
    let streams: Vec<Value> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| if let Value::Array(mut kv) = s { kv.pop().unwrap_or(Value::Nil) } else { s })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        other => return Err(unexpected("a stream read reply", &other)),
    };
    let mut all = Vec::new();
    for stream in streams {
        all.extend(entries(stream)?);
    }
    Ok(all)
}

/// `XAUTOCLAIM`: `[next cursor, claimed entries, deleted ids]`.
pub(crate) fn autoclaim_reply(value: Value) -> Result<(String, Vec<Entry>), UnexpectedReply> {
    let Value::Array(parts) = value else { return Err(unexpected("[cursor, entries, deleted]", &value)) };
    let mut parts = parts.into_iter();
    let cursor =
        parts.next().as_ref().and_then(text).ok_or_else(|| UnexpectedReply("XAUTOCLAIM without a cursor".into()))?;
    let claimed = entries(parts.next().unwrap_or(Value::Nil))?;
    Ok((cursor, claimed))
}

/// `XPENDING key group start end count [consumer]`: the ids, oldest first.
pub(crate) fn pending_ids(value: Value) -> Result<Vec<String>, UnexpectedReply> {
    let rows = items(value).map_err(|v| unexpected("a list of pending entries", &v))?;
    rows.iter()
        .map(|row| match row {
            Value::Array(fields) => {
                fields.first().and_then(text).ok_or_else(|| unexpected("[id, consumer, idle, count]", row))
            }
            other => Err(unexpected("[id, consumer, idle, count]", other)),
        })
        .collect()
}

/// A flat `[name, value, …]` list (RESP2) or a map (RESP3) as name → value pairs.
pub(crate) fn fields(value: Value) -> Result<Vec<(String, Value)>, UnexpectedReply> {
    match value {
        Value::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                out.push((text(&k).unwrap_or_default(), v));
            }
            Ok(out)
        }
        Value::Map(pairs) => Ok(pairs.into_iter().map(|(k, v)| (text(&k).unwrap_or_default(), v)).collect()),
        other => Err(unexpected("a list of fields", &other)),
    }
}

/// The value of field `name` in a [`fields`] list.
pub(crate) fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A list (of groups, of keys): the items.
pub(crate) fn list(value: Value) -> Result<Vec<Value>, UnexpectedReply> {
    items(value).map_err(|v| unexpected("a list", &v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_of_both_protocols_and_deleted_ones_are_read() {
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("q"),
            Value::Array(vec![
                Value::Array(vec![bulk("17-0"), Value::Array(vec![bulk("m"), bulk("hello"), bulk("n"), bulk("4")])]),
                Value::Array(vec![bulk("17-1"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(resp2).unwrap();
        assert_eq!((&*got[0].id, got[0].payload.as_deref()), ("17-0", Some(&b"hello"[..])));
        assert_eq!((&*got[1].id, got[1].payload.is_none()), ("17-1", true));
        let resp3 = Value::Map(vec![(
            bulk("q"),
            Value::Array(vec![Value::Array(vec![
                bulk("18-3"),
                Value::Map(vec![(bulk("n"), Value::Int(7)), (bulk("m"), bulk("x"))]),
            ])]),
        )]);
        let got = read_reply(resp3).unwrap();
        assert_eq!((&*got[0].id, got[0].payload.as_deref()), ("18-3", Some(&b"x"[..])));
        assert!(read_reply(Value::Nil).unwrap().is_empty());
        assert!(read_reply(Value::Int(3)).is_err());
    }

    #[test]
    fn ids_give_their_time() {
        assert_eq!(timestamp_ms("1712345678901-7"), 1_712_345_678_901);
        assert_eq!(timestamp_ms("nonsense"), 0);
    }
}
