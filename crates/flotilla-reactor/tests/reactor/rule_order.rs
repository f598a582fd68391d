//! wubot's rule order: children first, then the plugin; `last_rule` stops later rules
//! at every level but not the plugins of rules already entered.

use flotilla_reactor::serde_json::{Value, json};
use flotilla_reactor::{Effect, RuleTree};

use super::{Files, effects, message, tree, tree_with};

/// A rule whose plugin appends `mark` to the message's `trail`.
fn mark(name: &str, mark: &str) -> Value {
    json!({"name": name, "plugin": "Template", "config": {"template": format!("{{$trail}}{mark}"), "target_field": "trail"}})
}

fn with(mut rule: Value, key: &str, value: Value) -> Value {
    rule[key] = value;
    rule
}

/// Runs `{"trail": ""}` through the tree: the trail and the rules that fired.
async fn trail(tree: &RuleTree, start: Value) -> (String, Vec<String>, Value) {
    let effects = effects();
    let outcome = tree.run(message(start), &effects).await;
    let message = outcome.message.expect("not dropped");
    let trail = message.get_str("trail").unwrap_or("").to_string();
    let fired: Vec<String> = outcome.fired.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        message.get("wubot_rulelog").cloned().unwrap_or(json!([])),
        json!(fired),
        "wubot_rulelog matches the fired rules"
    );
    (trail, fired, message.get("last_rule").cloned().unwrap_or(Value::Null))
}

#[tokio::test]
async fn rule_order_table() {
    let start = || json!({"trail": ""});
    let cases: Vec<(&str, Value, Value, &str, Vec<&str>)> = vec![
        ("siblings run in order", json!([mark("a", "a"), mark("b", "b")]), start(), "ab", vec!["alpha:a", "alpha:b"]),
        (
            "children run before the parent's plugin",
            json!([with(mark("p", "P"), "rules", json!([mark("c1", "1"), mark("c2", "2")])), mark("s", "S")]),
            start(),
            "12PS",
            vec!["alpha:p", "alpha:c1", "alpha:c2", "alpha:s"],
        ),
        (
            "a false condition skips the rule, its children and its plugin",
            json!([
                with(with(mark("p", "P"), "condition", json!("x is true")), "rules", json!([mark("c", "c")])),
                mark("s", "S")
            ]),
            start(),
            "S",
            vec!["alpha:s"],
        ),
        (
            "children with false conditions are skipped alone",
            json!([with(
                mark("p", "P"),
                "rules",
                json!([with(mark("c1", "1"), "condition", json!("FALSE")), mark("c2", "2")])
            )]),
            start(),
            "2P",
            vec!["alpha:p", "alpha:c2"],
        ),
        (
            "last_rule in a child stops its later siblings and later rules, not the parent's plugin",
            json!([
                with(
                    mark("p", "P"),
                    "rules",
                    json!([with(mark("c1", "1"), "last_rule", json!(true)), mark("c2", "2")])
                ),
                mark("s", "S"),
            ]),
            start(),
            "1P",
            vec!["alpha:p", "alpha:c1"],
        ),
        (
            "last_rule deep down: every rule already entered still runs its plugin",
            json!([
                with(
                    mark("g", "G"),
                    "rules",
                    json!([
                        with(
                            mark("p", "P"),
                            "rules",
                            json!([with(mark("c", "c"), "last_rule", json!(true)), mark("c2", "x")])
                        ),
                        mark("p2", "y"),
                    ])
                ),
                mark("s", "z"),
            ]),
            start(),
            "cPG",
            vec!["alpha:g", "alpha:p", "alpha:c"],
        ),
        (
            "last_rule on a rule without a plugin",
            json!([{"name": "stop", "last_rule": true}, mark("s", "S")]),
            start(),
            "",
            vec!["alpha:stop"],
        ),
        (
            "last_rule on a parent applies after its children",
            json!([
                with(with(mark("p", "P"), "last_rule", json!(true)), "rules", json!([mark("c", "c")])),
                mark("s", "S")
            ]),
            start(),
            "cP",
            vec!["alpha:p", "alpha:c"],
        ),
        (
            "a false last_rule changes nothing",
            json!([with(mark("a", "a"), "last_rule", json!(false)), mark("b", "b")]),
            start(),
            "ab",
            vec!["alpha:a", "alpha:b"],
        ),
        (
            "a message that arrives with last_rule set fires nothing",
            json!([mark("a", "a")]),
            json!({"trail": "", "last_rule": 1}),
            "",
            vec![],
        ),
        (
            "conditions see what earlier plugins did",
            json!([
                {"name": "set", "plugin": "SetField", "config": {"field": "x", "value": "yes"}},
                with(mark("seen", "!"), "condition", json!("x equals yes")),
            ]),
            start(),
            "!",
            vec!["alpha:set", "alpha:seen"],
        ),
        (
            "rules without a condition always fire, even with nothing to do",
            json!([{"name": "empty"}, mark("a", "a")]),
            start(),
            "a",
            vec!["alpha:empty", "alpha:a"],
        ),
    ];
    for (what, rules, start, want_trail, want_fired) in cases {
        let tree = tree(rules);
        let (got_trail, got_fired, _) = trail(&tree, start).await;
        assert_eq!(got_trail, want_trail, "{what}");
        assert_eq!(got_fired, want_fired, "{what}");
    }
}

