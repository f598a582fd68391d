//! One test per plugin: what it does, and how it fails.

use std::time::Duration;

use chrono::FixedOffset;
use flotilla_reactor::serde_json::{Value, json};
use flotilla_reactor::{CommandOutput, ConsoleLine, Effect, EffectError, RecordingEffects};

use super::{Files, NOW, apply, config_errors, effects, message, tree, tree_with};

/// Applies a plugin to each input and compares the whole resulting message.
async fn check(plugin: &str, config: Value, cases: Vec<(Value, Value)>) {
    let effects = effects();
    for (input, expect) in cases {
        let mut got = apply(plugin, config.clone(), input.clone(), &effects).await.into_value();
        got.as_object_mut().unwrap().remove("wubot_rulelog");
        assert_eq!(got, expect, "{plugin} {config} on {input}");
    }
}

#[track_caller]
fn assert_config_error(plugin: &str, config: Value, contains: &str) {
    let errors = config_errors(plugin, config.clone());
    assert!(errors.iter().any(|e| e.contains(contains)), "{plugin} {config}: {errors:?} lacks '{contains}'");
}

#[tokio::test]
async fn set_field() {
    check(
        "SetField",
        json!({"field": "color", "value": "red"}),
        vec![(json!({}), json!({"color": "red"})), (json!({"color": "blue"}), json!({"color": "red"}))],
    )
    .await;
    check(
        "SetField",
        json!({"set": {"a": 1, "b": [true]}, "no_override": 1}),
        vec![
            (json!({}), json!({"a": 1, "b": [true]})),
            (json!({"a": "kept", "b": 0}), json!({"a": "kept", "b": [true]})),
        ],
    )
    .await;
    check("SetField", json!({"field": "n", "value": null}), vec![(json!({"n": 1}), json!({"n": null}))]).await;
    assert_config_error("SetField", json!({"field": "a", "value": 1, "set": {}}), "not both");
    assert_config_error("SetField", json!({"field": "a"}), "needs 'value'");
    assert_config_error("SetField", json!({"set": {"a": 1}, "value": 2}), "'value' goes with 'field'");
}

#[tokio::test]
async fn delete_field() {
    check(
        "DeleteField",
        json!({"field": "b"}),
        vec![(json!({"a": 1, "b": 2}), json!({"a": 1})), (json!({}), json!({}))],
    )
    .await;
    assert_config_error("DeleteField", json!({}), "DeleteField needs 'field'");
    assert_config_error("DeleteField", json!({"field": ""}), "'field' must not be empty");
}

#[tokio::test]
async fn copy_field() {
    check(
        "CopyField",
        json!({"source_field": "a", "target_field": "b"}),
        vec![
            (json!({"a": {"x": 1}}), json!({"a": {"x": 1}, "b": {"x": 1}})),
            (json!({"a": null}), json!({"a": null, "b": null})),
        ],
    )
    .await;
    check(
        "CopyField",
        json!({"source_field_name": "from", "target_field_name": "to"}),
        vec![(json!({"from": "a", "to": "b", "a": 5}), json!({"from": "a", "to": "b", "a": 5, "b": 5}))],
    )
    .await;
    check(
        "CopyField",
        json!({"source_field": "missing", "target_field": "b"}),
        vec![(json!({"b": 1}), json!({"b": 1, "errmsg": "CopyField in rule 'r': the message has no field 'missing'"}))],
    )
    .await;
    check(
        "CopyField",
        json!({"source_field": "a", "target_field_name": "to"}),
        vec![(
            json!({"a": 1}),
            json!({"a": 1, "errmsg": "CopyField in rule 'r': the message has no field 'to' to take a field name from"}),
        )],
    )
    .await;
    assert_config_error(
        "CopyField",
        json!({"source_field": "a", "source_field_name": "b", "target_field": "c"}),
        "not both",
    );
    assert_config_error("CopyField", json!({"source_field": "a"}), "needs 'target_field' or 'target_field_name'");
}

