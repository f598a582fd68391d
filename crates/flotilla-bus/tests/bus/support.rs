//! Helpers shared by the bus tests.

use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::{Consumer, Delivery, DeliveryId};

pub fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

pub fn payloads(range: std::ops::Range<usize>) -> Vec<Bytes> {
    names(range).into_iter().map(Bytes::from).collect()
}

pub fn texts(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| String::from_utf8(d.payload.to_vec()).unwrap()).collect()
}

pub fn ids(deliveries: &[Delivery]) -> Vec<DeliveryId> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

/// Fetches until `count` messages arrived (or a second passes without any).
pub async fn fetch_all(consumer: &mut dyn Consumer, count: usize) -> Vec<Delivery> {
    let mut all = Vec::new();
    while all.len() < count {
        let batch = consumer.fetch(count - all.len(), Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    all
}
