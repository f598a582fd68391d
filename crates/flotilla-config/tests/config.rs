//! Tests of the whole configuration layer through its public API: parsing with
//! locations, environment substitution, merging, loading directories, and decoding with
//! every error reported.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use flotilla_config::{Diagnostic, Located, Location, Node, NodeKind, decode, decode_at, load, merge, parse_str};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Helpers

fn test_env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("8080".into()),
        "HOST" => Some("irc.libera.chat".into()),
        "EMPTY" => Some(String::new()),
        "TOKEN" => Some("s3cret".into()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A compact rendering of a tree with every location: `{key@l:c=value@l:c}`, plain
/// scalars bare, quoted ones in single quotes, nulls as `~`.
fn render(node: &Node) -> String {
    let at = format!("@{}:{}", node.location.line, node.location.column);
    match &node.kind {
        NodeKind::Null => format!("~{at}"),
        NodeKind::Scalar { text, plain: true } => format!("{text}{at}"),
        NodeKind::Scalar { text, plain: false } => format!("'{text}'{at}"),
        NodeKind::Seq(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]{at}", items.join(", "))
        }
        NodeKind::Map(entries) => {
            let entries: Vec<String> =
                entries.iter().map(|(key, value)| format!("{}={}", render(key), render(value))).collect();
            format!("{{{}}}{at}", entries.join(", "))
        }
    }
}

fn render_errors(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    format!("ERR {}", lines.join("\n"))
}

fn parsed(text: &str) -> String {
    match parse_str("t.yaml", text, &test_env) {
        Ok(node) => render(&node),
        Err(diagnostics) => render_errors(&diagnostics),
    }
}

#[track_caller]
fn check_parse(text: &str, expect: &str) {
    assert_eq!(parsed(text), expect, "parsing:\n{text}");
}

fn must_parse(file: &str, text: &str) -> Node {
    match parse_str(file, text, &test_env) {
        Ok(node) => node,
        Err(diagnostics) => panic!("{}", render_errors(&diagnostics)),
    }
}

/// Decodes `text` into `T` and renders the value (as `{:?}`) or every error.
fn decoded<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
    let node = match parse_str("c.yaml", text, &test_env) {
        Ok(node) => node,
        Err(diagnostics) => return render_errors(&diagnostics),
    };
    match decode::<T>(&node) {
        (Some(value), errors) => {
            assert!(errors.is_empty(), "Some(value) must come with no errors");
            format!("{value:?}")
        }
        (None, errors) => {
            assert!(!errors.is_empty(), "None must come with errors");
            render_errors(&errors)
        }
    }
}

#[track_caller]
fn check_decode<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str, expect: &str) {
    assert_eq!(decoded::<T>(text), expect, "decoding:\n{text}");
}

// ---------------------------------------------------------------------------------------
// Parsing and locations

#[test]
fn parses_trees_with_locations() {
    check_parse("", "{}@1:1");
    check_parse("# nothing but a comment\n", "{}@1:1");
    check_parse("---\n", "{}@2:1");
    check_parse("a: 1", "{a@1:1=1@1:4}@1:1");
    check_parse(
        "node:\n  name: alpha\n  data_dir: ./data\n",
        "{node@1:1={name@2:3=alpha@2:9, data_dir@3:3=./data@3:13}@2:3}@1:1",
    );
    check_parse(
        "a: 'quoted'\nb: \"dq\"\nc: plain\nd: |\n  block\ne: >\n  folded\n",
        "{a@1:1='quoted'@1:4, b@2:1='dq'@2:4, c@3:1=plain@3:4, d@4:1='block\n'@5:3, e@6:1='folded\n'@7:3}@1:1",
    );
    check_parse(
        "empty:\ntilde: ~\nnull: null\nquoted_null: 'null'\n",
        "{empty@1:1=~@1:6, tilde@2:1=~@2:8, null@3:1=~@3:7, quoted_null@4:1='null'@4:14}@1:1",
    );
    check_parse(
        "list:\n  - a\n  - {b: 1}\n  - [1, 2]\n",
        "{list@1:1=[a@2:5, {b@3:6=1@3:9}@3:5, [1@4:6, 2@4:9]@4:5]@2:3}@1:1",
    );
    check_parse("a: !!str 12\nb: ! 13\n", "{a@1:1='12'@1:4, b@2:1='13'@2:4}@1:1");
    check_parse("a: !!int 12\n", "{a@1:1=12@1:4}@1:1");
    check_parse("'quoted key': 1\n", "{'quoted key'@1:1=1@1:15}@1:1");
    check_parse("\u{feff}a: 1\n", "{a@1:1=1@1:4}@1:1");
    check_parse("a: 1\r\nb: 2\r\n", "{a@1:1=1@1:4, b@2:1=2@2:4}@1:1");
    check_parse("é: ü\nx: y\n", "{é@1:1=ü@1:4, x@2:1=y@2:4}@1:1");
}

#[test]
fn anchors_and_aliases_clone_the_anchored_node() {
    check_parse("base: &b {x: 1}\ncopy: *b\n", "{base@1:1={x@1:11=1@1:14}@1:7, copy@2:1={x@1:11=1@1:14}@2:7}@1:1");
    check_parse("a: &v hello\nb: *v\n", "{a@1:1=hello@1:4, b@2:1=hello@2:4}@1:1");
    // `<<` merge keys: the map's own keys win, earlier merged maps win over later ones.
    check_parse(
        "d: &d {x: 1, y: 2}\ne: &e {y: 3, z: 4}\nm:\n  <<: [*d, *e]\n  x: 9\n",
        "{d@1:1={x@1:8=1@1:11, y@1:14=2@1:17}@1:4, e@2:1={y@2:8=3@2:11, z@2:14=4@2:17}@2:4, \
         m@3:1={x@5:3=9@5:6, y@1:14=2@1:17, z@2:14=4@2:17}@4:3}@1:1",
    );
    check_parse("m:\n  <<: 3\n", "ERR t.yaml:2:7: the merge key '<<' takes a map or a list of maps, found \"3\"");
    check_parse("a: *nope\n", "ERR t.yaml:1:4: invalid YAML: while parsing node, found unknown anchor");
}

