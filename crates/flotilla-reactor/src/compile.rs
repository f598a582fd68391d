//! Checking rule configurations and building a [`RuleTree`]: every problem in every
//! rule (and every included rules file) is reported, each with the dotted path of the
//! offending value so the caller can point at its file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use flotilla_core::condition::Condition;

use crate::config::RuleConfig;
use crate::plugins::{Plugin, PluginSite};
use crate::tree::{CompiledRule, Reference, RuleTree};

/// How deep rules files may include rules files.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What compiling needs besides the rules themselves.
pub struct CompileContext<'a> {
    /// The short host name written into `wubot_rulelog` entries (`host:rule`).
    pub host: &'a str,
    /// The directory relative `rulesfile` and `template_file` names are resolved
    /// against (that of the configuration file holding the rules).
    pub base_dir: &'a Path,
    /// Reads rules files and template files.
    pub loader: &'a dyn RulesLoader,
}

/// Reads the files rules refer to. The node implements it with `flotilla-config` (a
/// rules file is YAML with a top-level `rules:` list, decoded into [`RuleConfig`]s).
pub trait RulesLoader {
    /// The rules of a rules file; the error says why it could not be read or decoded
    /// (with file, line and column when the YAML is at fault).
    fn load_rules(&self, path: &Path) -> Result<Vec<RuleConfig>, String>;

    /// A text file (Template's `template_file`).
    fn read_text(&self, path: &Path) -> Result<String, String>;
}

/// A [`RulesLoader`] for rules that must not refer to files.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl RulesLoader for NoFiles {
    fn load_rules(&self, path: &Path) -> Result<Vec<RuleConfig>, String> {
        Err(format!("rules files are not available here (wanted '{}')", path.display()))
    }

    fn read_text(&self, path: &Path) -> Result<String, String> {
        Err(format!("files are not available here (wanted '{}')", path.display()))
    }
}

/// One problem in the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rules file the problem is in; `None` for the rules handed to [`compile`].
    pub file: Option<PathBuf>,
    /// Dotted path of the offending value, relative to the file's `rules:` list:
    /// `rules[2].rules[0].condition`, `rules[1].config.field`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for RuleError {}

/// Checks the rules and builds the tree, or returns every problem found.
///
/// # Errors
///
/// Every [`RuleError`]: a missing name, a condition that does not parse (or whose
/// regex does not compile), an unknown plugin, a plugin config with unknown, missing
/// or invalid keys, `config` without `plugin`, a rules file that cannot be loaded or
/// that includes itself, and all problems inside included rules files.
pub fn compile(rules: &[RuleConfig], ctx: &CompileContext<'_>) -> Result<RuleTree, Vec<RuleError>> {
    let mut builder =
        Builder { ctx, rules: Vec::new(), references: Vec::new(), errors: Vec::new(), including: Vec::new() };
    let first = builder.list(rules, "rules", None, ctx.base_dir, None).map(|(first, _)| first);
    if builder.errors.is_empty() {
        Ok(RuleTree::new(builder.rules, first, builder.references))
    } else {
        Err(builder.errors)
    }
}

struct Builder<'c> {
    ctx: &'c CompileContext<'c>,
    rules: Vec<CompiledRule>,
    references: Vec<Reference>,
    errors: Vec<RuleError>,
    /// The rules files being compiled, outermost first, to catch include cycles.
    including: Vec<PathBuf>,
}

