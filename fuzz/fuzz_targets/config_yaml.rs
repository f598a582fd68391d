//! The configuration parser and decoder never panic, whatever the text: every input
//! either parses or yields diagnostics, and decoding a parsed tree into the node's
//! shapes never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Shape {
    node: Option<std::collections::BTreeMap<String, String>>,
    connectors: Option<std::collections::BTreeMap<String, flotilla_config::Node>>,
    rules: Option<Vec<flotilla_reactor::RuleConfig>>,
    count: Option<u16>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Ok(tree) = flotilla_config::parse_str("fuzz.yaml", text, &env) {
        let (_, _) = flotilla_config::decode::<Shape>(&tree);
        let _ = tree.to_json();
    }
});
