//! `compile` reports every problem, each with its path.

use std::path::PathBuf;

use flotilla_reactor::serde_json::{Value, json};
use flotilla_reactor::{Reference, ReferenceKind};

use super::{Files, config_errors, tree, try_tree_with};

/// An expected error: its file, its path, and text its message contains.
type Expected<'a> = (Option<&'a str>, &'a str, &'a str);

#[track_caller]
fn check(rules: Value, files: &Files, expect: &[Expected<'_>]) {
    let errors = match try_tree_with(rules.clone(), files) {
        Ok(_) => panic!("{rules} compiled, expected errors {expect:?}"),
        Err(errors) => errors,
    };
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), expect.len(), "{rules}: got {shown:#?}");
    for (error, (file, path, contains)) in errors.iter().zip(expect) {
        assert_eq!(error.file, file.map(PathBuf::from), "{error}");
        assert_eq!(error.path, *path, "{error}");
        assert!(error.message.contains(contains), "'{error}' lacks '{contains}'");
    }
}

#[test]
fn every_error_is_reported_with_its_path() {
    let none = Files::default();
    let cases: Vec<(Value, Vec<Expected<'_>>)> = vec![
        (json!([{"condition": "TRUE"}]), vec![(None, "rules[0].name", "every rule needs a name")]),
        (json!([{"name": "  "}]), vec![(None, "rules[0].name", "every rule needs a name")]),
        (
            json!([{"name": "a"}, {"name": "b", "condition": "foo is true and bar is true"}]),
            vec![(None, "rules[1].condition", "must be upper case) at character 0")],
        ),
        (json!([{"name": "a", "condition": "x matches (a"}]), vec![(None, "rules[0].condition", "invalid regex '(a'")]),
        (json!([{"name": "a", "condition": ""}]), vec![(None, "rules[0].condition", "found nothing")]),
        (
            json!([{"name": "a", "plugin": "setfield"}]),
            vec![(
                None,
                "rules[0].plugin",
                "unknown plugin 'setfield' (did you mean 'SetField'?); known plugins: CaptureData, Censor, Command,",
            )],
        ),
        (
            json!([{"name": "a", "plugin": "Growl"}]),
            vec![(None, "rules[0].plugin", "unknown plugin 'Growl'; known plugins:")],
        ),
        (
            json!([{"name": "a", "config": {"field": "x"}}]),
            vec![(None, "rules[0].config", "'config' is given but the rule has no 'plugin'")],
        ),
        (
            json!([{"name": "a", "plugin": "SetField", "config": {"fild": "x", "value": 1}}]),
            vec![
                (None, "rules[0].config", "SetField needs 'field' and 'value', or 'set'"),
                (
                    None,
                    "rules[0].config.fild",
                    "unknown key 'fild' for SetField (expected one of: field, value, set, no_override)",
                ),
            ],
        ),
        (
            json!([{"name": "a", "plugin": "SetField", "config": {"field": "x", "value": 1, "no_override": "maybe"}}]),
            vec![(
                None,
                "rules[0].config.no_override",
                "'no_override' must be true or false (or 1/0, yes/no), not a string",
            )],
        ),
        (
            json!([{"name": "a", "plugin": "SetField", "config": ["field", "x"]}]),
            vec![(None, "rules[0].config", "the config of SetField must be a map of keys, not a list")],
        ),
        (
            json!([{"name": "a", "plugin": "Drop", "config": {"why": "because"}}]),
            vec![(None, "rules[0].config.why", "unknown key 'why': Drop takes no config")],
        ),
        (
            json!([{"name": "a", "plugin": "Command", "config": {"command": "true", "fork": "audio"}}]),
            vec![(
                None,
                "rules[0].config.fork",
                "'fork' is not supported by Command: wubot's background command queues",
            )],
        ),
        (
            json!([{"name": "a", "plugin": "Template", "config": {"template": "{$ x}", "target_field": "t"}}]),
            vec![(None, "rules[0].config.template", "invalid placeholder '{$ x}' at character 0")],
        ),
        (
            json!([
                {"name": "ok"},
                {"name": "b", "plugin": "MessageQueue"},
                {"name": "p", "rules": [{"name": "c", "rules": [{"condition": "nope"}]}]},
            ]),
            vec![
                (None, "rules[1].config", "MessageQueue needs 'queue' in its config"),
                (None, "rules[2].rules[0].rules[0].name", "every rule needs a name"),
                (None, "rules[2].rules[0].rules[0].condition", "cannot understand 'nope'"),
            ],
        ),
        (
            json!([{"name": "a", "rulesfile": "missing.yaml"}]),
            vec![(None, "rules[0].rulesfile", "cannot load rules file '/etc/flotilla/missing.yaml': no such file")],
        ),
    ];
    for (rules, expect) in cases {
        check(rules, &none, &expect);
    }
}