#[tokio::test]
async fn template() {
    check(
        "Template",
        json!({"template": "[{$key}] {$subject}", "target_field": "line"}),
        vec![
            (json!({"key": "RSS-x", "subject": "hi"}), json!({"key": "RSS-x", "subject": "hi", "line": "[RSS-x] hi"})),
            (
                json!({"subject": "hi"}),
                json!({"subject": "hi", "errmsg": "Template in rule 'r': {$key} names a field the message does not have"}),
            ),
        ],
    )
    .await;
    check(
        "Template",
        json!({"source_field": "tpl", "target_field": "out"}),
        vec![
            (json!({"tpl": "n={$n}", "n": 2}), json!({"tpl": "n={$n}", "n": 2, "out": "n=2"})),
            (json!({"tpl": ""}), json!({"tpl": ""})),
            (
                json!({"tpl": "{$ n}"}),
                json!({"tpl": "{$ n}", "errmsg": "Template in rule 'r': invalid placeholder '{$ n}' at character 0: expected {$field} (Perl code in braces is not supported)"}),
            ),
        ],
    )
    .await;
    let mut files = Files::default();
    files.texts.insert("/etc/flotilla/templates/subject.tpl".into(), "from {$username}".into());
    let tree = tree_with(
        json!([{"name": "r", "plugin": "Template", "config": {"template_file": "templates/subject.tpl", "target_field": "s"}}]),
        &files,
    );
    let out = tree.run(message(json!({"username": "wu"})), &effects()).await.message.unwrap();
    assert_eq!(out.get_str("s"), Some("from wu"));
    assert_config_error("Template", json!({"template": "x"}), "Template needs 'target_field'");
    assert_config_error("Template", json!({"template": "x", "source_field": "y", "target_field": "t"}), "only one of");
    assert_config_error(
        "Template",
        json!({"template_file": "none.tpl", "target_field": "t"}),
        "cannot read '/etc/flotilla/none.tpl'",
    );
}

#[tokio::test]
async fn capture_data() {
    check(
        "CaptureData",
        json!({"source_field": "body", "regexp": "load: ([\\d.]+)", "target_field": "load"}),
        vec![
            (json!({"body": "x\nload: 1.25\n"}), json!({"body": "x\nload: 1.25\n", "load": "1.25"})),
            (json!({"body": "nothing"}), json!({"body": "nothing"})),
            (json!({"body": "load: 0"}), json!({"body": "load: 0"})),
            (json!({}), json!({})),
        ],
    )
    .await;
    // `field` is both source and target; `.` matches line breaks (wubot's m|...|s).
    check("CaptureData", json!({"field": "t", "regexp": "a(.b)"}), vec![(json!({"t": "xa\nb"}), json!({"t": "\nb"}))])
        .await;
    check(
        "CaptureData",
        json!({"field": "t", "regexp_field": "re"}),
        vec![
            (json!({"t": "id=42", "re": "id=(\\d+)"}), json!({"t": "42", "re": "id=(\\d+)"})),
            (
                json!({"t": "x", "re": "(x"}),
                json!({"t": "x", "re": "(x", "errmsg": "CaptureData in rule 'r': invalid regex '(x' in field 're': unclosed group"}),
            ),
        ],
    )
    .await;
    assert_config_error("CaptureData", json!({"field": "a", "regexp": "x"}), "has no capture group");
    assert_config_error("CaptureData", json!({"field": "a", "regexp": "(x"}), "invalid regex '(x': unclosed group");
    assert_config_error("CaptureData", json!({"regexp": "(x)"}), "needs 'source_field' or 'field'");
}

#[tokio::test]
async fn transform_field() {
    check(
        "TransformField",
        json!({"source_field": "s", "regexp_search": "(\\w+)@(\\w+)", "regexp_replace": "$2 at \\1", "target_field": "t"}),
        vec![(json!({"s": "a@b, c@d"}), json!({"s": "a@b, c@d", "t": "b at a, d at c"}))],
    )
    .await;
    check(
        "TransformField",
        json!({"source_field": "s", "regexp_search": "\\s+"}),
        vec![
            (json!({"s": "a  b\tc"}), json!({"s": "abc"})),
            (json!({"s": 10}), json!({"s": "10"})),
            (json!({}), json!({"errmsg": "TransformField in rule 'r': the message has no field 's'"})),
        ],
    )
    .await;
    assert_config_error(
        "TransformField",
        json!({"source_field": "s", "regexp_search": "(a)", "regexp_replace": "$2"}),
        "refers to group 2, but the search regex has 1 group(s)",
    );
    assert_config_error("TransformField", json!({"source_field": "s"}), "needs 'regexp_search'");
}

