//! [`Fleet`] on Redis: membership and leases as plain keys next to the bus's streams,
//! every check-and-write one Lua script (atomic: no other client's command runs in
//! between), over the bus's shared connection.
//!
//! Keys, under the bus's prefix `<p>`:
//!
//! - `<p>:fleet:node:<name>`: the member's JSON, with `PX lease_ttl`; a heartbeat sets
//!   it again. Present means alive. It is written only when absent or when it holds
//!   the same instance id (`JOIN`), so a second live process with the name is refused.
//! - `<p>:fleet:seen`: a hash `name → "<heartbeat ms>|<member JSON>"`, never expiring,
//!   so status shows dead members with their last heartbeat.
//! - `<p>:fleet:lease:<resource>`: `"<node>|<instance>|<fence>"`, with `PX lease_ttl`;
//!   set only when absent (`ACQUIRE`), renewed (`PEXPIRE`) or deleted only by a script
//!   that finds exactly that value.
//! - `<p>:fleet:fence:<resource>`: the fencing counter, `INCR`ed on every acquisition
//!   and never reset, so each holder's number is larger than every earlier one's.
//!
//! A fenced publish (`PUBLISH`) compares the lease key with the caller's full value
//! (its fencing number included) and only then `XADD`s the batch, in one script: a
//! holder whose lease lapsed or passed to someone else writes nothing. Its cost over a
//! plain publish is the script's (about three times the server time of bare `XADD`s,
//! see the bus docs), paid only by connectors' own emits.

use std::time::Duration;

use ::redis::{Value, cmd};
use bytes::Bytes;

use super::reply::{self, PAYLOAD_FIELD, int, text};
use super::{Inner, RedisBus};
use crate::fleet::{Fleet, LeaseView, Member, MemberView, NameTaken, StaleFence};
use crate::{BusError, SeqRange, valid_name};

/// `KEYS[1]` node key, `KEYS[2]` seen hash; `ARGV[1]` member JSON, `ARGV[2]` its
/// instance, `ARGV[3]` ttl ms, `ARGV[4]` name. Returns the holder's JSON when another
/// instance holds the name, else nil after writing.
const JOIN: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and decoded['instance'] ~= ARGV[2] then return current end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[4], string.format('%d', ms) .. '|' .. ARGV[1])
return false
"#;

/// `KEYS[1]` node key; `ARGV[1]` instance. Deletes the key if it is this instance's.
const LEAVE: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and decoded['instance'] == ARGV[1] then redis.call('DEL', KEYS[1]) end
end
return 1
"#;

/// `KEYS[1]` lease, `KEYS[2]` fence counter; `ARGV[1]` `<node>|<instance>`, `ARGV[2]`
/// ttl ms. Returns the new fencing number, or nil when the lease is held.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
return fence
";

/// `KEYS[1]` lease; `ARGV[1]` the holder's full value, `ARGV[2]` ttl ms. 1 if renewed.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// `KEYS[1]` lease; `ARGV[1]` the holder's full value. Deletes it if still that.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// `KEYS[1]` lease, `KEYS[2]` stream; `ARGV[1]` the holder's full value, `ARGV[2]` the
/// payload field, `ARGV[3..]` payloads. `{1, entries-added}` after appending them, or
/// `{0, current holder}` and nothing written.
const PUBLISH: &str = r"
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then return {0, held or ''} end
for i = 3, #ARGV do redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[i]) end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then return {1, info[i + 1]} end
end
return {1, -1}
";

/// Membership and leases on the Redis of a [`RedisBus`]; clones share it.
#[derive(Clone)]
pub struct RedisFleet {
    bus: RedisBus,
}

impl RedisFleet {
    /// The fleet of the nodes sharing `bus`'s Redis and prefix.
    pub fn new(bus: &RedisBus) -> RedisFleet {
        RedisFleet { bus: bus.clone() }
    }

    fn inner(&self) -> &Inner {
        &self.bus.inner
    }

