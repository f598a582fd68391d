//! Black-box tests of the `flotilla` binary: the commands, a running node, a `kill -9`
//! under load with a message audit, and a node on a Redis bus. One test binary; one
//! module per area.

mod check;
mod crash;
mod dispatcher;
mod dist;
mod fleet;
mod limits;
mod manual;
mod node;
mod packaging;
mod redis_bus;
mod relay;
mod reload;
mod rules;
mod security;
mod send;
mod slack;
mod support;
mod webui;