#[tokio::test]
async fn last_rule_marks_the_message() {
    let tree = tree(json!([{"name": "stop", "last_rule": true}]));
    let (_, _, last_rule) = trail(&tree, json!({})).await;
    assert_eq!(last_rule, json!(1));
}

#[tokio::test]
async fn rulelog_appends_to_the_trail_from_other_hosts() {
    let tree = tree(json!([{"name": "here"}]));
    let outcome = tree.run(message(json!({"wubot_rulelog": ["beta:there"]})), &effects()).await;
    assert_eq!(outcome.message.unwrap().get("wubot_rulelog"), Some(&json!(["beta:there", "alpha:here"])));
}

#[tokio::test]
async fn rules_file_children_run_after_inline_children() {
    let mut files = Files::default();
    files.rules.insert(
        "/etc/flotilla/more.yaml".into(),
        json!([mark("f1", "f"), {"name": "f2", "rulesfile": "sub/deeper.yaml"}]),
    );
    files.rules.insert("/etc/flotilla/sub/deeper.yaml".into(), json!([mark("d", "d")]));
    let tree = tree_with(
        json!([
            with(with(mark("p", "P"), "rules", json!([mark("c", "c")])), "rulesfile", json!("more.yaml")),
            mark("s", "S")
        ]),
        &files,
    );
    assert_eq!(tree.len(), 6);
    let (trail, fired, _) = trail(&tree, json!({"trail": ""})).await;
    assert_eq!(trail, "cfdPS");
    assert_eq!(fired, ["alpha:p", "alpha:c", "alpha:f1", "alpha:f2", "alpha:d", "alpha:s"]);
}

#[tokio::test]
async fn a_dropped_message_goes_no_further() {
    let tree = tree(json!([
        {"name": "p", "plugin": "MessageQueue", "config": {"queue": "after"}, "rules": [
            {"name": "drop", "plugin": "Drop"},
            {"name": "never", "plugin": "MessageQueue", "config": {"queue": "never"}},
        ]},
        {"name": "s", "plugin": "MessageQueue", "config": {"queue": "never"}},
    ]));
    let effects = effects();
    let outcome = tree.run(message(json!({"subject": "x"})), &effects).await;
    assert!(outcome.message.is_none());
    assert_eq!(outcome.dropped_by, Some("alpha:drop"));
    assert_eq!(outcome.fired, ["alpha:p", "alpha:drop"]);
    assert_eq!(effects.effects(), []);
}

