//! The dispatcher service end to end: the control protocol over real TCP (including
//! hostile clients), subscriptions surviving restarts on SQLite and Postgres, matching
//! from the bus into `sub.<name>` queues and real Redis servers (restarted mid-delivery),
//! and the HTTP API with its event stream.

mod control;
mod delivery;
mod http;
mod isolation;
mod persistence;
mod subscribing;
mod support;