#[test]
fn rejects_what_a_configuration_must_not_hold() {
    check_parse("a: 1\nb: 2\na: 3\n", "ERR t.yaml:3:1: key 'a' is repeated in this map (first written at t.yaml:1:1)");
    // The same key in two different maps is fine.
    check_parse("x: {a: 1}\ny: {a: 2}\n", "{x@1:1={a@1:5=1@1:8}@1:4, y@2:1={a@2:5=2@2:8}@2:4}@1:1");
    check_parse(
        "a: 1\n---\nb: 2\n",
        "ERR t.yaml:2:1: a second YAML document ('---') starts here; a configuration file holds exactly one",
    );
    check_parse(
        "- a\n- b\n",
        "ERR t.yaml:1:1: the top level of a configuration file must be a map of 'key: value' lines, found a list",
    );
    check_parse(
        "just text\n",
        "ERR t.yaml:1:1: the top level of a configuration file must be a map of 'key: value' lines, found \"just text\"",
    );
    check_parse("? [a, b]\n: 1\n", "ERR t.yaml:1:3: a map key must be text, found a list");
    check_parse("a: [1, 2\nb: 3\n", "ERR t.yaml:2:2: invalid YAML: illegal placement of ':' indicator");
    check_parse("a: x\n  b: y\n", "ERR t.yaml:2:4: invalid YAML: mapping values are not allowed in this context");
    check_parse(
        "a: !custom x\n",
        "ERR t.yaml:1:4: YAML tags such as '!custom' are not supported in Flotilla configuration",
    );
    // Several problems in one file are all reported.
    check_parse(
        "a: 1\na: 2\nb: ${NOPE}\nb: 3\n",
        "ERR t.yaml:2:1: key 'a' is repeated in this map (first written at t.yaml:1:1)\n\
         t.yaml:3:4: environment variable NOPE is not set (write ${NOPE:-default} to give a default)\n\
         t.yaml:4:1: key 'b' is repeated in this map (first written at t.yaml:3:1)",
    );
}

