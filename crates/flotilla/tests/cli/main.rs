//! Black-box tests of the `flotilla` binary: the commands, a running node, and a
//! `kill -9` under load with a message audit. One test binary; one module per area.

mod check;
mod crash;
mod dispatcher;
mod limits;
mod node;
mod rules;
mod send;
mod support;
