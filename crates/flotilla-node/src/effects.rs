//! The reactor's side effects on a real node: [`flotilla_connector::BusEffects`], the
//! one real `Effects`, shared with the monitors' `react:` rules. Deliveries to queues
//! and outboxes are buffered per batch; the reactor's bus stage publishes them durably
//! with the batch's outputs and only then acknowledges the batch (see the
//! `flotilla_connector::BusEffects` docs for what is durable when).

/// The effects the node's reactor runs its rules with.
pub type NodeEffects = flotilla_connector::BusEffects;
