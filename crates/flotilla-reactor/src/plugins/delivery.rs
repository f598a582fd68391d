//! Plugins that deliver the message somewhere, through [`Effects`]: MessageQueue, SQL,
//! Send and Console.

use std::time::UNIX_EPOCH;

use flotilla_core::Message;
use flotilla_core::message::{is_truthy, value_text};
use serde_json::{Map, Value};

use super::{Flow, PluginConfig, field};
use crate::effects::{ConsoleLine, Effects};

/// MessageQueue: appends the message to the bus queue `queue`. wubot's `directory`
/// (a path to a queue directory) is accepted; its last component is the queue name.
#[derive(Debug)]
pub(crate) struct MessageQueue {
    queue: String,
    from_directory: bool,
}

impl MessageQueue {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<MessageQueue> {
        let queue = cfg.string("queue");
        let directory = cfg.string("directory");
        match (queue, directory) {
            (Some(_), Some(_)) => {
                cfg.error_here("use either 'queue' or wubot's 'directory', not both".into());
                None
            }
            (Some(queue), None) if !queue.is_empty() => Some(MessageQueue { queue, from_directory: false }),
            (None, Some(directory)) => {
                match directory.trim_end_matches('/').rsplit('/').next().filter(|name| !name.is_empty()) {
                    Some(name) => Some(MessageQueue { queue: name.to_string(), from_directory: true }),
                    None => {
                        cfg.error("directory", format!("'{directory}' does not end in a queue name"));
                        None
                    }
                }
            }
            (Some(_), None) => {
                cfg.error("queue", "'queue' must not be empty".into());
                None
            }
            (None, None) => {
                if !cfg.has("queue") && !cfg.has("directory") {
                    cfg.missing("queue");
                }
                None
            }
        }
    }

    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn key(&self) -> &'static str {
        if self.from_directory { "directory" } else { "queue" }
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        effects
            .enqueue(&self.queue, message)
            .await
            .map_err(|e| format!("cannot append to queue '{}': {e}", self.queue))?;
        Ok(Flow::Keep)
    }
}

/// SQL (also wubot's name SQLite): inserts the message as one row into `table` (wubot's
/// `tablename`) of the node's store; `columns` (or the keys of wubot's `schema`)
/// chooses the fields, by default all of them. Fields the message lacks are left out.
#[derive(Debug)]
pub(crate) struct Sql {
    table: String,
    table_key: &'static str,
    columns: Option<Vec<String>>,
}

impl Sql {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Sql> {
        let table = cfg.string("table");
        let tablename = cfg.string("tablename");
        let columns = cfg.string_list("columns");
        let schema = cfg.object("schema");
        let reason = "Flotilla inserts into the node's one store (store.url), one row per message";
        cfg.unsupported("file", reason);
        cfg.unsupported("file_field", reason);
        cfg.unsupported("tablename_field", "the table must be known when the rules are checked");
        cfg.unsupported("update", reason);
        cfg.unsupported("id_field", reason);
        let (table_key, table) = match (table, tablename) {
            (Some(_), Some(_)) => {
                cfg.error_here("use either 'table' or wubot's 'tablename', not both".into());
                return None;
            }
            (Some(table), None) => ("table", table),
            (None, Some(table)) => ("tablename", table),
            (None, None) => {
                if !cfg.has("table") && !cfg.has("tablename") {
                    cfg.missing("table");
                }
                return None;
            }
        };
        if !is_identifier(&table) {
            cfg.error(
                table_key,
                format!("'{table}' is not a table name: use letters, digits and '_', not starting with a digit, at most 63 characters"),
            );
            return None;
        }
        let columns = match (columns, schema) {
            (Some(_), Some(_)) => {
                cfg.error_here("use either 'columns' or wubot's 'schema', not both".into());
                return None;
            }
            (Some(columns), None) => Some(columns),
            (None, Some(schema)) => Some(schema.keys().filter(|k| *k != "constraints").cloned().collect()),
            (None, None) => None,
        };
        if columns.as_ref().is_some_and(Vec::is_empty) {
            cfg.error_here("the list of columns is empty".into());
            return None;
        }
        Some(Sql { table, table_key, columns })
    }

    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn key(&self) -> &'static str {
        self.table_key
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        let row: Map<String, Value> = match &self.columns {
            None => message.fields().clone(),
            Some(columns) => columns.iter().filter_map(|c| message.get(c).map(|v| (c.clone(), v.clone()))).collect(),
        };
        if row.is_empty() {
            return Err(format!("the message has none of the columns of table '{}'", self.table));
        }
        effects
            .sql_insert(&self.table, &row)
            .await
            .map_err(|e| format!("cannot insert into table '{}': {e}", self.table))?;
        Ok(Flow::Keep)
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// Send: hands the message to `connector` to post.
#[derive(Debug)]
pub(crate) struct Send {
    connector: String,
}

impl Send {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Send> {
        cfg.required_string("connector").map(|connector| Send { connector })
    }