#[tokio::test]
async fn hash_lookup() {
    check(
        "HashLookup",
        json!({"source_field": "code", "target_field": "meaning", "lookup": {"200": "ok", "404": {"missing": true}}}),
        vec![
            (json!({"code": 200}), json!({"code": 200, "meaning": "ok"})),
            (json!({"code": "404"}), json!({"code": "404", "meaning": {"missing": true}})),
            (json!({"code": 500}), json!({"code": 500})),
            (json!({"code": ""}), json!({"code": ""})),
        ],
    )
    .await;
    assert_config_error("HashLookup", json!({"source_field": "a", "target_field": "b"}), "HashLookup needs 'lookup'");
    assert_config_error(
        "HashLookup",
        json!({"source_field": "a", "target_field": "b", "lookup": []}),
        "'lookup' must be a map, not a list",
    );
}

#[tokio::test]
async fn split() {
    check(
        "Split",
        json!({"source_field": "csv", "target_fields": ["a", "b", "c"]}),
        vec![
            (json!({"csv": "1 , 2,3"}), json!({"csv": "1 , 2,3", "a": "1", "b": "2", "c": "3"})),
            (json!({"csv": "w,x,y,z"}), json!({"csv": "w,x,y,z", "a": "x", "b": "y", "c": "z"})),
            (json!({"csv": "y,z,,"}), json!({"csv": "y,z,,", "a": null, "b": "y", "c": "z"})),
            (json!({}), json!({"errmsg": "Split in rule 'r': the message has no field 'csv'"})),
        ],
    )
    .await;
    assert_config_error("Split", json!({"source_field": "a", "target_fields": "b"}), "must be a list of texts");
}

#[tokio::test]
async fn html_strip() {
    check(
        "HTMLStrip",
        json!({"field": "body"}),
        vec![
            (json!({"body": "<p>a&amp;b</p>"}), json!({"body": "<p>a&amp;b</p>", "body_text": "a&b"})),
            (json!({"body": ""}), json!({"body": ""})),
        ],
    )
    .await;
    check(
        "HTMLStrip",
        json!({"field": "b", "newfield": "t"}),
        vec![(json!({"b": "<i>x</i>"}), json!({"b": "<i>x</i>", "t": "x"}))],
    )
    .await;
    assert_config_error("HTMLStrip", json!({}), "HTMLStrip needs 'field'");
}

