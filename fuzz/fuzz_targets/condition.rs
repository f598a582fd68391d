//! The condition language: parsing any text never panics, and a parsed condition
//! evaluates without panicking on messages with odd values.
#![no_main]

use flotilla_core::Message;
use flotilla_core::condition::Condition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(condition) = Condition::parse(text) else { return };
    let message = Message::from_json(
        br#"{"subject":"x","n":3,"f":1.5,"neg":-2,"t":true,"z":0,"s":"0","a":{"b":[1,{"c":"d"}]},"nul":null,"big":1e308}"#,
    )
    .expect("valid fixture");
    let _ = condition.eval(&message);
    let _ = condition.eval(&Message::new());
});