#[test]
fn errors_inside_rules_files_name_the_file() {
    let mut files = Files::default();
    files.rules.insert(
        "/etc/flotilla/a.yaml".into(),
        json!([{"name": "x", "condition": "bad"}, {"name": "y", "rulesfile": "b.yaml"}]),
    );
    files.rules.insert(
        "/etc/flotilla/b.yaml".into(),
        json!([{"name": "z", "rulesfile": "a.yaml"}, {"name": "w", "plugin": "Nope"}]),
    );
    check(
        json!([{"name": "top", "rulesfile": "a.yaml"}]),
        &files,
        &[
            (Some("/etc/flotilla/a.yaml"), "rules[0].condition", "cannot understand 'bad'"),
            (Some("/etc/flotilla/b.yaml"), "rules[0].rulesfile", "rules file '/etc/flotilla/a.yaml' includes itself"),
            (Some("/etc/flotilla/b.yaml"), "rules[1].plugin", "unknown plugin 'Nope'"),
        ],
    );
    let error = try_tree_with(json!([{"name": "top", "rulesfile": "a.yaml"}]), &files).unwrap_err().remove(0);
    assert_eq!(
        error.to_string(),
        "/etc/flotilla/a.yaml: rules[0].condition: cannot understand 'bad': expected 'FIELD equals VALUE', 'FIELD matches REGEX', 'FIELD imatches REGEX', 'contains FIELD', 'FIELD is true', 'FIELD is false', 'A < B' (or <=, >, >=), 'NOT C', 'A AND B', 'A OR B', TRUE, FALSE or '( C )' at character 0"
    );
}

#[test]
fn every_plugin_rejects_unknown_keys() {
    let valid: Vec<(&str, Value)> = vec![
        ("SetField", json!({"field": "a", "value": 1})),
        ("DeleteField", json!({"field": "a"})),
        ("CopyField", json!({"source_field": "a", "target_field": "b"})),
        ("Template", json!({"template": "x", "target_field": "b"})),
        ("CaptureData", json!({"field": "a", "regexp": "(x)"})),
        ("TransformField", json!({"source_field": "a", "regexp_search": "x"})),
        ("HashLookup", json!({"source_field": "a", "target_field": "b", "lookup": {}})),
        ("Split", json!({"source_field": "a", "target_fields": ["b"]})),
        ("HTMLStrip", json!({"field": "a"})),
        ("MessageQueue", json!({"queue": "q"})),
        ("SQL", json!({"table": "t"})),
        ("SQLite", json!({"tablename": "t"})),
        ("Send", json!({"connector": "irc"})),
        ("Console", json!({})),
        ("State", json!({"field": "a"})),
        ("Status", json!({})),
        ("Command", json!({"command": "true"})),
        ("Drop", json!({})),
        ("Dedupe", json!({"window": "10m"})),
        ("Stale", json!({"max_age": 30})),
        ("Censor", json!({"trigger": ["kontrolle"], "blocklist": ["nazi"]})),
    ];
    assert_eq!(valid.len(), flotilla_reactor::PLUGIN_NAMES.len(), "every plugin is covered");
    for (plugin, mut config) in valid {
        assert_eq!(config_errors(plugin, config.clone()), Vec::<String>::new(), "{plugin} with {config}");
        config["bogus"] = json!(1);
        let errors = config_errors(plugin, config);
        assert_eq!(errors.len(), 1, "{plugin}: {errors:?}");
        assert!(errors[0].starts_with("rules[0].config.bogus: unknown key 'bogus'"), "{plugin}: {errors:?}");
    }
}

#[test]
fn references_name_queues_connectors_and_tables() {
    let tree = tree(json!([
        {"name": "fwd", "plugin": "MessageQueue", "config": {"directory": "/home/wu/wubot/forward/"}},
        {"name": "p", "rules": [{"name": "post", "plugin": "Send", "config": {"connector": "irc-libera"}}]},
        {"name": "log", "plugin": "SQLite", "config": {"tablename": "notifications", "schema": {"subject": "VARCHAR(256)"}}},
    ]));
    assert_eq!(
        tree.references(),
        [
            Reference {
                kind: ReferenceKind::Queue,
                name: "forward".into(),
                file: None,
                path: "rules[0].config.directory".into()
            },
            Reference {
                kind: ReferenceKind::Connector,
                name: "irc-libera".into(),
                file: None,
                path: "rules[1].rules[0].config.connector".into()
            },
            Reference {
                kind: ReferenceKind::Table,
                name: "notifications".into(),
                file: None,
                path: "rules[2].config.tablename".into()
            },
        ]
    );
    assert!(tree.uses_plugin("Send"));
    assert!(!tree.uses_plugin("Command"));
}