#[test]
fn limits_stop_hostile_input() {
    let deep = format!("a: {}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(parsed(&deep), "ERR t.yaml:1:131: the configuration is nested deeper than 128 levels");
    // Each level doubles the size: 2^30 values if expanded.
    let mut laughs = String::from("l0: &l0 [x, x]\n");
    for level in 1..30 {
        laughs.push_str(&format!("l{level}: &l{level} [*l{}, *l{}]\n", level - 1, level - 1));
    }
    let result = parsed(&laughs);
    assert!(result.contains("expands to more than 200000 values"), "{result}");
}

#[test]
fn the_deepest_accepted_nesting_decodes() {
    let depth = flotilla_config::MAX_DEPTH - 1;
    let text = format!("a: {}1{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
    let node = must_parse("t.yaml", &text);
    let (value, errors) = decode::<serde_json::Value>(&node);
    assert_eq!(errors, vec![]);
    assert_eq!(value, Some(node.to_json()));
    let (copy, errors) = decode::<Node>(&node);
    assert_eq!(errors, vec![]);
    assert_eq!(copy.as_ref(), Some(&node));
    let mut merged = node.clone();
    assert_eq!(merge(&mut merged, node).len(), 1);
}

#[test]
fn size_limit_counts_values_not_nesting() {
    // 150 000 values (within the limit) nested a few levels deep.
    let mut text = String::new();
    for section in 0..300 {
        text.push_str(&format!("s{section}:\n  inner:\n"));
        for item in 0..249 {
            text.push_str(&format!("    k{item}: v\n"));
        }
    }
    let node = must_parse("t.yaml", &text);
    assert_eq!(node.get("s299.inner.k248").and_then(Node::as_str), Some("v"));
}

#[test]
fn node_lookup_and_json() {
    let node = must_parse(
        "t.yaml",
        "connectors:\n  pulse1: {delay: 5s}\n  \"my.bot\": {type: irc}\nrules:\n  - name: a\n  - name: b\n    condition: x is true\n",
    );
    let at = |path: &str| node.get(path).map(|n| format!("{}@{}", n.to_json(), n.location));
    assert_eq!(at("connectors.pulse1.delay").as_deref(), Some("\"5s\"@t.yaml:2:19"));
    assert_eq!(at("rules[1].condition").as_deref(), Some("\"x is true\"@t.yaml:7:16"));
    assert_eq!(at(r#"connectors["my.bot"].type"#).as_deref(), Some("\"irc\"@t.yaml:3:20"));
    assert_eq!(at("rules[2]"), None);
    assert_eq!(at("connectors.nope"), None);
    assert_eq!(at("rules.name"), None);
    assert_eq!(at("rules[").as_deref(), None);
    assert_eq!(node.get("").map(|n| n.location.to_string()).as_deref(), Some("t.yaml:1:1"));

    let node = must_parse(
        "t.yaml",
        "i: 42\nneg: -7\nhex: 0x10\nf: 1.5\nb: true\nn: ~\ne:\ns: 'x'\nq: '42'\nt: yes\ninf: .inf\nl: [1, a]\nbig: 18446744073709551615\n",
    );
    assert_eq!(
        node.to_json(),
        json!({"i": 42, "neg": -7, "hex": 16, "f": 1.5, "b": true, "n": null, "e": null,
               "s": "x", "q": "42", "t": "yes", "inf": ".inf", "l": [1, "a"],
               "big": 18446744073709551615u64})
    );
}

// ---------------------------------------------------------------------------------------
// Environment substitution

#[test]
fn substitutes_environment_in_values() {
    check_parse("port: ${PORT}\n", "{port@1:1=8080@1:7}@1:1");
    check_parse("url: \"irc://${HOST}:${PORT}\"\n", "{url@1:1='irc://irc.libera.chat:8080'@1:6}@1:1");
    check_parse("t: ${MISSING:-fallback}\n", "{t@1:1=fallback@1:4}@1:1");
    check_parse("t: ${MISSING:-}\n", "{t@1:1=@1:4}@1:1");
    check_parse("t: ${EMPTY}\n", "{t@1:1=@1:4}@1:1");
    check_parse("re: ^a$$b$\n", "{re@1:1=^a$b$@1:5}@1:1");
    check_parse("list: ['${PORT}', '${HOST}']\n", "{list@1:1=['8080'@1:8, 'irc.libera.chat'@1:19]@1:7}@1:1");
    // In flow collections `{` and `}` are YAML syntax, so a reference there must be quoted.
    check_parse(
        "list: [${PORT}]\n",
        "ERR t.yaml:1:9: invalid YAML: while parsing a flow sequence, expected ',' or ']'",
    );
    // Keys are names, never substituted.
    check_parse("${PORT}: x\n", "{${PORT}@1:1=x@1:10}@1:1");
    check_parse(
        "a:\n  b: ${FOO}\n",
        "ERR t.yaml:2:6: environment variable FOO is not set (write ${FOO:-default} to give a default)",
    );
    check_parse(
        "a: ${BAD NAME}\n",
        "ERR t.yaml:1:4: invalid environment variable reference '${BAD NAME}' (expected ${NAME} or ${NAME:-default}, NAME made of letters, digits and '_')",
    );
    check_parse("a: x${PORT\n", "ERR t.yaml:1:4: unterminated '${' in a value (write '$$' for a literal '$')");
}

#[test]
fn substituted_plain_scalars_keep_their_type() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Http {
        port: u16,
        token: Option<String>,
        name: String,
    }
    check_decode::<Http>(
        "port: ${PORT}\ntoken: ${MISSING:-}\nname: ${EMPTY}\n",
        r#"Http { port: 8080, token: None, name: "" }"#,
    );
    check_decode::<Http>(
        "port: ${HOST}\ntoken: ${TOKEN}\nname: x\n",
        "ERR c.yaml:1:7: expected a number for 'port', found \"irc.libera.chat\" (a whole number from 0 to 65535)",
    );
}

// ---------------------------------------------------------------------------------------
// Merging

fn merged(files: &[(&str, &str)]) -> String {
    let mut nodes = files.iter().map(|(name, text)| must_parse(name, text));
    let mut root = nodes.next().expect("at least one file");
    let mut diagnostics = Vec::new();
    for node in nodes {
        diagnostics.extend(merge(&mut root, node));
    }
    if diagnostics.is_empty() { render(&root) } else { render_errors(&diagnostics) }
}

#[track_caller]
fn check_merge(files: &[(&str, &str)], expect: &str) {
    assert_eq!(merged(files), expect);
}

#[test]
fn merges_maps_and_reports_conflicts_with_both_places() {
    check_merge(
        &[("a.yaml", "node:\n  name: alpha\n"), ("b.yaml", "node:\n  data_dir: /d\nbus: {}\n")],
        "{node@1:1={name@2:3=alpha@2:9, data_dir@2:3=/d@2:13}@2:3, bus@3:1={}@3:6}@1:1",
    );
    check_merge(
        &[("a.yaml", "x: 1\nnode:\n  name: alpha\n"), ("b.yaml", "node:\n  name: beta\n")],
        "ERR b.yaml:2:3: key 'node.name' is defined in both a.yaml:3:3 and b.yaml:2:3",
    );
    check_merge(
        &[("a.yaml", "rules:\n  - name: a\n"), ("b.yaml", "rules:\n  - name: b\n")],
        "ERR b.yaml:1:1: key 'rules' is defined in both a.yaml:1:1 and b.yaml:1:1",
    );
    check_merge(
        &[("a.yaml", "bus: redis\n"), ("b.yaml", "bus:\n  backend: redis\n")],
        "ERR b.yaml:1:1: key 'bus' is defined in both a.yaml:1:1 and b.yaml:1:1",
    );
    // Every conflict, in each of several files.
    check_merge(
        &[
            ("a.yaml", "a: 1\nb: {c: 1, d: 2}\n"),
            ("b.yaml", "a: 2\nb: {c: 3, e: 4}\n"),
            ("c.yaml", "b: {d: 5, e: 6}\n"),
        ],
        "ERR b.yaml:1:1: key 'a' is defined in both a.yaml:1:1 and b.yaml:1:1\n\
         b.yaml:2:5: key 'b.c' is defined in both a.yaml:2:5 and b.yaml:2:5\n\
         c.yaml:1:5: key 'b.d' is defined in both a.yaml:2:11 and c.yaml:1:5\n\
         c.yaml:1:11: key 'b.e' is defined in both b.yaml:2:11 and c.yaml:1:11",
    );
}

// ---------------------------------------------------------------------------------------
// Loading

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create directories");
    }
    fs::write(path, text).expect("write file");
}

/// Loads `dir` on `host` and renders the tree as JSON (locations shown with their file
/// relative to `dir`) or the errors.
fn loaded(dir: &Path, host: &str) -> String {
    let prefix = format!("{}/", dir.display());
    match load(dir, host, &test_env) {
        Ok(node) => node.to_json().to_string(),
        Err(diagnostics) => render_errors(&diagnostics).replace(&prefix, ""),
    }
}

#[test]
fn loads_a_single_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "flotilla.yaml", "node: {name: alpha}\n");
    let node = load(&dir.path().join("flotilla.yaml"), "alpha", &test_env).expect("loads");
    assert_eq!(node.to_json(), json!({"node": {"name": "alpha"}}));
    assert!(node.get("node.name").is_some_and(|n| n.location.file.ends_with("flotilla.yaml")));

    let missing = load(&dir.path().join("nope.yaml"), "alpha", &test_env).expect_err("missing");
    assert_eq!(missing.len(), 1);
    assert!(missing[0].location.is_none());
    assert!(missing[0].message.starts_with("cannot read configuration"), "{}", missing[0]);
}

#[test]
fn loads_directories_with_host_specific_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "flotilla.yaml", "node:\n  data_dir: /srv/flotilla\n");
    write(root, "node.yaml.alpha", "node:\n  name: alpha\n");
    write(root, "node.yml.beta", "node:\n  name: beta\n");
    write(root, "http.yml", "http:\n  listen: 127.0.0.1:8080\n");
    write(root, "sub/deeper/bus.yaml", "bus: {backend: embedded}\n");
    write(root, "README.md", "not configuration: [\n");
    write(root, "notes.yaml.bak~", "ignored: [\n");
    write(root, ".hidden.yaml", "ignored: [\n");
    assert_eq!(
        loaded(root, "alpha"),
        r#"{"node":{"data_dir":"/srv/flotilla","name":"alpha"},"http":{"listen":"127.0.0.1:8080"},"bus":{"backend":"embedded"}}"#
    );
    assert_eq!(
        loaded(root, "BETA"),
        r#"{"node":{"data_dir":"/srv/flotilla","name":"beta"},"http":{"listen":"127.0.0.1:8080"},"bus":{"backend":"embedded"}}"#
    );
    assert_eq!(loaded(root, "alpha.example.com"), loaded(root, "alpha"));
    assert_eq!(
        loaded(root, "gamma"),
        r#"{"node":{"data_dir":"/srv/flotilla"},"http":{"listen":"127.0.0.1:8080"},"bus":{"backend":"embedded"}}"#
    );
    // An empty directory is an empty configuration.
    let empty = tempfile::tempdir().expect("temp dir");
    assert_eq!(loaded(empty.path(), "alpha"), "{}");
}

