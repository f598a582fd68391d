//! Named crash scenarios on the simulated disk. Each takes the disk image *while the
//! bus is running* (no graceful shutdown), reopens the bus on it, and checks what
//! survived: everything acknowledged, in order, and nothing damaged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::embedded::sim::{SimFs, Torn};
use flotilla_bus::{Bus, EmbeddedBus, EmbeddedOptions, ReadFrom};

use crate::support::*;

fn open(fs: &SimFs, options: &EmbeddedOptions) -> EmbeddedBus {
    EmbeddedBus::open_with(Arc::new(fs.clone()), Path::new("/data/bus"), options.clone()).unwrap()
}

async fn everything(bus: &EmbeddedBus, queue: &str) -> Vec<String> {
    let mut reader = bus.read(queue, ReadFrom::Start).await.unwrap();
    texts(&reader.fetch(100_000, Duration::from_millis(50)).await.unwrap())
}

#[tokio::test]
async fn crash_after_acknowledged_publishes_loses_nothing() {
    let fs = SimFs::new();
    let options = EmbeddedOptions::default();
    let bus = open(&fs, &options);
    for i in 0..10 {
        bus.publish("q", payloads(i * 10..i * 10 + 10)).await.unwrap();
    }
    let image = fs.crash(Torn::LoseAll);
    drop(bus);
    let bus = open(&image, &options);
    assert_eq!(everything(&bus, "q").await, names(0..100));
    assert_eq!(bus.publish("q", payloads(100..101)).await.unwrap(), 100..101, "numbering continues");
}

#[tokio::test]
async fn torn_tail_is_cut_at_every_length_and_appends_continue() {
    // Write records past the last sync by hand: the bus syncs every publish, so an
    // unsynced tail is what a crash in the middle of a commit leaves.
    let base = SimFs::new();
    let options = EmbeddedOptions::default();
    {
        let bus = open(&base, &options);
        bus.publish("q", payloads(0..3)).await.unwrap();
        bus.close().await.unwrap();
    }
    let segment = Path::new("/data/bus/q/00000000000000000000.seg");
    let mut tail = Vec::new();
    flotilla_bus::embedded::record::encode(&mut tail, 3, 0, b"m3");
    flotilla_bus::embedded::record::encode(&mut tail, 4, 0, b"m4");
    for keep in 0..=tail.len() {
        let fs = base.crash(Torn::LoseAll);
        {
            use flotilla_bus::embedded::io::Filesystem;
            let mut file = fs.open_append(segment, false).unwrap();
            file.append(&tail).unwrap(); // Written, never synced.
        }
        let image = fs.crash(Torn::Keep(keep));
        let bus = open(&image, &options);
        let got = everything(&bus, "q").await;
        let whole_records = if keep >= tail.len() {
            2
        } else if keep >= tail.len() / 2 {
            1
        } else {
            0
        };
        assert_eq!(got, names(0..3 + whole_records), "kept {keep} torn bytes");
        let next = 3 + whole_records;
        assert_eq!(bus.publish("q", payloads(next..next + 1)).await.unwrap(), next as u64..next as u64 + 1);
        assert_eq!(everything(&bus, "q").await, names(0..next + 1), "kept {keep}: appends land after the cut");
    }
}

#[tokio::test]
async fn a_corrupted_unsynced_tail_is_never_served() {
    let base = SimFs::new();
    let options = EmbeddedOptions::default();
    {
        let bus = open(&base, &options);
        bus.publish("q", payloads(0..2)).await.unwrap();
        bus.close().await.unwrap();
    }
    let segment = Path::new("/data/bus/q/00000000000000000000.seg");
    let mut tail = Vec::new();
    flotilla_bus::embedded::record::encode(&mut tail, 2, 0, b"m2");
    for at in 0..tail.len() {
        let fs = base.crash(Torn::LoseAll);
        {
            use flotilla_bus::embedded::io::Filesystem;
            fs.open_append(segment, false).unwrap().append(&tail).unwrap();
        }
        let bus = open(&fs.crash(Torn::KeepCorrupted(at)), &options);
        assert_eq!(everything(&bus, "q").await, names(0..2), "byte {at} damaged");
    }
}

