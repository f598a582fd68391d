//! Black-box tests of the `flotilla` binary: the commands, a running node, and a
//! `kill -9` under load with a message audit. One test binary; one module per area.

mod check;
mod crash;
mod dispatcher;
mod dist;
mod manual;
mod node;
mod packaging;
mod rules;
mod security;
mod send;
mod support;