#[test]
fn loads_wubots_plugin_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "reactor.yaml.alpha", "rules:\n  - name: notify\n    condition: subject matches ^x$\n");
    write(root, "plugins/RSS/slashdot.yaml", "feed: http://rss.slashdot.org/Slashdot/slashdot\ndelay: 15m\n");
    write(root, "plugins/RSS/slashdot.yaml.alpha", "react:\n  - name: r\n");
    write(root, "plugins/Pulse/minute.yaml.beta", "delay: 1m\n");
    write(root, "plugins/Uptime/host.yml", "");
    assert_eq!(
        loaded(root, "alpha"),
        r#"{"connectors":{"RSS-slashdot":{"type":"rss","feed":"http://rss.slashdot.org/Slashdot/slashdot","delay":"15m","react":[{"name":"r"}]},"Uptime-host":{"type":"uptime"}},"rules":[{"name":"notify","condition":"subject matches ^x$"}]}"#
    );
    assert_eq!(
        loaded(root, "beta"),
        r#"{"connectors":{"Pulse-minute":{"type":"pulse","delay":"1m"},"RSS-slashdot":{"type":"rss","feed":"http://rss.slashdot.org/Slashdot/slashdot","delay":"15m"},"Uptime-host":{"type":"uptime"}}}"#
    );
    // Locations inside a plugin file point into that file.
    let node = load(root, "alpha", &test_env).expect("loads");
    let delay = node.get("connectors.RSS-slashdot.delay").expect("delay");
    assert!(delay.location.file.ends_with("plugins/RSS/slashdot.yaml"), "{}", delay.location);
    assert_eq!((delay.location.line, delay.location.column), (2, 8));
}

#[test]
fn loads_the_examples_from_wubots_documentation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(
        root,
        "plugins/XMPP/myhost.yaml",
        "---\naccount: wubot-hostname@myserver\npassword: mypassword\nhost: 192.168.1.2\nport: 5222\n\
         directory: /home/wu/wubot/reactor\nuser: wubot-reactor@hostname/myserver\ndelay: 5s\n",
    );
    write(root, "plugins/RSS/perl.org.yaml.somehostname", "---\nfeed: http://perl.org/rss\n");
    write(
        root,
        "reactor.yaml",
        "---\nrules:\n  - name: forward\n    condition: noforward is false\n    plugin: MessageQueue\n    config:\n      directory: /home/wu/wubot/forward\n",
    );
    let node = load(root, "somehostname", &no_env).expect("loads");
    assert_eq!(
        node.to_json(),
        json!({
            "connectors": {
                "RSS-perl.org": {"type": "rss", "feed": "http://perl.org/rss"},
                "XMPP-myhost": {"type": "xmpp", "account": "wubot-hostname@myserver", "password": "mypassword",
                                "host": "192.168.1.2", "port": 5222, "directory": "/home/wu/wubot/reactor",
                                "user": "wubot-reactor@hostname/myserver", "delay": "5s"}
            },
            "rules": [{"name": "forward", "condition": "noforward is false", "plugin": "MessageQueue",
                       "config": {"directory": "/home/wu/wubot/forward"}}]
        })
    );
    // A connector named with a dot is addressed (and reported) with quotes.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Rss {
        r#type: String,
        url: String,
    }
    let section = node.get(r#"connectors["RSS-perl.org"]"#).expect("present");
    let (_, errors) = decode_at::<Rss>(section, r#"connectors["RSS-perl.org"]"#);
    let prefix = format!("{}/", root.display());
    assert_eq!(
        render_errors(&errors).replace(&prefix, ""),
        "ERR plugins/RSS/perl.org.yaml.somehostname:2:1: unknown key 'feed' in connectors[\"RSS-perl.org\"] (expected one of: type, url)\n\
         plugins/RSS/perl.org.yaml.somehostname:2:1: missing required key 'url' in connectors[\"RSS-perl.org\"]"
    );
}

#[test]
fn plugin_layout_mistakes_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "plugins/RSS/slashdot.yaml", "type: irc\nfeed: x\n");
    write(root, "plugins/stray.yaml", "a: 1\n");
    write(root, "plugins/RSS/nested/deep.yaml", "a: 1\n");
    write(root, "flotilla.yaml", "connectors:\n  Pulse-p:\n    type: pulse\n    delay: 1m\n");
    write(root, "plugins/Pulse/p.yaml", "delay: 2m\n");
    assert_eq!(
        loaded(root, "alpha"),
        "ERR plugins/Pulse/p.yaml:1:1: key 'connectors.Pulse-p.delay' is defined in both flotilla.yaml:4:5 and plugins/Pulse/p.yaml:1:1\n\
         plugins/RSS/nested/deep.yaml: files under plugins/ must be plugins/<Plugin>/<instance>.yaml\n\
         plugins/RSS/slashdot.yaml:1:1: 'type' cannot be set in a plugin file: the folder plugins/RSS/ makes this connector type 'rss'\n\
         plugins/stray.yaml: files under plugins/ must be plugins/<Plugin>/<instance>.yaml"
    );
}

#[test]
fn collects_errors_from_every_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "a.yaml", "a: [1\n");
    write(root, "b.yaml", "b: ${UNSET}\n");
    fs::write(root.join("c.yaml"), b"c: ok\nd: \xff\xfe\n").expect("write");
    write(root, "d.yaml", "a: 1\n- x\n");
    write(root, "e.yaml", "fine: true\n");
    write(root, "f.yaml", "fine: false\n");
    assert_eq!(
        loaded(root, "alpha"),
        "ERR a.yaml:2:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'\n\
         b.yaml:1:4: environment variable UNSET is not set (write ${UNSET:-default} to give a default)\n\
         c.yaml:2:4: the file is not valid UTF-8 text (configuration files must be UTF-8)\n\
         d.yaml:2:3: invalid YAML: while parsing a block mapping, did not find expected key\n\
         f.yaml:1:1: key 'fine' is defined in both e.yaml:1:1 and f.yaml:1:1"
    );
}

