//! Censor (SPEC §4, §8): the relay censor as a rule's plugin. It judges the text of the
//! message (`field`, or by default the first of `body`, `text` and `subject` that is
//! there) with the rule's `trigger` and `blocklist` patterns; a report that passes goes
//! on through the rules, a rejected one is appended to `review.<rule name>` (or
//! `review_queue`) with its `review_reason` and then dropped, so nothing rejected is
//! lost. Bad patterns are configuration errors (`flotilla check`), each with its place,
//! the pattern and why.

use flotilla_core::Message;
use flotilla_core::censor::{Censor as CompiledCensor, CensorPatterns};
use flotilla_core::message::value_text;

use super::{Flow, PluginConfig};
use crate::effects::Effects;

/// The fields judged when the rule does not name one, first present wins.
const TEXT_FIELDS: &[&str] = &["body", "text", "subject"];

#[derive(Debug)]
pub(crate) struct Censor {
    censor: CompiledCensor,
    field: Option<String>,
    review_queue: String,
}

impl Censor {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>, rule_name: &str) -> Option<Censor> {
        let trigger = cfg.string_list("trigger").unwrap_or_default();
        let blocklist = cfg.string_list("blocklist").unwrap_or_default();
        let field = cfg.string("field");
        let review_queue = match cfg.string("review_queue") {
            Some(queue) => {
                if !valid_queue(&queue) {
                    cfg.error(
                        "review_queue",
                        format!("'{queue}' is not a queue name: use letters, digits, '.', '_' and '-'"),
                    );
                    return None;
                }
                queue
            }
            None => {
                let queue = format!("review.{}", rule_name.trim());
                if !valid_queue(&queue) {
                    cfg.error_here(format!(
                        "the rule's name makes the review queue '{queue}', which is not a queue name: rename the rule \
                         (letters, digits, '.', '_', '-') or set review_queue"
                    ));
                    return None;
                }
                queue
            }
        };
        match CompiledCensor::new(CensorPatterns { trigger, blocklist }) {
            Ok(censor) => Some(Censor { censor, field, review_queue }),
            Err(error) => {
                for problem in error.problems {
                    let key = format!("{}[{}]", problem.list.as_str(), problem.index);
                    cfg.error(&key, format!("'{}' is refused: {}", problem.pattern, problem.reason));
                }
                None
            }
        }
    }

    pub(crate) fn review_queue(&self) -> &str {
        &self.review_queue
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let text = match &self.field {
            Some(field) => message.get(field).map(value_text),
            None => TEXT_FIELDS.iter().find_map(|f| message.get(f)).map(value_text),
        }
        .unwrap_or_default();
        let Some(reason) = self.censor.judge(&text).reason() else { return Ok(Flow::Keep) };
        message.set("review_reason", reason);
        effects
            .enqueue(&self.review_queue, message)
            .await
            .map_err(|e| format!("cannot append to the review queue '{}': {e}", self.review_queue))?;
        Ok(Flow::Drop)
    }
}

/// The bus's rule for queue names (flotilla-bus is not a dependency of the reactor).
fn valid_queue(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::RecordingEffects;
    use crate::compile::NoFiles;
    use crate::plugins::{Plugin, PluginSite};

    fn compile(rule_name: &str, config: serde_json::Value) -> Result<Plugin, Vec<String>> {
        let site = PluginSite { rule_path: "rules[0]", rule_name, file: None, dir: Path::new("."), loader: &NoFiles };
        Plugin::compile("Censor", Some(&config), &site).map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[tokio::test]
    async fn passes_keeps_and_rejects_into_review() {
        let plugin = compile("nbg", json!({"trigger": ["kontroll?e", "u\\d\\d?"], "blocklist": ["nazi"]})).unwrap();
        let effects = RecordingEffects::new(std::time::UNIX_EPOCH);
        let cases: &[(serde_json::Value, Option<&str>)] = &[
            (json!({"body": "Kontrolle U1"}), None),
            (json!({"text": "kontrolle"}), None),
            (json!({"subject": "Wetter"}), Some("no trigger matched")),
            (json!({"body": "Kontrolle, Nazi"}), Some("blocked: nazi")),
            (json!({}), Some("no trigger matched")),
        ];
        for (fields, reason) in cases {
            let mut message = Message::from_value(fields.clone()).unwrap();
            let flow = plugin.apply(&mut message, &effects).await.unwrap();
            assert_eq!(flow == Flow::Drop, reason.is_some(), "{fields}");
            assert_eq!(message.get("review_reason").and_then(|v| v.as_str()), *reason, "{fields}");
        }
        let queued: Vec<(String, Option<String>)> = effects
            .effects()
            .into_iter()
            .map(|e| match e {
                crate::recording::Effect::Enqueue { queue, message } => {
                    (queue, message.get("review_reason").and_then(|v| v.as_str()).map(str::to_string))
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let review = |reason: &str| ("review.nbg".to_string(), Some(reason.to_string()));
        assert_eq!(queued, vec![review("no trigger matched"), review("blocked: nazi"), review("no trigger matched")]);
    }

    #[test]
    fn bad_patterns_and_names_are_configuration_errors() {
        let errors = compile("nbg", json!({"trigger": ["ok", "(x"], "blocklist": ["a*"]})).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("rules[0].config.trigger[1]") && errors[0].contains("'(x' is refused: unclosed group"),
            "{errors:?}"
        );
        assert!(errors[1].contains("blocklist[0]") && errors[1].contains("matches the empty text"), "{errors:?}");
        let errors = compile("two words", json!({"trigger": ["x"]})).unwrap_err();
        assert!(errors[0].contains("'review.two words'"), "{errors:?}");
        assert!(compile("two words", json!({"trigger": ["x"], "review_queue": "review.ok"})).is_ok());
        assert!(compile("x", json!({"trigger": ["x"], "oops": 1})).is_err());
    }
}