impl Builder<'_> {
    fn error(&mut self, file: Option<&Path>, path: String, message: String) {
        self.errors.push(RuleError { file: file.map(Path::to_path_buf), path, message });
    }

    /// Compiles a list of sibling rules; returns the first and last rule's index.
    fn list(
        &mut self,
        list: &[RuleConfig],
        prefix: &str,
        file: Option<&Path>,
        dir: &Path,
        parent: Option<u32>,
    ) -> Option<(u32, u32)> {
        let mut ends: Option<(u32, u32)> = None;
        for (i, config) in list.iter().enumerate() {
            let index = self.rule(config, &format!("{prefix}[{i}]"), file, dir, parent);
            ends = match ends {
                None => Some((index, index)),
                Some((first, last)) => {
                    self.rules[last as usize].next_sibling = Some(index);
                    Some((first, index))
                }
            };
        }
        ends
    }

    fn rule(&mut self, config: &RuleConfig, path: &str, file: Option<&Path>, dir: &Path, parent: Option<u32>) -> u32 {
        let index = u32::try_from(self.rules.len()).expect("fewer than 4 billion rules");
        let name = config.name.trim().to_string();
        if name.is_empty() {
            self.error(file, format!("{path}.name"), "every rule needs a name".into());
        }
        self.rules.push(CompiledRule {
            log_entry: format!("{}:{name}", self.ctx.host),
            name,
            condition: None,
            plugin: None,
            last_rule: config.last_rule.unwrap_or(false),
            first_child: None,
            next_sibling: None,
            parent,
        });

        if let Some(text) = &config.condition {
            match Condition::parse(text) {
                Ok(condition) => self.rules[index as usize].condition = Some(condition),
                Err(e) => self.error(file, format!("{path}.condition"), e.to_string()),
            }
        }

        match (&config.plugin, &config.config) {
            (Some(plugin_name), plugin_config) => {
                let rule_name = self.rules[index as usize].name.clone();
                let site = PluginSite { rule_path: path, rule_name: &rule_name, file, dir, loader: self.ctx.loader };
                match Plugin::compile(plugin_name, plugin_config.as_ref(), &site) {
                    Ok(plugin) => {
                        if let Some((kind, name, key)) = plugin.reference() {
                            self.references.push(Reference {
                                kind,
                                name: name.to_string(),
                                file: file.map(Path::to_path_buf),
                                path: format!("{path}.config.{key}"),
                            });
                        }
                        self.rules[index as usize].plugin = Some(plugin);
                    }
                    Err(errors) => self.errors.extend(errors),
                }
            }
            (None, Some(_)) => {
                self.error(file, format!("{path}.config"), "'config' is given but the rule has no 'plugin'".into());
            }
            (None, None) => {}
        }

        let children = config
            .rules
            .as_deref()
            .and_then(|children| self.list(children, &format!("{path}.rules"), file, dir, Some(index)));
        let included = config.rulesfile.as_deref().and_then(|name| self.include(name, path, file, dir, index));
        let first_child = match (children, included) {
            (Some((first, last)), Some((included_first, _))) => {
                self.rules[last as usize].next_sibling = Some(included_first);
                Some(first)
            }
            (Some((first, _)), None) | (None, Some((first, _))) => Some(first),
            (None, None) => None,
        };
        self.rules[index as usize].first_child = first_child;
        index
    }

    /// Compiles the rules of a rules file as children of rule `owner`.
    fn include(&mut self, name: &str, path: &str, file: Option<&Path>, dir: &Path, owner: u32) -> Option<(u32, u32)> {
        let at = format!("{path}.rulesfile");
        if name.trim().is_empty() {
            self.error(file, at, "'rulesfile' must name a file".into());
            return None;
        }
        let resolved = dir.join(name);
        if self.including.contains(&resolved) {
            let chain: Vec<String> = self.including.iter().map(|p| p.display().to_string()).collect();
            let message =
                format!("rules file '{}' includes itself (through {})", resolved.display(), chain.join(" -> "));
            self.error(file, at, message);
            return None;
        }
        if self.including.len() >= MAX_INCLUDE_DEPTH {
            self.error(file, at, format!("rules files are nested more than {MAX_INCLUDE_DEPTH} deep"));
            return None;
        }
        let rules = match self.ctx.loader.load_rules(&resolved) {
            Ok(rules) => rules,
            Err(e) => {
                self.error(file, at, format!("cannot load rules file '{}': {e}", resolved.display()));
                return None;
            }
        };
        let inner_dir = resolved.parent().map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        self.including.push(resolved.clone());
        let ends = self.list(&rules, "rules", Some(&resolved), &inner_dir, Some(owner));
        self.including.pop();
        ends
    }
}
