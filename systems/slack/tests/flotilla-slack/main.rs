//! The Slack system end to end, in process: the gateway over real HTTP (signatures
//! checked against Slack's published example and an independent signer, tampering,
//! stale and future timestamps, retries, bad input), de-duplication surviving a
//! restart, the Web API client against a local server that answers as Slack does
//! (429 with Retry-After, ok:false, answers that are not JSON), and a signed message
//! travelling through the queue and a handler to the local Web API.

mod end_to_end;
mod gateway;
mod socket;
mod support;
mod webapi;
