//! Rules files on disk, for the node's reactor and for connectors with rules of their
//! own (a monitor's `react:`): YAML with a top-level `rules:` list, read through the
//! configuration parser (so `${NAME}` works and mistakes carry file:line:column), and
//! template files read as text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flotilla_config::{Diagnostic, Location, Node};
use flotilla_reactor::{RuleConfig, RulesLoader};

/// Reads rules files and template files for the reactor, remembering each parsed
/// tree so compile errors inside a rules file can be located in it.
#[derive(Default)]
pub struct FileRulesLoader {
    trees: Mutex<HashMap<PathBuf, Node>>,
}

impl FileRulesLoader {
    /// Where a compile error points: under `root` when it has no `file`, else in that
    /// rules file's tree. A value that is missing (a rule without `name`) points at
    /// the nearest thing that exists.
    pub fn locate(&self, file: Option<&Path>, root: &Node, path: &str) -> Option<Location> {
        let trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        let tree = match file {
            None => root,
            Some(file) => trees.get(file)?,
        };
        let mut path = path;
        loop {
            if let Some(node) = tree.get(path) {
                return Some(node.location.clone());
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }
}

/// The shape of a rules file (and of wubot's `reactor.yaml`): a top-level `rules:` list.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    pub rules: Vec<RuleConfig>,
}

fn join(errors: &[Diagnostic]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl RulesLoader for FileRulesLoader {
    fn load_rules(&self, path: &Path) -> Result<Vec<RuleConfig>, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read rules file {}: {e}", path.display()))?;
        let shown = path.display().to_string();
        let tree = flotilla_config::parse_str(&shown, &text, &|name| std::env::var(name).ok())
            .map_err(|errors| join(&errors))?;
        let (file, errors) = flotilla_config::decode::<RulesFile>(&tree);
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), tree);
        match file {
            Some(file) if errors.is_empty() => Ok(file.rules),
            _ => Err(join(&errors)),
        }
    }

    fn read_text(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}