#[cfg(unix)]
#[test]
fn symlink_loops_do_not_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "sub/a.yaml", "a: 1\n");
    std::os::unix::fs::symlink(root, root.join("sub/loop")).expect("symlink");
    std::os::unix::fs::symlink(root.join("sub"), root.join("again")).expect("symlink");
    std::os::unix::fs::symlink(root.join("missing"), root.join("dangling.yaml")).expect("symlink");
    std::os::unix::fs::symlink(root.join("missing"), root.join("dangling.txt")).expect("symlink");
    let result = loaded(root, "alpha");
    assert!(result.starts_with("ERR cannot read dangling.yaml: "), "{result}");
    fs::remove_file(root.join("dangling.yaml")).expect("remove");
    assert_eq!(loaded(root, "alpha"), r#"{"a":1}"#);
}

#[cfg(unix)]
#[test]
fn unreadable_files_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(root, "secret.yaml", "a: 1\n");
    write(root, "locked/inner.yaml", "b: 1\n");
    fs::set_permissions(root.join("secret.yaml"), fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).expect("chmod");
    // Root ignores permissions; only check when they are enforced.
    if fs::read(root.join("secret.yaml")).is_err() {
        let result = loaded(root, "alpha");
        assert!(result.contains("cannot read directory locked"), "{result}");
        assert!(result.contains("cannot read secret.yaml"), "{result}");
    }
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o755)).expect("chmod");
}

