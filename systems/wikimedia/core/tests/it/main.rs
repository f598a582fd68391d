//! Integration tests of the dispatcher core, one binary: the control protocol from the
//! outside, the output formats over the recorded Wikimedia events, and the matching index
//! against a naive model.

mod events;
mod matching;
mod protocol;
