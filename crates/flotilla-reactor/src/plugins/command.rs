//! The Command plugin: runs a shell command built from the message.

use std::time::Duration;

use flotilla_core::Message;
use flotilla_core::message::{is_truthy, value_text};

use super::{Flow, PluginConfig, Template, field};
use crate::effects::Effects;

/// How long a command may run when the rule does not say.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum CommandSource {
    Fixed(Template),
    FromField(String),
}

/// Command: runs `command` (a `{$field}` template; or `command_array` joined by
/// spaces; or the command in `command_field`) with `sh -c` and the message as JSON on
/// standard input, waiting at most `timeout` (default 30 s). Sets `output_field`
/// (default `command_output`) to its standard output followed by its standard error,
/// without the final line break, and `command_status` (exit code) and
/// `command_signal` (the signal that killed it, or 0), as wubot did. Field values are
/// quoted for the shell where their placeholder stands (see [`super::shell`]), so a
/// field is always data; `{$!field}` puts one in unquoted, for trusted fields only.
/// `command_field` takes the whole command from the message: only for messages the
/// rule's conditions have established as trusted.
#[derive(Debug)]
pub(crate) struct Command {
    source: CommandSource,
    output_field: String,
    timeout: Duration,
}

impl Command {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Command> {
        let command = cfg.string("command");
        let command_field = cfg.string("command_field");
        let command_array = cfg.string_list("command_array");
        let output_field = cfg.string("output_field").unwrap_or_else(|| "command_output".into());
        let timeout = cfg.duration("timeout").unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        cfg.unsupported(
            "fork",
            "wubot's background command queues are not part of Flotilla; the command runs while the rule waits (see 'timeout')",
        );
        cfg.unsupported("command_noresults", "it only applied to wubot's 'fork' queues");
        if timeout.is_zero() {
            cfg.error("timeout", "'timeout' must be more than 0".into());
        }
        let given =
            [command.is_some(), command_field.is_some(), command_array.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            cfg.error_here("use only one of 'command', 'command_field' and 'command_array'".into());
            return None;
        }
        let (key, text) = match (command, command_field, command_array) {
            (Some(text), _, _) => ("command", text),
            (_, Some(name), _) => {
                return Some(Command { source: CommandSource::FromField(name), output_field, timeout });
            }
            (_, _, Some(parts)) => ("command_array", parts.join(" ")),
            _ => {
                if !cfg.has("command") && !cfg.has("command_field") && !cfg.has("command_array") {
                    cfg.error_here("Command needs 'command', 'command_field' or 'command_array' in its config".into());
                }
                return None;
            }
        };
        if text.trim().is_empty() {
            cfg.error(key, "the command is empty".into());
            return None;
        }
        match Template::parse_command(&text) {
            Ok(template) => Some(Command { source: CommandSource::Fixed(template), output_field, timeout }),
            Err(e) => {
                cfg.error(key, e);
                None
            }
        }
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let command = match &self.source {
            CommandSource::Fixed(template) => template.render(message)?,
            CommandSource::FromField(name) => match field(message, name) {
                Some(value) if is_truthy(value) => Template::parse_command(&value_text(value))?.render(message)?,
                _ => return Err(format!("field '{name}' holds no command")),
            },
        };
        let output = effects
            .run_command(&command, message, self.timeout)
            .await
            .map_err(|e| format!("command '{command}' failed: {e}"))?;
        let mut text = output.stdout;
        text.push_str(&output.stderr);
        // Perl's chomp: one final line break goes.
        if text.ends_with('\n') {
            text.pop();
        }
        message.set(self.output_field.as_str(), text);
        message.set("command_status", output.exit_code.unwrap_or(0));
        message.set("command_signal", output.signal.unwrap_or(0));
        Ok(Flow::Keep)
    }
}
