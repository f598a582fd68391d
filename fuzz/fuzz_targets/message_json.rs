//! Messages from arbitrary bytes: decoding never panics, and a decoded message
//! re-encodes to JSON that decodes to the same message.
#![no_main]

use flotilla_core::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::from_json(data) {
        let again = Message::from_json(&message.to_json()).expect("our own JSON decodes");
        assert_eq!(again, message);
    }
});