#[tokio::test]
async fn message_queue() {
    let effects = effects();
    apply("MessageQueue", json!({"queue": "forward"}), json!({"a": 1}), &effects).await;
    apply("MessageQueue", json!({"directory": "/home/wu/wubot/reactor"}), json!({"a": 2}), &effects).await;
    let queued: Vec<(String, Value)> = effects
        .take_effects()
        .into_iter()
        .map(|e| match e {
            Effect::Enqueue { queue, message } => (queue, message.get("a").cloned().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(queued, [("forward".to_string(), json!(1)), ("reactor".to_string(), json!(2))]);

    effects.fail("enqueue", EffectError::Failed("disk full".into()));
    let out = apply("MessageQueue", json!({"queue": "q"}), json!({}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("MessageQueue in rule 'r': cannot append to queue 'q': disk full"));
    assert_config_error("MessageQueue", json!({"queue": "a", "directory": "b"}), "not both");
    assert_config_error("MessageQueue", json!({"directory": "/"}), "does not end in a queue name");
}

#[tokio::test]
async fn sql() {
    let effects = effects();
    apply(
        "SQL",
        json!({"table": "notes", "columns": ["subject", "missing", "n"]}),
        json!({"subject": "s", "n": 1, "x": 2}),
        &effects,
    )
    .await;
    apply("SQLite", json!({"tablename": "all_fields"}), json!({"a": [1]}), &effects).await;
    assert_eq!(
        effects.take_effects(),
        [
            Effect::SqlInsert {
                table: "notes".into(),
                row: json!({"subject": "s", "n": 1}).as_object().unwrap().clone()
            },
            Effect::SqlInsert {
                table: "all_fields".into(),
                row: json!({"a": [1], "wubot_rulelog": ["alpha:r"]}).as_object().unwrap().clone()
            },
        ]
    );
    let out = apply("SQL", json!({"table": "t", "columns": ["nope"]}), json!({"a": 1}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("SQL in rule 'r': the message has none of the columns of table 't'"));
    effects.fail("sql_insert", EffectError::Failed("database is locked".into()));
    let out = apply("SQL", json!({"table": "t"}), json!({"a": 1}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("SQL in rule 'r': cannot insert into table 't': database is locked"));
    assert_config_error("SQL", json!({"table": "drop table; x"}), "is not a table name");
    assert_config_error("SQLite", json!({"file": "/x.sql", "tablename": "t"}), "'file' is not supported by SQLite");
    assert_config_error("SQL", json!({"table": "t", "columns": []}), "the list of columns is empty");
}

#[tokio::test]
async fn send() {
    let effects = effects();
    apply("Send", json!({"connector": "irc-libera"}), json!({"text": "hi"}), &effects).await;
    let [Effect::Send { connector, message }] = &effects.take_effects()[..] else { panic!() };
    assert_eq!(connector, "irc-libera");
    assert_eq!(message.get_str("text"), Some("hi"));
    effects.fail("send", EffectError::Failed("not connected".into()));
    let out = apply("Send", json!({"connector": "x"}), json!({}), &effects).await;
    assert_eq!(
        out.get_str("errmsg"),
        Some("Send in rule 'r': cannot hand the message to connector 'x': not connected")
    );
    assert_config_error("Send", json!({}), "Send needs 'connector'");
}

#[tokio::test]
async fn console() {
    let effects = effects().with_utc_offset(FixedOffset::east_opt(3600).unwrap());
    let cases = vec![
        (
            json!({"key": "RSS-perl", "username": "wu", "title": "Perl news", "subject": "5.40 out", "lastupdate": 1_000_000_000}),
            Some(("2001/09/09 02:46:40> [RSS-perl] wu: Perl news => 5.40 out", "white")),
        ),
        (json!({"subject": "same", "title": "same", "color": "orange"}), Some(("2023/11/14 23:13:20> same", "yellow"))),
        (
            json!({"subject": "s", "subject_text": "plain", "color": "red", "urgent": 1}),
            Some(("2023/11/14 23:13:20> plain", "bold red")),
        ),
        (json!({"subject": "s", "color": "nonsense", "urgent": true}), Some(("2023/11/14 23:13:20> s", "bold white"))),
        (json!({"subject": "s", "quiet": 1}), None),
        (json!({"subject": "s", "quiet_console": true}), None),
        (json!({"body": "no subject"}), None),
    ];
    for (input, expect) in cases {
        apply("Console", json!(null), input.clone(), &effects).await;
        let want: Vec<Effect> =
            expect.map(|(text, color)| Effect::Console(ConsoleLine { text: text.into(), color })).into_iter().collect();
        assert_eq!(effects.take_effects(), want, "{input}");
    }
}

#[tokio::test]
async fn state() {
    let effects = effects();
    let config = json!({"field": "load"});
    let run = |load: Value, lastupdate: u64| {
        let effects = &effects;
        let config = config.clone();
        async move {
            let mut out =
                apply("State", config, json!({"key": "Uptime-h", "load": load, "lastupdate": lastupdate}), effects)
                    .await
                    .into_value();
            out.as_object_mut().unwrap().remove("wubot_rulelog");
            out
        }
    };
    assert_eq!(run(json!(1), NOW).await, json!({"key": "Uptime-h", "load": 1, "lastupdate": NOW, "state_init": 1}));
    assert_eq!(run(json!(1), NOW + 60).await, json!({"key": "Uptime-h", "load": 1, "lastupdate": NOW + 60}));
    assert_eq!(
        run(json!("3"), NOW + 120).await,
        json!({"key": "Uptime-h", "load": "3", "lastupdate": NOW + 120, "state_change": 2,
               "subject": "Uptime-h: load changed: 1 => 3", "state_changed": 1})
    );
    effects.advance(Duration::from_secs(3720));
    assert_eq!(
        run(json!(2.5), NOW + 3720).await["subject"],
        json!("Uptime-h: load changed: 3 => 2.5 (1h)"),
        "the age of the last change is shown"
    );
    assert_eq!(
        effects.state("State", "Uptime-h:load"),
        Some(json!({"value": 2.5, "lastupdate": NOW + 3720, "lastchange": NOW + 3720}))
    );
    let out = run(json!("high"), NOW).await;
    assert_eq!(out["errmsg"], json!("State in rule 'r': field 'load' is not a number: 'high'"));
    let out = apply("State", json!({"field": "x"}), json!({"x": 1}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("State in rule 'r': the message has no 'key' to remember its state under"));
}

#[tokio::test]
async fn state_increase_follows_drops() {
    let effects = effects();
    let mut subjects = Vec::new();
    for value in [10, 12, 5, 9, 10] {
        let out = apply("State", json!({"field": "n", "increase": 5}), json!({"key": "k", "n": value}), &effects).await;
        subjects.push(out.get_str("subject").map(str::to_string));
    }
    // 12 is only +2; 5 lowers the baseline; 9 is +4; 10 is +5 from 5.
    assert_eq!(subjects, [None, None, None, None, Some("k: n increased: 5 => 10".into())]);
    let mut subjects = Vec::new();
    for value in [10, 12, 10, 7] {
        let out = apply("State", json!({"field": "n", "decrease": 3}), json!({"key": "d", "n": value}), &effects).await;
        subjects.push(out.get_str("subject").map(str::to_string));
    }
    assert_eq!(subjects, [None, None, None, Some("d: n decreased: 12 => 7".into())]);
    assert_config_error("State", json!({"field": "n", "increase": 1, "decrease": 1}), "only one of");
    assert_config_error("State", json!({"field": "n", "increase": 0}), "'increase' must be more than 0");
    assert_config_error("State", json!({"field": "n", "notify_interval": "1h"}), "not supported by State");
}

#[tokio::test]
async fn status() {
    let effects = effects();
    let mut seen = Vec::new();
    for i in 0..7u64 {
        effects.set_now(super::now() + Duration::from_secs(60 * i));
        let out = apply(
            "Status",
            json!(null),
            json!({"key": "WebFetch-x", "status": "CRITICAL", "subject": "down", "lastupdate": NOW + 60 * i}),
            &effects,
        )
        .await;
        assert_eq!(out.get_str("color"), Some("red"));
        assert_eq!(out.get("status_since"), Some(&json!(NOW)));
        seen.push((
            out.get("status_count").cloned().unwrap(),
            out.get_str("subject").unwrap().to_string(),
            out.get("quiet").is_some(),
        ));
    }
    assert_eq!(
        seen,
        [
            (json!(1), "down".to_string(), false),
            (json!(2), "down [2x CRITICAL (1m)]".to_string(), false),
            (json!(3), "down [3x CRITICAL (2m)]".to_string(), false),
            (json!(4), "down".to_string(), true),
            (json!(5), "down [5x CRITICAL (4m)]".to_string(), false),
            (json!(6), "down".to_string(), true),
            (json!(7), "down".to_string(), true),
        ]
    );
    let out = apply("Status", json!(null), json!({"key": "WebFetch-x", "subject": "up"}), &effects).await.into_value();
    assert_eq!(out["status"], json!("OK"));
    assert_eq!(out["status_previous"], json!("CRITICAL"));
    assert_eq!(out["status_count"], json!(1));
    assert_eq!(out.get("color"), None);
    assert_eq!(
        effects.state("Status", "WebFetch-x"),
        Some(json!({"status": "OK", "status_count": 1, "status_since": NOW + 360}))
    );

    // Already counted elsewhere, or not a status: left alone.
    let counted = json!({"key": "k", "status": "WARNING", "status_count": 3});
    check(
        "Status",
        json!(null),
        vec![
            (counted.clone(), counted),
            (json!({"key": "k", "status": "weird"}), json!({"key": "k", "status": "weird"})),
        ],
    )
    .await;
    let out = apply("Status", json!(null), json!({"status": "OK"}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("Status in rule 'r': the message has no 'key' to remember its state under"));
    effects.fail("load_state", EffectError::Failed("store down".into()));
    let out = apply("Status", json!(null), json!({"key": "k"}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("Status in rule 'r': cannot read the remembered state of 'k': store down"));
}

#[tokio::test]
async fn command() {
    let effects = effects();
    effects.push_command_result(Ok(CommandOutput {
        stdout: "out\n".into(),
        stderr: "err\n".into(),
        exit_code: Some(2),
        signal: None,
        truncated: false,
    }));
    let out = apply(
        "Command",
        json!({"command": "say '{$subject}'", "timeout": "5s", "output_field": "said"}),
        json!({"subject": "hi"}),
        &effects,
    )
    .await;
    assert_eq!(out.get_str("said"), Some("out\nerr"));
    assert_eq!(out.get("command_status"), Some(&json!(2)));
    assert_eq!(out.get("command_signal"), Some(&json!(0)));
    assert_eq!(
        effects.take_effects(),
        [Effect::Command { command: "say 'hi'".into(), timeout: Duration::from_secs(5) }]
    );

    effects.push_command_result(Err(EffectError::TimedOut(Duration::from_secs(30))));
    let out = apply("Command", json!({"command_array": ["sleep", "{$n}"]}), json!({"n": 60}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("Command in rule 'r': command 'sleep 60' failed: timed out after 30s"));
    assert_eq!(out.get("command_output"), None);

    let out = apply("Command", json!({"command_field": "cmd"}), json!({"cmd": "echo {$x}", "x": 1}), &effects).await;
    assert_eq!(out.get_str("command_output"), Some(""));
    assert_eq!(
        effects.take_effects()[1],
        Effect::Command { command: "echo 1".into(), timeout: Duration::from_secs(30) }
    );
    let out = apply("Command", json!({"command": "echo {$nope}"}), json!({}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("Command in rule 'r': {$nope} names a field the message does not have"));
    let out = apply("Command", json!({"command_field": "cmd"}), json!({}), &effects).await;
    assert_eq!(out.get_str("errmsg"), Some("Command in rule 'r': field 'cmd' holds no command"));
    assert_eq!(effects.effects(), [], "no command ran for a message that could not build one");
    assert_config_error("Command", json!({"command": "x", "command_field": "y"}), "only one of");
    assert_config_error("Command", json!({"command": "x", "timeout": "soon"}), "invalid duration 'soon'");
    assert_config_error("Command", json!({"command": "  "}), "the command is empty");

    // Field text is quoted for the shell; `{$!field}` is the raw form.
    let out = apply(
        "Command",
        json!({"command": "notify {$n} {$s} '{$s}' \"{$s}\" {$!s}"}),
        json!({"n": 3, "s": "it's $HOME"}),
        &effects,
    )
    .await;
    assert_eq!(out.get("errmsg"), None);
    assert_eq!(
        effects.take_effects().pop().unwrap(),
        Effect::Command {
            command: r#"notify 3 'it'\''s $HOME' 'it'\''s $HOME' "it's \$HOME" it's $HOME"#.into(),
            timeout: Duration::from_secs(30)
        }
    );
    assert_config_error(
        "Command",
        json!({"command": "echo `cat {$file}`"}),
        "the placeholder '{$file}`' at character 10 cannot be quoted for the shell: it is inside backquotes \
         (write $( … ) instead); move it, or write {$!file} to put the text in unquoted (only for trusted fields)",
    );
    let out =
        apply("Command", json!({"command_field": "cmd"}), json!({"cmd": "echo ${X:-{$x}}", "x": 1}), &effects).await;
    assert_eq!(
        out.get_str("errmsg"),
        Some(
            "Command in rule 'r': the placeholder '{$x}}' at character 10 cannot be quoted for the shell: \
             it is inside '${ … }'; move it, or write {$!x} to put the text in unquoted (only for trusted fields)"
        )
    );
    // The raw form is the Command plugin's alone.
    assert_config_error("Template", json!({"template": "{$!x}", "target_field": "t"}), "invalid placeholder '{$!x}'");
}

/// Issue 11, finding 1: a field's text reaches `sh -c` as one literal word, whatever
/// the quoting around its placeholder; the command really runs here.
#[tokio::test]
async fn command_placeholders_cannot_inject_shell_code() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("FILE");
    let hostile = format!("y; id > {}", file.display());
    let quoted_hostile = format!("it's \"$(id > {0})\" `id > {0}` '; id > {0}; echo '", file.display());
    let cases = [
        ("echo hello {$x}", hostile.clone()),
        ("echo 'hello {$x}'", quoted_hostile.clone()),
        ("echo \"hello {$x}\"", quoted_hostile.clone()),
        ("echo hello{$x} $(echo {$x})", hostile.clone()),
    ];
    for (command, x) in cases {
        let effects = effects();
        effects.push_command_result(Ok(CommandOutput::default()));
        apply("Command", json!({"command": command}), json!({"x": x}), &effects).await;
        let [Effect::Command { command: built, .. }] = &effects.take_effects()[..] else { panic!("{command}") };
        let out = flotilla_reactor::run_shell_command(built, b"", Duration::from_secs(10)).await.unwrap();
        assert!(!file.exists(), "{command} with x = {x:?} ran: {built}");
        assert_eq!(out.exit_code, Some(0), "{command}: {built}: {}", out.stderr);
        let want = if command.contains("$(") { format!("hello{x} {x}\n") } else { format!("hello {x}\n") };
        assert_eq!(out.stdout, want, "{command}: {built}");
    }
}

#[tokio::test]
async fn drop_plugin() {
    let tree = tree(json!([{"name": "bin", "plugin": "Drop"}]));
    let outcome = tree.run(message(json!({"a": 1})), &effects()).await;
    assert!(outcome.message.is_none());
    assert_eq!(outcome.dropped_by, Some("alpha:bin"));
}

#[tokio::test]
async fn dedupe() {
    let tree = tree(json!([{"name": "once", "plugin": "Dedupe", "config": {"field": "event_id", "window": "1h"}}]));
    let effects = effects();
    let mut passed = Vec::new();
    for (event, advance) in [("a", 0), ("a", 10), ("b", 0), ("a", 3589), ("a", 1), ("b", 0)] {
        effects.advance(Duration::from_secs(advance));
        let outcome = tree.run(message(json!({"event_id": event})), &effects).await;
        passed.push(outcome.message.is_some());
    }
    assert_eq!(passed, [true, false, true, false, true, false]);
    let outcome = tree.run(message(json!({})), &effects).await;
    assert_eq!(
        outcome.message.unwrap().get_str("errmsg"),
        Some("Dedupe in rule 'once': the message has no field 'event_id'")
    );
    assert_config_error("Dedupe", json!({"field": "x"}), "Dedupe needs 'window'");
    assert_config_error("Dedupe", json!({"window": 0}), "'window' must be more than 0");
    assert_config_error("Dedupe", json!({"window": 5, "max_entries": 0}), "must be a whole number of at least 1");
}

#[tokio::test]
async fn stale() {
    let tree = tree(json!([{"name": "fresh only", "plugin": "Stale", "config": {"max_age": "30s"}}]));
    let effects = effects();
    let cases = [
        (json!({"lastupdate": NOW - 31}), false),
        (json!({"lastupdate": NOW - 30}), true),
        (json!({"lastupdate": NOW as f64 - 0.5}), true),
    ];
    for (input, kept) in cases {
        assert_eq!(tree.run(message(input.clone()), &effects).await.message.is_some(), kept, "{input}");
    }
    let out = tree.run(message(json!({})), &effects).await.message.unwrap();
    assert_eq!(out.get_str("errmsg"), Some("Stale in rule 'fresh only': the message has no field 'lastupdate'"));
    assert_config_error("Stale", json!({}), "Stale needs 'max_age'");
}

#[test]
fn recording_effects_start_empty() {
    let effects = RecordingEffects::new(super::now());
    assert!(effects.effects().is_empty());
    assert_eq!(effects.state("State", "x"), None);
}
