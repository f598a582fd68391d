//! Data-driven tables for the condition language: every operator, every precedence
//! example of the research notes, and the semantics of wubot's `t/conditions.t`.

use serde_json::{Value, json};

use super::{Condition, ConditionError};
use crate::message::Message;

#[track_caller]
fn check(condition: &str, message: Value, expect: bool) {
    let parsed = Condition::parse(condition).unwrap_or_else(|e| panic!("'{condition}' did not parse: {e}"));
    let message = Message::from_value(message.clone()).expect("test messages are objects");
    assert_eq!(parsed.eval(&message), expect, "'{condition}' on {}", Value::Object(message.fields().clone()));
}

#[track_caller]
fn check_error(condition: &str, offset: usize, contains: &str) {
    match Condition::parse(condition) {
        Ok(parsed) => {
            panic!("'{condition}' parsed as {parsed:?}, expected an error containing '{contains}'")
        }
        Err(ConditionError { offset: got, message }) => {
            assert!(message.contains(contains), "'{condition}': error '{message}' lacks '{contains}'");
            assert_eq!(got, offset, "'{condition}': error '{message}' at the wrong offset");
        }
    }
}

#[test]
fn matches_and_imatches() {
    let cases = [
        ("foo matches test", json!({"foo": "test"}), true),
        ("foo matches test", json!({"foo": "test1"}), true),
        ("foo matches test", json!({"foo": "asdf"}), false),
        ("foo matches test", json!({"foo": "TEST"}), false),
        ("foo matches ^Abc", json!({"foo": "Abc-def"}), true),
        ("foo matches now is the time", json!({"foo": "now is the time for all"}), true),
        ("foo imatches test", json!({"foo": "test"}), true),
        ("foo imatches test", json!({"foo": "TEST"}), true),
        ("foo imatches ^t.st$", json!({"foo": "TeSt"}), true),
        // The field must be truthy.
        ("foo matches .*", json!({}), false),
        ("foo matches .*", json!({"foo": ""}), false),
        ("foo matches .*", json!({"foo": "0"}), false),
        ("foo matches .*", json!({"foo": null}), false),
        // Non-strings are matched as wubot's text.
        ("n matches ^12$", json!({"n": 12}), true),
        ("n matches ^1\\.5$", json!({"n": 1.5}), true),
        ("n matches ^-3$", json!({"n": -3}), true),
        ("b matches ^1$", json!({"b": true}), true),
        ("l matches \"a\"", json!({"l": ["a"]}), true),
        // Spaces after the keyword are not part of the regex; inner spaces are.
        ("foo matches    a b", json!({"foo": "xa by"}), true),
        // A lone "0" pattern is false-y in Perl, so wubot never matched it.
        ("foo matches 0", json!({"foo": "100"}), false),
        ("foo matches 00", json!({"foo": "100"}), true),
        // Unicode.
        ("foo imatches ÉTÉ", json!({"foo": "un été"}), true),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn equals() {
    let cases = [
        ("foo equals test", json!({"foo": "test"}), true),
        ("foo equals test", json!({"foo": "test1"}), false),
        ("foo equals test", json!({}), false),
        ("foo equals a b  c", json!({"foo": "a b  c"}), true),
        ("foo equals   spaced", json!({"foo": "spaced"}), true),
        // False-y fields never equal anything, even their own text.
        ("n equals 0", json!({"n": 0}), false),
        ("n equals 0", json!({"n": "0"}), false),
        // Numbers compare by their text.
        ("n equals 5", json!({"n": 5}), true),
        ("n equals 5", json!({"n": 5.0}), false),
        ("n equals 5.0", json!({"n": 5.0}), true),
        ("n equals 05", json!({"n": 5}), false),
        ("n equals -7", json!({"n": -7}), true),
        ("n equals 18446744073709551615", json!({"n": u64::MAX}), true),
        ("n equals 2.5", json!({"n": 2.5}), true),
        ("n equals 2.50", json!({"n": 2.5}), false),
        ("n equals 5", json!({"n": "5"}), true),
        ("b equals 1", json!({"b": true}), true),
        ("b equals true", json!({"b": true}), false),
        ("l equals [1,2]", json!({"l": [1, 2]}), true),
        ("l equals [1,2", json!({"l": [1, 2]}), false),
        ("o equals {\"a\":1}", json!({"o": {"a": 1}}), true),
        // Case matters.
        ("foo equals Test", json!({"foo": "test"}), false),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn contains_is_true_is_false() {
    let cases = [
        ("contains foo", json!({"foo": "test1"}), true),
        ("contains foo", json!({"foo": null}), true),
        ("contains foo", json!({"foo": 0}), true),
        ("contains bar", json!({"foo": "test1"}), false),
        ("foo is true", json!({"foo": "test1"}), true),
        ("foo is true", json!({"foo": null}), false),
        ("foo is true", json!({"foo": 0}), false),
        ("foo is true", json!({"foo": ""}), false),
        ("foo is true", json!({"foo": "true"}), true),
        ("foo is true", json!({"foo": "false"}), false),
        ("foo is true", json!({"foo": true}), true),
        ("foo is true", json!({"foo": false}), false),
        ("foo is true", json!({"foo": "0.0"}), true),
        ("foo is true", json!({}), false),
        ("foo is false", json!({"foo": "test1"}), false),
        ("foo is false", json!({"foo": null}), true),
        ("foo is false", json!({"foo": 0}), true),
        ("foo is false", json!({"foo": ""}), true),
        ("foo is false", json!({"foo": "false"}), true),
        ("foo is false", json!({"foo": "true"}), false),
        ("foo is false", json!({"foo": false}), true),
        ("foo is false", json!({}), true),
        ("noforward is false", json!({"noforward": 1}), false),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn numeric_comparisons() {
    let cases = [
        ("foo < 5", json!({"foo": "1"}), true),
        ("foo < 5", json!({"foo": "6"}), false),
        ("foo > 5", json!({"foo": "1"}), false),
        ("foo > 5", json!({"foo": "6"}), true),
        ("foo > bar", json!({"foo": "6", "bar": "7"}), false),
        ("foo > bar", json!({"foo": "7", "bar": "6"}), true),
        ("foo < bar", json!({"foo": "6", "bar": "7"}), true),
        ("foo < bar", json!({"bar": "6"}), false),
        ("foo < bar", json!({"foo": "6"}), false),
        ("foo >= 5", json!({"foo": "6"}), true),
        ("foo >= 5", json!({"foo": "5"}), true),
        ("foo >= 5", json!({"foo": "4"}), false),
        ("foo <= 5", json!({"foo": "4"}), true),
        ("foo <= 5", json!({"foo": "5"}), true),
        ("foo <= 5", json!({"foo": "6"}), false),
        // JSON numbers, floats, literals on either side.
        ("load > 1.5", json!({"load": 1.75}), true),
        ("load > 1.5", json!({"load": 1}), false),
        ("2 < load", json!({"load": 3}), true),
        ("3 >= 3", json!({}), true),
        ("x > .5", json!({"x": "0.6"}), true),
        ("x < 1e3", json!({"x": 999}), true),
        ("x < y", json!({"x": -1, "y": " 2 "}), true),
        ("x > 9007199254740992", json!({"x": 9_007_199_254_740_993_u64}), true),
        ("x < 18446744073709551615", json!({"x": 18_446_744_073_709_551_614_u64}), true),
        // Not numbers: false whichever way round.
        ("foo > 5", json!({"foo": "abc"}), false),
        ("foo < 5", json!({"foo": "abc"}), false),
        ("foo < 5", json!({"foo": ""}), false),
        ("foo < 5", json!({"foo": null}), false),
        ("foo < 5", json!({"foo": true}), false),
        ("foo < 5", json!({"foo": [1]}), false),
        ("foo < 5", json!({"foo": "5x"}), false),
        ("foo < 5", json!({"foo": "NaN"}), false),
        ("foo >= 5", json!({"foo": "NaN"}), false),
        ("foo > 5", json!({"foo": "inf"}), true),
        // Dotted paths on comparisons.
        ("a.b > 1", json!({"a": {"b": 2}}), true),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn and_or_not_and_their_precedence() {
    let navi = || json!({"hostname": "navi"});
    let cases = [
        ("foo is true AND bar is true", json!({"foo": "abc", "bar": "def"}), true),
        ("foo is true AND bar is true", json!({"foo": "abc"}), false),
        ("foo matches x AND foo matches a b c", json!({"foo": "x a b c y"}), true),
        ("foo is true OR bar is true", json!({"foo": "abc", "bar": "def"}), true),
        ("foo is true OR bar is true", json!({"foo": "abc"}), true),
        ("foo is true OR bar is true", json!({"abc": "xyz"}), false),
        ("NOT foo is true AND NOT bar is true", json!({"foo": "abc", "bar": "def"}), false),
        ("NOT foo is true AND NOT bar is true", json!({"abc": "def"}), true),
        ("NOT foo is true AND NOT bar is true", json!({"foo": "abc"}), false),
        ("hostname equals navi AND NOT no_post is true", json!({"hostname": "xyz"}), false),
        ("hostname equals navi AND NOT no_post is true", json!({"no_post": 1}), false),
        ("hostname equals navi AND NOT no_post is true", json!({"hostname": "xyz", "no_post": 1}), false),
        ("hostname equals navi AND NOT no_post is true", navi(), true),
        // Three statements: AND splits first (binds loosest), so X AND Y OR Z = X AND (Y OR Z).
        ("hostname equals navi AND hostname equals navi OR hostname equals navi", navi(), true),
        ("hostname equals navi AND hostname equals navi OR abc equals xyz", navi(), true),
        ("hostname equals navi AND abc equals xyz OR hostname equals navi", navi(), true),
        ("abc equals xyz AND hostname equals navi OR hostname equals navi", navi(), false),
        ("abc equals xyz AND abc equals xyz OR hostname equals navi", navi(), false),
        ("abc equals xyz AND hostname equals navi OR  abc equals xyz", navi(), false),
        ("hostname equals navi AND abc equals xyz OR abc equals xyz", navi(), false),
        ("abc equals xyz AND abc equals xyz OR abc equals xyz", navi(), false),
        // ... and X OR Y AND Z = (X OR Y) AND Z.
        ("TRUE OR FALSE AND FALSE", json!({}), false),
        ("FALSE OR TRUE AND TRUE", json!({}), true),
        ("TRUE AND FALSE OR TRUE", json!({}), true),
        ("FALSE AND TRUE OR TRUE", json!({}), false),
        // NOT applies to the rest of its side only.
        ("NOT TRUE AND FALSE", json!({}), false),
        ("NOT FALSE AND TRUE", json!({}), true),
        ("NOT FALSE OR FALSE", json!({}), true),
        ("NOT TRUE OR TRUE", json!({}), true),
        ("NOT NOT TRUE", json!({}), true),
        ("NOT   x is true", json!({}), true),
        // Splits happen at the LAST keyword; chains are associative anyway.
        ("TRUE AND TRUE AND FALSE", json!({}), false),
        ("FALSE OR FALSE OR TRUE", json!({}), true),
        ("TRUE", json!({}), true),
        ("FALSE", json!({}), false),
        ("  TRUE  ", json!({}), true),
        // The split cuts through regexes and values, as in wubot.
        ("foo equals a AND b is false", json!({"foo": "a"}), true),
        ("foo matches x OR y is true", json!({"foo": "abc", "y": 1}), true),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn parentheses() {
    let navi = || json!({"hostname": "navi"});
    let cases = [
        ("( hostname equals navi OR hostname equals foo ) AND hostname equals navi", navi(), true),
        ("hostname equals navi OR ( hostname equals foo AND hostname equals navi )", navi(), true),
        ("hostname equals foo OR ( hostname equals navi AND hostname equals navi )", navi(), true),
        ("hostname equals foo OR ( hostname equals navi AND hostname equals foo )", navi(), false),
        (
            "( hostname equals navi OR hostname equals foo ) AND ( hostname equals foo OR hostname equals navi )",
            navi(),
            true,
        ),
        (
            "( ( hostname equals foo OR hostname equals bar ) OR hostname equals navi ) AND hostname equals navi",
            navi(),
            true,
        ),
        (
            "( hostname equals foo OR ( hostname equals bar OR hostname equals navi ) ) AND hostname equals navi",
            navi(),
            true,
        ),
        ("( abc equals xyz AND hostname equals navi ) OR hostname equals navi", navi(), true),
        ("hostname equals navi AND ( hostname equals navi OR hostname equals navi )", navi(), true),
        // Groups change what AND-binds-loosest would give.
        ("( TRUE AND FALSE ) OR TRUE", json!({}), true),
        ("TRUE AND FALSE OR TRUE", json!({}), true),
        ("( FALSE AND TRUE ) OR TRUE", json!({}), true),
        ("FALSE AND TRUE OR TRUE", json!({}), false),
        ("NOT ( TRUE AND FALSE )", json!({}), true),
        ("NOT ( TRUE OR FALSE ) OR TRUE", json!({}), true),
        ("(  x is true  )", json!({"x": 1}), true),
        ("( ( ( TRUE ) ) )", json!({}), true),
        // No space inside: a regex group, not a condition group.
        ("foo matches (x|y)", json!({"foo": "axb"}), true),
        ("foo matches (x|y)", json!({"foo": "abc"}), false),
        ("foo matches (x|y) AND ( bar is true )", json!({"foo": "y", "bar": 1}), true),
        ("foo matches ^(a|b) c$", json!({"foo": "b c"}), true),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn keywords_inside_expressions() {
    let cases = [
        ("foo matches xANDy", json!({"foo": "xANDy"}), true),
        ("foo matches x ANDy", json!({"foo": "x ANDy"}), true),
        ("foo matches xAND y", json!({"foo": "xAND y"}), true),
        ("foo matches xORy", json!({"foo": "xORy"}), true),
        ("foo matches x ORy", json!({"foo": "x ORy"}), true),
        ("foo matches xOR y", json!({"foo": "xOR y"}), true),
        ("foo equals NOT x", json!({"foo": "NOT x"}), true),
        ("foo equals TRUE", json!({"foo": "TRUE"}), true),
        ("contains equals x", json!({"contains": "x"}), true),
        ("NOTE is true", json!({"NOTE": 1}), true),
        ("ORDER is true", json!({"ORDER": 1}), true),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn dotted_field_paths() {
    let cases = [
        ("Message.lookup equals deep", json!({"Message": {"lookup": "deep"}}), true),
        ("a.b.1.c equals x", json!({"a": {"b": [0, {"c": "x"}]}}), true),
        ("a.b.9 is false", json!({"a": {"b": [1]}}), true),
        ("x.y equals flat", json!({"x.y": "flat", "x": {"y": "nested"}}), true),
        ("x.y equals nested", json!({"x": {"y": "nested"}}), true),
        ("contains a.b", json!({"a": {"b": null}}), true),
        ("contains a.c", json!({"a": {"b": null}}), false),
        ("a.b.c is true", json!({"a": {"b": "scalar"}}), false),
        ("meta.domain matches ^canary$", json!({"meta": {"domain": "canary"}}), true),
    ];
    for (condition, message, expect) in cases {
        check(condition, message, expect);
    }
}

#[test]
fn parse_errors_say_what_and_where() {
    let cases = [
        ("", 0, "found nothing"),
        ("   ", 3, "found nothing"),
        ("foo", 0, "cannot understand 'foo'"),
        ("foo is true and bar is true", 0, "must be upper case"),
        ("foo == 5", 0, "use 'equals'"),
        ("foo  > 5", 0, "exactly one space"),
        ("foo is true AND bar", 16, "cannot understand 'bar'"),
        ("TRUE OR x y", 8, "cannot understand 'x y'"),
        ("NOT", 0, "cannot understand 'NOT'"),
        ("foo matches x(", 12, "invalid regex 'x('"),
        ("foo imatches [a-", 13, "invalid regex"),
        ("foo matches (?<=a)b", 12, "invalid regex"),
        ("x is true AND foo matches (", 26, "invalid regex '('"),
        ("( x is true", 0, "cannot understand '( x is true'"),
        ("( foo )", 2, "cannot understand 'foo'"),
        ("foo matches ( x|y )", 14, "cannot understand 'x|y'"),
        ("foo equals ( TRUE )", 11, "parenthesised condition '( TRUE )' is used inside"),
        ("TRUE AND ( TRUE ) > 5", 9, "parenthesised condition"),
        ("(   )", 4, "found nothing"),
        ("s equals ", 0, "cannot understand"),
        ("a\u{1E}b", 1, "U+001E"),
        ("été équals x", 0, "cannot understand"),
        ("x is true AND été foo", 14, "cannot understand 'été foo'"),
        ("foo equals", 0, "cannot understand"),
        ("contains  foo", 0, "cannot understand"),
        ("x > -1", 0, "cannot understand"),
    ];
    for (condition, offset, contains) in cases {
        check_error(condition, offset, contains);
    }
}

#[test]
fn error_display_includes_the_offset() {
    let error = Condition::parse("TRUE AND bogus").unwrap_err();
    assert_eq!(error.to_string(), format!("{} at character 9", error.message));
}

#[test]
fn source_and_display_keep_the_text() {
    let condition: Condition = "  foo is true ".parse().unwrap();
    assert_eq!(condition.source(), "  foo is true ");
    assert_eq!(condition.to_string(), "  foo is true ");
    assert!(condition.eval_fields(json!({"foo": 1}).as_object().unwrap()));
}