#[tokio::test]
async fn damage_inside_an_older_segment_is_skipped_and_reported_not_served() {
    let fs = SimFs::new();
    let options = EmbeddedOptions { segment_bytes: 120, ..EmbeddedOptions::default() };
    let bus = open(&fs, &options);
    for i in 0..12 {
        bus.publish("q", payloads(i..i + 1)).await.unwrap();
    }
    bus.close().await.unwrap();
    drop(bus);
    // Segment 0 holds m0.. ; damage the payload of its second record.
    let first = Path::new("/data/bus/q/00000000000000000000.seg");
    fs.corrupt(first, 24 + 26 + 24 + 1);
    let bus = open(&fs, &options);
    let got = everything(&bus, "q").await;
    assert!(!got.contains(&"m1".to_string()), "the damaged record is not served: {got:?}");
    let mut expected = names(0..12);
    expected.retain(|m| m != "m1");
    assert_eq!(got, expected, "its neighbours are");
    assert!(bus.counters().corrupt_records_skipped >= 1);
}

#[tokio::test]
async fn crash_while_creating_a_segment_keeps_everything_before_it() {
    let fs = SimFs::new();
    let options = EmbeddedOptions::default();
    let bus = open(&fs, &options);
    bus.publish("q", payloads(0..5)).await.unwrap();
    bus.close().await.unwrap();
    drop(bus);
    // A new segment whose header never made it to disk whole.
    {
        use flotilla_bus::embedded::io::Filesystem;
        let path = Path::new("/data/bus/q/00000000000000000005.seg");
        let mut file = fs.open_append(path, true).unwrap();
        file.append(&flotilla_bus::embedded::segment::encode_header(5)[..10]).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(Path::new("/data/bus/q")).unwrap();
    }
    let bus = open(&fs, &options);
    assert_eq!(everything(&bus, "q").await, names(0..5));
    assert_eq!(bus.publish("q", payloads(5..6)).await.unwrap(), 5..6);
    assert_eq!(everything(&bus, "q").await, names(0..6));
}

#[tokio::test]
async fn a_full_disk_fails_the_publisher_and_loses_nothing_accepted() {
    let fs = SimFs::new();
    let options = EmbeddedOptions::default();
    let bus = open(&fs, &options);
    bus.publish("q", payloads(0..3)).await.unwrap();
    fs.set_space_left(Some(40)); // Room for one small record, not two.
    let err = bus.publish("q", payloads(3..5)).await.unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    fs.set_space_left(None);
    assert_eq!(bus.publish("q", payloads(3..4)).await.unwrap(), 3..4, "the failed batch left nothing behind");
    assert_eq!(everything(&bus, "q").await, names(0..4));
    let image = fs.crash(Torn::LoseAll);
    drop(bus);
    assert_eq!(everything(&open(&image, &options), "q").await, names(0..4));
    assert!(image.files().iter().all(|(_, len)| *len < 1000));
}

#[tokio::test]
async fn group_positions_survive_a_crash_at_least_once() {
    let fs = SimFs::new();
    let options = EmbeddedOptions::default();
    let bus = open(&fs, &options);
    bus.publish("q", payloads(0..10)).await.unwrap();
    let mut consumer = bus.subscribe("q", "g").await.unwrap();
    let got = fetch_all(consumer.as_mut(), 6).await;
    consumer.ack(&ids(&got)).await.unwrap();
    // Give the writer a moment to write the position, then sync it by closing a
    // second bus? No: crash with whatever reached the disk, torn or not.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for torn in [Torn::LoseAll, Torn::Keep(usize::MAX)] {
        let image = fs.crash(torn);
        let reopened = open(&image, &options);
        let mut consumer = reopened.subscribe("q", "g").await.unwrap();
        let again = texts(&fetch_all(consumer.as_mut(), 10).await);
        // Never skips an unacknowledged message; may repeat acknowledged ones.
        assert!(again.ends_with(&names(6..10)), "{torn:?}: {again:?}");
        if matches!(torn, Torn::Keep(_)) {
            assert_eq!(again, names(6..10), "a written position is honoured");
        }
    }
}
