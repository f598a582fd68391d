//! The fleet on Redis (`RedisFleet`), on a throwaway redis-server: a name held by a
//! live process is refused and freed by leaving; a lease goes to one holder at a time
//! with growing fencing numbers; a publish under a stale fencing number is refused and
//! writes nothing, and a renewal under one fails.

use bytes::Bytes;
use flotilla_bus::fleet::{Fleet, Member, stale_fence};
use flotilla_bus::redis::RedisBus;
use flotilla_bus::{Bus, RedisFleet};

use crate::support::*;

fn member(name: &str, instance: &str) -> Member {
    Member {
        name: name.to_string(),
        instance: instance.to_string(),
        version: "0.0.0".to_string(),
        pid: 4242,
        hostname: "here".to_string(),
        started_at: 1,
    }
}

#[tokio::test]
async fn a_second_live_node_with_the_same_name_is_refused_until_the_first_leaves() {
    let redis = Redis::new();
    let bus = RedisBus::open(redis.options("alpha")).await.unwrap();
    let fleet = RedisFleet::new(&bus);
    let first = member("alpha", "one");
    fleet.join(&first).await.unwrap();
    fleet.join(&first).await.unwrap(); // Its own heartbeat.
    let error = fleet.join(&member("alpha", "two")).await.unwrap_err().to_string();
    assert!(
        error.contains("node.name 'alpha' is already used by a live node of this fleet (pid 4242 on here"),
        "{error}"
    );
    fleet.join(&member("beta", "three")).await.unwrap();

    let members = fleet.members().await.unwrap();
    assert_eq!(
        members.iter().map(|m| (m.member.name.as_str(), m.alive)).collect::<Vec<_>>(),
        [("alpha", true), ("beta", true)]
    );
    assert!(members[0].last_heartbeat_ms > 0);

    fleet.leave(&member("alpha", "two")).await.unwrap(); // Not its to remove.
    assert!(fleet.join(&member("alpha", "two")).await.is_err());
    fleet.leave(&first).await.unwrap();
    fleet.join(&member("alpha", "two")).await.unwrap();
    let members = fleet.members().await.unwrap();
    assert_eq!(members[0].member.instance, "two");
}

#[tokio::test]
async fn a_publish_under_a_stale_fencing_number_is_refused_and_writes_nothing() {
    let redis = Redis::new();
    let bus = RedisBus::open(redis.options("alpha")).await.unwrap();
    let fleet = RedisFleet::new(&bus);
    let (alpha, beta) = (member("alpha", "a1"), member("beta", "b1"));
    let payload = |text: &str| vec![Bytes::from(text.to_string())];

    let fence = fleet.acquire("connector:c", &alpha).await.unwrap().expect("the lease is free");
    assert_eq!(fleet.acquire("connector:c", &beta).await.unwrap(), None, "one holder at a time");
    assert_eq!(fleet.publish_fenced("connector:c", &alpha, fence, "q", payload("first")).await.unwrap(), 0..1);
    assert!(fleet.renew("connector:c", &alpha, fence).await.unwrap());
    let leases = fleet.leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!((leases[0].node.as_str(), leases[0].fence), ("alpha", fence));

    // Alpha's lease lapses (as if it froze past lease_ttl) and beta takes it over.
    let mut connection = redis.server.blocking_connection();
    let _: i64 = redis::cmd("DEL").arg("flotilla:fleet:lease:connector:c").query(&mut connection).unwrap();
    let newer = fleet.acquire("connector:c", &beta).await.unwrap().expect("free again");
    assert!(newer > fence, "fencing numbers grow: {newer} after {fence}");

    let error = fleet.publish_fenced("connector:c", &alpha, fence, "q", payload("stale")).await.unwrap_err();
    let stale = stale_fence(&error).unwrap_or_else(|| panic!("not a stale fence: {error}"));
    assert_eq!(stale.fence, fence);
    assert!(error.to_string().contains(&format!("node beta holds it with fencing number {newer}")), "{error}");
    assert!(!fleet.renew("connector:c", &alpha, fence).await.unwrap(), "a stale holder cannot renew");
    fleet.release("connector:c", &alpha, fence).await.unwrap(); // A no-op: not its lease.
    assert_eq!(fleet.publish_fenced("connector:c", &beta, newer, "q", payload("second")).await.unwrap(), 1..2);

    // The stream holds exactly what the holders of the time wrote.
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    assert_eq!(texts(&fetch_all(consumer.as_mut(), 2).await), ["first", "second"]);
    let length: u64 = redis::cmd("XLEN").arg("flotilla:q").query(&mut connection).unwrap();
    assert_eq!(length, 2, "the refused publish wrote nothing");

    // Released by its holder: free at once, with a larger number next time.
    fleet.release("connector:c", &beta, newer).await.unwrap();
    assert!(fleet.leases().await.unwrap().is_empty());
    assert!(fleet.acquire("connector:c", &alpha).await.unwrap().unwrap() > newer);
}