// ---------------------------------------------------------------------------------------
// Decoding

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Config {
    node: NodeSection,
    #[serde(default)]
    bus: Option<Bus>,
    #[serde(default)]
    connectors: BTreeMap<String, Node>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct NodeSection {
    name: String,
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    workers: u8,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Bus {
    backend: Backend,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Embedded,
    Redis,
    Nats,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Rule {
    name: String,
    #[serde(default)]
    condition: Option<Located<String>>,
    #[serde(default)]
    plugin: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    last_rule: bool,
}

#[test]
fn decodes_a_valid_configuration() {
    let text = "node:\n  name: alpha\n  workers: 4\nbus:\n  backend: redis\n  url: redis://x\n\
                connectors:\n  pulse1: {type: pulse, delay: 5s}\n\
                rules:\n  - name: a\n    condition: subject equals x\n    rules:\n      - name: b\n        last_rule: true\n";
    let node = must_parse("c.yaml", text);
    let (config, errors) = decode::<Config>(&node);
    assert_eq!(errors, Vec::<Diagnostic>::new());
    let config = config.expect("valid");
    assert_eq!(config.node.name, "alpha");
    assert_eq!(config.node.workers, 4);
    assert_eq!(config.bus.as_ref().map(|b| &b.backend), Some(&Backend::Redis));
    let condition = config.rules[0].condition.as_ref().expect("condition");
    assert_eq!(condition.value, "subject equals x");
    assert_eq!(condition.location, Location::new("c.yaml", 11, 16));
    assert!(config.rules[0].rules[0].last_rule);
    // The connector section is kept raw, with its locations, for a second pass.
    let pulse = &config.connectors["pulse1"];
    assert_eq!(pulse.get("delay").map(|d| d.location.clone()), Some(Location::new("c.yaml", 8, 32)));
}

#[test]
fn reports_every_mistake_in_file_order() {
    let text = "\
nde: {}
node:
  name: [alpha]
  workers: 300
  colour: red
bus:
  backend: embdded
  url: 5
rules:
  - name: ok
  - condition: no name here
    plugin: x
    last_rule: maybe
  - name: nested
    rules:
      - name: inner
        conditon: typo
      - {}
";
    assert_eq!(
        decoded::<Config>(text),
        "ERR c.yaml:1:1: unknown key 'nde' at the top level (expected one of: node, bus, connectors, rules); did you mean 'node'?\n\
         c.yaml:3:9: expected a string for 'node.name', found a list\n\
         c.yaml:4:12: expected a number for 'node.workers', found \"300\" (a whole number from 0 to 255)\n\
         c.yaml:5:3: unknown key 'colour' in node (expected one of: name, data_dir, workers)\n\
         c.yaml:7:12: unknown value 'embdded' for 'bus.backend' (expected 'embedded', 'redis' or 'nats')\n\
         c.yaml:11:5: missing required key 'name' in rules[1]\n\
         c.yaml:13:16: expected true or false (or 1/0, yes/no) for 'rules[1].last_rule', found \"maybe\"\n\
         c.yaml:17:9: unknown key 'conditon' in rules[2].rules[0] (expected one of: name, condition, plugin, rules, last_rule); did you mean 'condition'?\n\
         c.yaml:18:9: missing required key 'name' in rules[2].rules[1]"
    );
}

#[test]
fn a_missing_section_is_reported_where_it_belongs() {
    check_decode::<Config>("bus: {backend: nats}\n", "ERR c.yaml:1:1: missing required key 'node' at the top level");
    check_decode::<Config>("node:\n", "ERR c.yaml:1:5: missing required key 'name' in node");
    check_decode::<Config>("node: alpha\n", "ERR c.yaml:1:7: expected a map for 'node', found \"alpha\"");
}

#[test]
fn every_missing_key_is_reported() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Irc {
        server: String,
        port: u16,
        nick: String,
        channels: Vec<String>,
        tls: Tls,
        #[serde(default)]
        realname: Option<String>,
        after: Located<String>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Tls {
        verify: bool,
        ca: String,
    }
    check_decode::<Irc>(
        "nick: x\nport: http\n",
        "ERR c.yaml:1:1: missing required key 'server' at the top level\n\
         c.yaml:1:1: missing required key 'channels' at the top level\n\
         c.yaml:1:1: missing required key 'tls' at the top level\n\
         c.yaml:1:1: missing required key 'after' at the top level\n\
         c.yaml:2:7: expected a number for 'port', found \"http\" (a whole number from 0 to 65535)",
    );
    check_decode::<Irc>(
        "server: s\nport: 1\nnick: n\nchannels: []\ntls: {}\nafter: a\n",
        "ERR c.yaml:5:6: missing required key 'verify' in tls\n\
         c.yaml:5:6: missing required key 'ca' in tls",
    );
    // A key whose value fails is stood in for, so the rest of its struct is still checked.
    check_decode::<Irc>(
        "server: [s]\nport: 1\nnick: n\nchannels: x\ntls:\n  verify: maybe\nafter: a\n",
        "ERR c.yaml:1:9: expected a string for 'server', found a list\n\
         c.yaml:4:11: expected a list for 'channels', found \"x\"\n\
         c.yaml:6:3: missing required key 'ca' in tls\n\
         c.yaml:6:11: expected true or false (or 1/0, yes/no) for 'tls.verify', found \"maybe\"",
    );
}

#[test]
fn decodes_primitives_leniently_but_strictly_typed() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Prims {
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        offset: Option<i32>,
        #[serde(default)]
        ratio: Option<f64>,
        #[serde(default)]
        flag: Option<bool>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        letter: Option<char>,
        #[serde(default)]
        nothing: Option<()>,
    }
    let ok = |text: &str| decoded::<Prims>(text);
    assert_eq!(
        ok("port: 8080\noffset: -3\nratio: 1\nflag: true\ntext: 123\nletter: x\n"),
        "Prims { port: Some(8080), offset: Some(-3), ratio: Some(1.0), flag: Some(true), text: Some(\"123\"), letter: Some('x'), nothing: None }"
    );
    // Quoted numbers and booleans are accepted where a number or boolean is asked for;
    // plain ones where a string is.
    assert_eq!(
        ok("port: '0x50'\nflag: 'false'\ntext: true\nratio: .5\n"),
        "Prims { port: Some(80), offset: None, ratio: Some(0.5), flag: Some(false), text: Some(\"true\"), letter: None, nothing: None }"
    );
    assert_eq!(
        ok("port: 70000\noffset: 1.5\nratio: abc\nflag: maybe\ntext: {a: 1}\nletter: xy\nnothing: 3\n"),
        "ERR c.yaml:1:7: expected a number for 'port', found \"70000\" (a whole number from 0 to 65535)\n\
         c.yaml:2:9: expected a number for 'offset', found \"1.5\" (a whole number from -2147483648 to 2147483647)\n\
         c.yaml:3:8: expected a number for 'ratio', found \"abc\"\n\
         c.yaml:4:7: expected true or false (or 1/0, yes/no) for 'flag', found \"maybe\"\n\
         c.yaml:5:7: expected a string for 'text', found a map\n\
         c.yaml:6:9: expected a single character for 'letter', found \"xy\"\n\
         c.yaml:7:10: expected nothing (an empty value) for 'nothing', found \"3\""
    );
    assert_eq!(
        ok("text:\nport: ~\n"),
        "Prims { port: None, offset: None, ratio: None, flag: None, text: None, letter: None, nothing: None }"
    );
}

#[test]
fn a_placeholder_rejected_by_its_type_is_not_a_second_error() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct S {
        workers: std::num::NonZeroU16,
        after: u8,
    }
    check_decode::<S>("workers: 4\nafter: 1\n", "S { workers: 4, after: 1 }");
    check_decode::<S>(
        "workers: 0\nafter: 1\n",
        "ERR c.yaml:1:10: invalid value for 'workers': expected a nonzero u16, found integer `0`",
    );
    check_decode::<S>(
        "workers: many\nafter: x\n",
        "ERR c.yaml:1:10: expected a number for 'workers', found \"many\" (a whole number from 0 to 65535)\n\
         c.yaml:2:8: expected a number for 'after', found \"x\" (a whole number from 0 to 255)",
    );
}

#[test]
fn a_string_field_needs_a_value() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct S {
        name: String,
    }
    check_decode::<S>("name:\n", "ERR c.yaml:1:5: expected a string for 'name', found nothing");
    check_decode::<S>("name: ''\n", r#"S { name: "" }"#);
}

#[test]
fn enums() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Store {
        #[serde(rename = "sqlite")]
        Sqlite { path: String },
        #[serde(rename = "memory")]
        Memory,
        #[serde(rename = "url")]
        Url(String),
        #[serde(rename = "pair")]
        Pair(u8, u8),
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct S {
        store: Store,
    }
    check_decode::<S>("store: memory\n", "S { store: Memory }");
    check_decode::<S>("store: {memory: ~}\n", "S { store: Memory }");
    check_decode::<S>("store: {url: x}\n", r#"S { store: Url("x") }"#);
    check_decode::<S>("store: {pair: [1, 2]}\n", "S { store: Pair(1, 2) }");
    check_decode::<S>("store:\n  sqlite:\n    path: /db\n", r#"S { store: Sqlite { path: "/db" } }"#);
    check_decode::<S>(
        "store: {sqlite: {path: /db, mode: x}}\n",
        "ERR c.yaml:1:29: unknown key 'mode' in store.sqlite (expected one of: path)",
    );
    check_decode::<S>("store: {sqlite: {}}\n", "ERR c.yaml:1:17: missing required key 'path' in store.sqlite");
    check_decode::<S>(
        "store: sqlite\n",
        "ERR c.yaml:1:8: 'sqlite' needs settings for 'store': write 'sqlite:' followed by them",
    );
    check_decode::<S>(
        "store: {memory: 3}\n",
        "ERR c.yaml:1:17: 'memory' takes no value: write just 'memory' for 'store'",
    );
    check_decode::<S>(
        "store: {nope: 1}\n",
        "ERR c.yaml:1:9: unknown value 'nope' for 'store' (expected 'sqlite', 'memory', 'url' or 'pair')",
    );
    check_decode::<S>(
        "store: [memory]\n",
        "ERR c.yaml:1:8: expected 'sqlite', 'memory', 'url' or 'pair' for 'store', found a list",
    );
    check_decode::<S>(
        "store: {pair: [1, 2, 3]}\n",
        "ERR c.yaml:1:15: expected a list of 2 items for 'store.pair', found 3 items",
    );
    check_decode::<S>(
        "store: {pair: [1]}\n",
        "ERR c.yaml:1:15: expected tuple variant Store::Pair with 2 elements for 'store.pair', found 1 item",
    );
}

#[test]
fn maps_sequences_tuples_and_newtypes() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Port(u16);
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct S {
        #[serde(default)]
        ports: HashMap<String, Port>,
        #[serde(default)]
        by_number: BTreeMap<u16, String>,
        #[serde(default)]
        pair: Option<(String, u8)>,
        #[serde(default)]
        list: Vec<u8>,
    }
    check_decode::<S>(
        "ports: {web: 80}\nby_number: {22: ssh, 0x50: http}\npair: [a, 1]\nlist: [1, 2]\n",
        r#"S { ports: {"web": Port(80)}, by_number: {22: "ssh", 80: "http"}, pair: Some(("a", 1)), list: [1, 2] }"#,
    );
    check_decode::<S>("ports:\nby_number:\nlist:\n", "S { ports: {}, by_number: {}, pair: None, list: [] }");
    check_decode::<S>(
        "ports: {web: x}\nby_number: {ssh: 22}\nlist: [1, -1, 300]\npair: [a]\n",
        "ERR c.yaml:1:14: expected a number for 'ports.web', found \"x\" (a whole number from 0 to 65535)\n\
         c.yaml:2:13: expected a number for 'by_number.ssh', found \"ssh\" (a whole number from 0 to 65535)\n\
         c.yaml:3:11: expected a number for 'list[1]', found \"-1\" (a whole number from 0 to 255)\n\
         c.yaml:3:15: expected a number for 'list[2]', found \"300\" (a whole number from 0 to 255)\n\
         c.yaml:4:7: expected a tuple of size 2 for 'pair', found 1 item",
    );
    check_decode::<S>(
        "list: 3\nports: [1]\n",
        "ERR c.yaml:1:7: expected a list for 'list', found \"3\"\n\
         c.yaml:2:8: expected a map for 'ports', found a list",
    );
}

#[test]
fn errors_in_lists_of_structs_name_the_index() {
    let node = must_parse("c.yaml", "rules:\n- name: a\n- name: b\n  condition: [x]\n- {name: c, last_rule: 2}\n");
    let (rules, errors) = decode_at::<Vec<Rule>>(node.get("rules").expect("rules"), "rules");
    assert!(rules.is_none());
    assert_eq!(
        render_errors(&errors),
        "ERR c.yaml:4:14: expected a string for 'rules[1].condition', found a list\n\
         c.yaml:5:24: expected true or false (or 1/0, yes/no) for 'rules[2].last_rule', found \"2\""
    );
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Reactor {
        rules: Vec<Rule>,
    }
    check_decode::<Reactor>(
        "rules:\n  - name: a\n  - nmae: b\n  - name: c\n    rules: [{name: d, pluginn: x}]\n",
        "ERR c.yaml:3:5: unknown key 'nmae' in rules[1] (expected one of: name, condition, plugin, rules, last_rule); did you mean 'name'?\n\
         c.yaml:3:5: missing required key 'name' in rules[1]\n\
         c.yaml:5:23: unknown key 'pluginn' in rules[2].rules[0] (expected one of: name, condition, plugin, rules, last_rule); did you mean 'plugin'?",
    );
}

#[test]
fn errors_from_a_types_own_parsing_are_placed_and_decoding_goes_on() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Listen {
        listen: std::net::SocketAddr,
        #[serde(default)]
        backlog: u32,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Servers {
        control: Listen,
        http: Listen,
        #[serde(default)]
        name: Option<String>,
    }
    check_decode::<Servers>(
        "control: {listen: '127.0.0.1:99999', backlog: x}\nhttp: {listen: 'nope'}\nname: [1]\n",
        "ERR c.yaml:1:19: invalid value for 'control.listen': invalid socket address syntax\n\
         c.yaml:1:47: expected a number for 'control.backlog', found \"x\" (a whole number from 0 to 4294967295)\n\
         c.yaml:2:16: invalid value for 'http.listen': invalid socket address syntax\n\
         c.yaml:3:7: expected a string for 'name', found a list",
    );
}

#[test]
fn validation_of_stand_ins_is_not_reported() {
    #[derive(Debug, Deserialize)]
    #[serde(try_from = "RawListen")]
    #[allow(dead_code)]
    struct Listen {
        host: String,
        port: u16,
    }
    #[derive(Deserialize)]
    struct RawListen {
        host: String,
        port: u16,
    }
    impl TryFrom<RawListen> for Listen {
        type Error = String;
        fn try_from(raw: RawListen) -> Result<Listen, String> {
            if raw.host.is_empty() {
                return Err("the host must not be empty".to_string());
            }
            Ok(Listen { host: raw.host, port: raw.port })
        }
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct S {
        listen: Listen,
        other: u8,
    }
    check_decode::<S>(
        "listen: {host: h, port: 1}\nother: 2\n",
        r#"S { listen: Listen { host: "h", port: 1 }, other: 2 }"#,
    );
    check_decode::<S>(
        "listen: {host: '', port: 1}\nother: x\n",
        "ERR c.yaml:1:9: invalid value for 'listen': the host must not be empty\n\
         c.yaml:2:8: expected a number for 'other', found \"x\" (a whole number from 0 to 255)",
    );
    // The stand-in for the missing host fails validation; that is not a second error.
    check_decode::<S>(
        "listen: {port: 1}\nother: x\n",
        "ERR c.yaml:1:9: missing required key 'host' in listen\n\
         c.yaml:2:8: expected a number for 'other', found \"x\" (a whole number from 0 to 255)",
    );
}

#[test]
fn option_fields() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct S {
        a: Option<u8>,
        b: Option<Vec<u8>>,
        c: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        x: u8,
    }
    check_decode::<S>("a: 1\nb: [2]\nc: {x: 3}\n", "S { a: Some(1), b: Some([2]), c: Some(Inner { x: 3 }) }");
    check_decode::<S>("a:\nb: ~\nc: null\n", "S { a: None, b: None, c: None }");
    check_decode::<S>("{}", "S { a: None, b: None, c: None }");
    check_decode::<S>(
        "c: {y: 1}\n",
        "ERR c.yaml:1:4: missing required key 'x' in c\nc.yaml:1:5: unknown key 'y' in c (expected one of: x)",
    );
}

#[test]
fn located_values() {
    #[derive(Debug, Deserialize)]
    struct S {
        name: Located<String>,
        port: Located<u16>,
        list: Located<Vec<Located<String>>>,
    }
    let node = must_parse("c.yaml", "name: alpha\nport: 8080\nlist:\n  - a\n  - b\n");
    let (value, errors) = decode::<S>(&node);
    assert_eq!(errors, vec![]);
    let value = value.expect("valid");
    assert_eq!(value.name, Located::new("alpha".to_string(), Location::new("c.yaml", 1, 7)));
    assert_eq!(*value.port, 8080);
    assert_eq!(value.port.location.to_string(), "c.yaml:2:7");
    assert_eq!(value.list.location.to_string(), "c.yaml:4:3");
    assert_eq!(value.list[1].location.to_string(), "c.yaml:5:5");
    // Errors inside a located value are reported as usual.
    check_decode::<S>(
        "name: alpha\nport: http\nlist: []\n",
        "ERR c.yaml:2:7: expected a number for 'port', found \"http\" (a whole number from 0 to 65535)",
    );

    // Other formats give the value with an unknown location.
    let from_json: S =
        serde_json::from_value(json!({"name": "a", "port": 1, "list": ["x"]})).expect("decodes from JSON");
    assert_eq!(from_json.name.value, "a");
    assert!(!from_json.name.location.is_known());
    assert_eq!(from_json.name.location.to_string(), "<unknown location>");
    let from_text: Located<u16> = serde_json::from_str("7").expect("decodes from JSON text");
    assert_eq!(from_text.value, 7);
    assert_eq!(serde_json::to_string(&from_text).expect("serializes"), "7");
}

#[test]
fn raw_nodes_for_a_second_pass() {
    #[derive(Debug, Deserialize)]
    struct Top {
        connectors: BTreeMap<String, Node>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Pulse {
        r#type: String,
        delay: String,
        #[serde(default)]
        rand: u32,
    }
    let node =
        must_parse("c.yaml", "connectors:\n  pulse1:\n    type: pulse\n    delya: 5s\n    rand: x\n  other: [1]\n");
    let (top, errors) = decode::<Top>(&node);
    assert_eq!(errors, vec![]);
    let top = top.expect("valid");
    let pulse = &top.connectors["pulse1"];
    assert_eq!(pulse, node.get("connectors.pulse1").expect("present"));
    let (_, errors) = decode_at::<Pulse>(pulse, "connectors.pulse1");
    assert_eq!(
        render_errors(&errors),
        "ERR c.yaml:3:5: missing required key 'delay' in connectors.pulse1\n\
         c.yaml:4:5: unknown key 'delya' in connectors.pulse1 (expected one of: type, delay, rand); did you mean 'delay'?\n\
         c.yaml:5:11: expected a number for 'connectors.pulse1.rand', found \"x\" (a whole number from 0 to 4294967295)"
    );
    assert_eq!(top.connectors["other"].to_json(), json!([1]));

    // From JSON a node is built with unknown locations.
    let from_json: Node = serde_json::from_value(json!({"a": [1, "x", true, null, 1.0]})).expect("node");
    assert_eq!(from_json.to_json(), json!({"a": [1, "x", true, null, 1.0]}));
    assert!(!from_json.location.is_known());
}

#[test]
fn decodes_into_json_values_with_core_schema_typing() {
    check_decode::<serde_json::Value>(
        "a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: [x, 0o10]\ng: {h: 'no'}\n",
        r#"Object {"a": Number(1), "b": String("1"), "c": Bool(true), "d": Null, "e": Number(1.5), "f": Array [String("x"), Number(8)], "g": Object {"h": String("no")}}"#,
    );
}

#[test]
fn unknown_keys_in_structs_without_fields() {
    #[derive(Debug, Deserialize)]
    struct Empty {}
    check_decode::<Empty>("{}", "Empty");
    check_decode::<Empty>("x: 1\n", "ERR c.yaml:1:1: unknown key 'x' at the top level (it takes no keys)");
}

// ---------------------------------------------------------------------------------------
// Robustness

/// YAML-flavoured noise: the characters that drive the parser's states.
fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(": ".to_string()),
            Just("\n".to_string()),
            Just("  ".to_string()),
            Just("- ".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just(", ".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("<<: ".to_string()),
            Just("? ".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("|".to_string()),
            Just(">".to_string()),
            Just("!!str ".to_string()),
            Just("---\n".to_string()),
            Just("#".to_string()),
            Just("${PORT}".to_string()),
            Just("${X:-".to_string()),
            Just("$$".to_string()),
            Just("\t".to_string()),
            Just("%YAML 1.2\n".to_string()),
            "[a-z0-9]{1,4}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Anything {
    #[serde(default)]
    a: Option<Vec<Located<String>>>,
    #[serde(default)]
    b: BTreeMap<String, Node>,
    #[serde(default)]
    c: Option<Backend>,
    #[serde(default)]
    d: Option<Rule>,
}

proptest! {
    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = parse_str("fuzz.yaml", &text, &test_env);
    }

    #[test]
    fn parse_and_decode_never_panic_on_yamlish_input(text in yamlish()) {
        if let Ok(node) = parse_str("fuzz.yaml", &text, &test_env) {
            let _ = node.to_json();
            let (value, errors) = decode::<Anything>(&node);
            prop_assert_eq!(value.is_some(), errors.is_empty());
            let (_, _) = decode::<serde_json::Value>(&node);
            let mut copy = node.clone();
            let _ = merge(&mut copy, node);
        }
    }

    #[test]
    fn json_values_survive_the_round_trip(value in json_value()) {
        // Any JSON value written as YAML flow text parses back to the same value.
        let text = format!("v: {}\n", serde_json::to_string(&value).expect("serializes"));
        let node = parse_str("j.yaml", &text, &no_env).expect("JSON is YAML");
        prop_assert_eq!(node.get("v").map(Node::to_json), Some(value));
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        // `$` is excluded: `$$` in YAML text means a literal `$`.
        "[ -#%-~]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// SPEC §3: wherever a key is a boolean, wubot's `1`/`0` and `yes`/`no` are accepted
/// besides `true`/`false`; elsewhere `1` stays a number and `yes` a string.
#[test]
fn booleans_take_wubots_spellings() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Flags {
        a: bool,
        b: bool,
        c: bool,
        d: bool,
        e: Option<bool>,
        n: u8,
        s: String,
    }
    check_decode::<Flags>(
        "a: 1\nb: 0\nc: yes\nd: no\ne: true\nn: 1\ns: yes\n",
        r#"Flags { a: true, b: false, c: true, d: false, e: Some(true), n: 1, s: "yes" }"#,
    );
    check_decode::<Flags>(
        "a: '1'\nb: NO\nc: Yes\nd: 'false'\nn: 0\ns: no\n",
        r#"Flags { a: true, b: false, c: true, d: false, e: None, n: 0, s: "no" }"#,
    );
}