    pub(crate) fn connector(&self) -> &str {
        &self.connector
    }

    pub(crate) async fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        effects
            .send(&self.connector, message)
            .await
            .map_err(|e| format!("cannot hand the message to connector '{}': {e}", self.connector))?;
        Ok(Flow::Keep)
    }
}

/// Console: prints `YYYY/MM/DD HH:MM:SS> [key] username: title => subject` in local
/// time (of `lastupdate`, else now), for messages with a subject that are not `quiet`
/// or `quiet_console`. `subject_text` is printed instead of `subject` when set; the
/// title only when it differs from the subject. The date is always the full one, as
/// wubot 0.3 printed it (0.5 shortened it to `HH:MM:SS` for messages under 12 hours
/// old), so lines sort and search alike; the colour travels beside the text.
#[derive(Debug)]
pub(crate) struct Console;

/// wubot's colour names and the terminal colours it printed them in.
const COLORS: &[(&str, &str, &str)] = &[
    ("blue", "blue", "bold blue"),
    ("cyan", "cyan", "bold cyan"),
    ("red", "red", "bold red"),
    ("white", "white", "bold white"),
    ("black", "bold black", "bold black"),
    ("green", "green", "bold green"),
    ("orange", "yellow", "bold yellow"),
    ("yellow", "bold yellow", "bold yellow"),
    ("purple", "magenta", "bold magenta"),
    ("magenta", "magenta", "bold magenta"),
];

impl Console {
    pub(crate) fn compile(cfg: &mut PluginConfig<'_>) -> Option<Console> {
        cfg.unsupported("checksum", "Flotilla messages have ids, not wubot's checksums");
        Some(Console)
    }

    pub(crate) fn apply(&self, message: &mut Message, effects: &dyn Effects) -> Result<Flow, String> {
        if let Some(line) = console_line(message, effects) {
            effects.console(&line);
        }
        Ok(Flow::Keep)
    }
}

fn truthy<'m>(message: &'m Message, name: &str) -> Option<&'m Value> {
    field(message, name).filter(|v| is_truthy(v))
}

/// The line Console prints for a message, if it prints one.
pub(crate) fn console_line(message: &Message, effects: &dyn Effects) -> Option<ConsoleLine> {
    let subject = truthy(message, "subject")?;
    if truthy(message, "quiet").is_some() || truthy(message, "quiet_console").is_some() {
        return None;
    }
    let subject_text = value_text(subject);
    let mut text = value_text(truthy(message, "subject_text").unwrap_or(subject)).into_owned();
    if let Some(title) = truthy(message, "title").map(value_text)
        && title != subject_text
    {
        text = format!("{title} => {text}");
    }
    if let Some(username) = truthy(message, "username") {
        text = format!("{}: {text}", value_text(username));
    }
    if let Some(key) = truthy(message, "key") {
        text = format!("[{}] {text}", value_text(key));
    }
    let seconds = match message.lastupdate().filter(|t| *t != 0.0) {
        Some(t) => t.floor() as i64,
        None => effects.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
    };
    let date = chrono::DateTime::from_timestamp(seconds, 0)
        .map(|utc| utc.with_timezone(&effects.utc_offset(seconds)).format("%Y/%m/%d %H:%M:%S").to_string())
        .unwrap_or_else(|| seconds.to_string());
    let urgent = truthy(message, "urgent").is_some();
    let color = truthy(message, "color")
        .and_then(|c| c.as_str())
        .and_then(|name| COLORS.iter().find(|(n, _, _)| *n == name))
        .map_or(if urgent { "bold white" } else { "white" }, |(_, plain, bold)| if urgent { bold } else { plain });
    // The text is strangers' (chat, feeds): no control character reaches the terminal.
    Some(ConsoleLine { text: format!("{date}> {}", flotilla_core::escape_controls(&text)), color })
}