    fn key(&self, what: &str, name: &str) -> String {
        format!("{}:fleet:{what}:{name}", self.inner().options.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        self.inner().options.lease_ttl.as_millis().max(1) as u64
    }

    async fn eval<T: ::redis::FromRedisValue>(
        &self,
        what: &str,
        script: &str,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, BusError> {
        let mut eval = cmd("EVAL");
        eval.arg(script).arg(keys.len());
        for key in keys {
            eval.arg(*key);
        }
        for arg in args {
            eval.arg(*arg);
        }
        self.inner().link.query(what, &eval).await
    }
}

/// The lease key's value for `member` with `fence`.
fn holder(member: &Member, fence: u64) -> String {
    format!("{}|{}|{fence}", member.name, member.instance)
}

fn parse_holder(resource: &str, value: &str, expires_in_ms: u64) -> Option<LeaseView> {
    let mut parts = value.rsplitn(3, '|');
    let fence = parts.next()?.parse().ok()?;
    let instance = parts.next()?.to_string();
    let node = parts.next()?.to_string();
    Some(LeaseView { resource: resource.to_string(), node, instance, fence, expires_in_ms })
}

fn invalid(what: &str, why: String) -> BusError {
    BusError::backend(what.to_string(), reply::UnexpectedReply(why))
}

#[async_trait::async_trait]
impl Fleet for RedisFleet {
    fn lease_ttl(&self) -> Duration {
        self.inner().options.lease_ttl
    }

    async fn join(&self, member: &Member) -> Result<(), BusError> {
        let json = serde_json::to_string(member).map_err(|e| invalid("encoding the member", e.to_string()))?;
        let seen = format!("{}:fleet:seen", self.inner().options.prefix);
        let ttl = self.ttl_ms().to_string();
        let holder: Option<String> = self
            .eval(
                "registering the node in the fleet",
                JOIN,
                &[&self.key("node", &member.name), &seen],
                &[json.as_bytes(), member.instance.as_bytes(), ttl.as_bytes(), member.name.as_bytes()],
            )
            .await?;
        match holder {
            None => Ok(()),
            Some(json) => {
                let other: Member = serde_json::from_str(&json).unwrap_or_else(|_| Member {
                    name: member.name.clone(),
                    instance: String::new(),
                    version: String::new(),
                    pid: 0,
                    hostname: "?".to_string(),
                    started_at: 0,
                });
                Err(BusError::backend(
                    format!("joining the fleet at {}", self.inner().link.url()),
                    NameTaken {
                        name: other.name,
                        pid: other.pid,
                        hostname: other.hostname,
                        started_at: other.started_at,
                    },
                ))
            }
        }
    }

    async fn leave(&self, member: &Member) -> Result<(), BusError> {
        let _: i64 = self
            .eval("leaving the fleet", LEAVE, &[&self.key("node", &member.name)], &[member.instance.as_bytes()])
            .await?;
        Ok(())
    }

    async fn members(&self) -> Result<Vec<MemberView>, BusError> {
        let what = "listing the fleet's members";
        let seen = format!("{}:fleet:seen", self.inner().options.prefix);
        let all: Vec<(String, String)> = self.inner().link.query(what, cmd("HGETALL").arg(&seen)).await?;
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let mut exists = ::redis::pipe();
        for (name, _) in &all {
            exists.cmd("EXISTS").arg(self.key("node", name));
        }
        let alive: Vec<bool> = self.inner().link.query(what, &exists).await?;
        let mut members = Vec::new();
        for ((_, entry), alive) in all.into_iter().zip(alive) {
            let Some((ms, json)) = entry.split_once('|') else { continue };
            let Ok(member) = serde_json::from_str::<Member>(json) else { continue };
            members.push(MemberView { member, alive, last_heartbeat_ms: ms.parse().unwrap_or(0) });
        }
        members.sort_by(|a, b| a.member.name.cmp(&b.member.name));
        Ok(members)
    }

    async fn acquire(&self, resource: &str, member: &Member) -> Result<Option<u64>, BusError> {
        let who = format!("{}|{}", member.name, member.instance);
        let ttl = self.ttl_ms().to_string();
        self.eval(
            &format!("acquiring the lease on {resource}"),
            ACQUIRE,
            &[&self.key("lease", resource), &self.key("fence", resource)],
            &[who.as_bytes(), ttl.as_bytes()],
        )
        .await
    }

    async fn renew(&self, resource: &str, member: &Member, fence: u64) -> Result<bool, BusError> {
        let ttl = self.ttl_ms().to_string();
        let renewed: i64 = self
            .eval(
                &format!("renewing the lease on {resource}"),
                RENEW,
                &[&self.key("lease", resource)],
                &[holder(member, fence).as_bytes(), ttl.as_bytes()],
            )
            .await?;
        Ok(renewed == 1)
    }

    async fn release(&self, resource: &str, member: &Member, fence: u64) -> Result<(), BusError> {
        let _: i64 = self
            .eval(
                &format!("releasing the lease on {resource}"),
                RELEASE,
                &[&self.key("lease", resource)],
                &[holder(member, fence).as_bytes()],
            )
            .await?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<LeaseView>, BusError> {
        let what = "listing the fleet's leases";
        let prefix = self.key("lease", "");
        let pattern = format!("{prefix}*");
        let mut keys = Vec::new();
        let mut cursor = "0".to_string();
        loop {
            let mut scan = cmd("SCAN");
            scan.arg(&cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, found): (String, Vec<String>) = self.inner().link.query(what, &scan).await?;
            keys.extend(found);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut read = ::redis::pipe();
        for key in &keys {
            read.cmd("GET").arg(key).cmd("PTTL").arg(key);
        }
        let values: Vec<Value> = self.inner().link.query(what, &read).await?;
        let mut leases = Vec::new();
        for (key, pair) in keys.iter().zip(values.chunks(2)) {
            let (Some(value), Some(ttl)) = (pair.first().and_then(text), pair.get(1).and_then(int)) else { continue };
            let resource = key.strip_prefix(&prefix).unwrap_or(key);
            if let Some(lease) = parse_holder(resource, &value, u64::try_from(ttl).unwrap_or(0)) {
                leases.push(lease);
            }
        }
        Ok(leases)
    }

    async fn publish_fenced(
        &self,
        resource: &str,
        member: &Member,
        fence: u64,
        queue: &str,
        payloads: Vec<Bytes>,
    ) -> Result<SeqRange, BusError> {
        let inner = self.inner();
        inner.check_open()?;
        if !valid_name(queue) {
            return Err(BusError::InvalidQueueName(queue.to_string()));
        }
        let limit = inner.options.max_message_bytes;
        if let Some(big) = payloads.iter().find(|p| p.len() > limit) {
            return Err(BusError::TooLarge { size: big.len(), limit });
        }
        if payloads.is_empty() {
            return Ok(0..0);
        }
        let stream = format!("{}:{queue}", inner.options.prefix);
        let expected = holder(member, fence);
        let mut args: Vec<&[u8]> = vec![expected.as_bytes(), PAYLOAD_FIELD.as_bytes()];
        args.extend(payloads.iter().map(|p| &p[..]));
        let what = format!("publishing to queue '{queue}' under the lease on {resource}");
        let answer: (i64, Value) = self.eval(&what, PUBLISH, &[&self.key("lease", resource), &stream], &args).await?;
        let count = payloads.len() as u64;
        match answer {
            (1, added) => {
                inner.counters.published.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
                inner.counters.publish_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let added = int(&added).and_then(|n| u64::try_from(n).ok()).unwrap_or(count);
                Ok(added.saturating_sub(count)..added)
            }
            (_, current) => {
                inner.counters.publish_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let current = text(&current).unwrap_or_default();
                let now = match parse_holder(resource, &current, 0) {
                    Some(lease) => format!("node {} holds it with fencing number {}", lease.node, lease.fence),
                    None => "nobody holds it".to_string(),
                };
                Err(BusError::backend(what, StaleFence { resource: resource.to_string(), fence, now }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_holder;

    #[test]
    fn a_holder_value_reads_back_even_with_bars_in_the_name() {
        let lease = parse_holder("connector:a", "no|de|abc123|42", 5).unwrap();
        assert_eq!((lease.node.as_str(), lease.instance.as_str(), lease.fence), ("no|de", "abc123", 42));
        assert!(parse_holder("connector:a", "garbage", 0).is_none());
    }
}