#[tokio::test]
async fn plugin_errors_go_to_errmsg_and_the_run_goes_on() {
    let tree = tree(json!([
        {"name": "first", "plugin": "CopyField", "config": {"source_field": "nope", "target_field": "t"}},
        {"name": "second", "plugin": "Template", "config": {"template": "{$missing}", "target_field": "t"}},
        {"name": "third", "plugin": "SetField", "config": {"field": "done", "value": true}},
    ]));
    let outcome = tree.run(message(json!({})), &effects()).await;
    let message = outcome.message.unwrap();
    assert_eq!(
        message.get_str("errmsg"),
        Some(
            "CopyField in rule 'first': the message has no field 'nope'; \
             Template in rule 'second': {$missing} names a field the message does not have"
        )
    );
    assert_eq!(message.get("done"), Some(&json!(true)));
    assert_eq!(message.get("t"), None);
    assert_eq!(outcome.failures.len(), 2);
    assert_eq!(outcome.failures[1].rule, "alpha:second");
    assert_eq!(outcome.failures[1].plugin, "Template");
}

#[tokio::test]
async fn tracing_shows_the_message_after_each_plugin() {
    let tree = tree(json!([
        {"name": "p", "plugin": "SetField", "config": {"field": "b", "value": 2}, "rules": [
            {"name": "c", "plugin": "SetField", "config": {"field": "a", "value": 1}},
        ]},
        {"name": "fail", "plugin": "DeleteField", "config": {"field": "a"}},
        {"name": "bye", "plugin": "Drop"},
    ]));
    let effects = effects();
    let untraced = tree.run(message(json!({})), &effects).await;
    assert!(untraced.trace.is_empty());
    let traced = tree.run_traced(message(json!({})), &effects).await;
    let steps: Vec<(&str, &str, Option<Value>)> =
        traced.trace.iter().map(|s| (s.rule, s.plugin, s.message.as_ref().map(|m| m.clone().into_value()))).collect();
    assert_eq!(
        steps,
        vec![
            ("alpha:c", "SetField", Some(json!({"wubot_rulelog": ["alpha:p", "alpha:c"], "a": 1}))),
            ("alpha:p", "SetField", Some(json!({"wubot_rulelog": ["alpha:p", "alpha:c"], "a": 1, "b": 2}))),
            ("alpha:fail", "DeleteField", Some(json!({"wubot_rulelog": ["alpha:p", "alpha:c", "alpha:fail"], "b": 2}))),
            ("alpha:bye", "Drop", None),
        ]
    );
}

#[tokio::test]
async fn effects_see_the_message_as_it_is_at_that_point() {
    let tree = tree(json!([
        {"name": "a", "plugin": "SetField", "config": {"field": "n", "value": 1}},
        {"name": "q", "plugin": "MessageQueue", "config": {"queue": "out"}},
        {"name": "b", "plugin": "SetField", "config": {"field": "n", "value": 2}},
    ]));
    let effects = effects();
    tree.run(message(json!({})), &effects).await;
    let [Effect::Enqueue { queue, message }] = &effects.effects()[..] else { panic!("{:?}", effects.effects()) };
    assert_eq!(queue, "out");
    assert_eq!(message.get("n"), Some(&json!(1)));
    assert_eq!(message.get("wubot_rulelog"), Some(&json!(["alpha:a", "alpha:q"])));
}

#[test]
fn the_tree_can_be_shared_between_tasks() {
    fn assert_shareable<T: Send + Sync>() {}
    assert_shareable::<RuleTree>();
}

#[test]
fn the_run_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let tree = tree(json!([{"name": "a"}]));
    let effects = effects();
    let future = tree.run(message(json!({})), &effects);
    assert_send(&future);
}

#[tokio::test]
async fn an_empty_tree_passes_messages_unchanged() {
    let tree = RuleTree::empty();
    assert!(tree.is_empty());
    let outcome = tree.run(message(json!({"a": 1})), &effects()).await;
    assert_eq!(outcome.message.unwrap().into_value(), json!({"a": 1}));
    assert!(outcome.fired.is_empty());
}

#[tokio::test]
async fn long_trails_are_kept_whole() {
    let names: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    let rules: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    let tree = tree(json!(rules));
    let outcome = tree.run(message(json!({})), &effects()).await;
    let want: Vec<String> = names.iter().map(|n| format!("alpha:{n}")).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(outcome.fired, want[..]);
    assert_eq!(outcome.message.unwrap().get("wubot_rulelog"), Some(&json!(want)));
}
