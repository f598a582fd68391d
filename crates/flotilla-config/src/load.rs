//! Reading configuration from disk: a file, or a directory of files for many hosts.
//!
//! This is the crate's only file I/O. A directory is read recursively in sorted order
//! (so merge conflicts always name the files in the same order). `X.yaml` and `X.yml`
//! are read on every host; `X.yaml.<host>` and `X.yml.<host>` only where the short host
//! name is `<host>` (compared without regard to case, as host names are); anything else
//! is ignored, as are entries whose names start with `.` (editor and VCS files). wubot's
//! layout works unchanged: `plugins/<Plugin>/<instance>.yaml` defines the connector
//! `<Plugin>-<instance>` whose `type` is the folder name in lower case. Every problem
//! with every file is reported, not just the first. Directories reached twice (through
//! symbolic links) are read once, so a link loop cannot hang the reader.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::location::{Diagnostic, Location};
use crate::merge::merge;
use crate::node::{Node, NodeKind};
use crate::parse::parse_str;

/// Nesting of directories beyond which the reader stops descending. Far beyond any real
/// layout; it bounds recursion even where canonical paths cannot detect a cycle.
const MAX_DIRECTORY_DEPTH: usize = 32;

/// Loads the configuration at `path` (a YAML file, or a directory read as described in
/// the module docs) for the host whose short name is `shorthost`, substituting
/// environment variables from `env`. Returns the merged tree, or every problem found.
pub fn load(path: &Path, shorthost: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Node, Vec<Diagnostic>> {
    // The short name is what precedes the first dot; accept a full name too.
    let shorthost = shorthost.split('.').next().unwrap_or_default();
    let mut loader = Loader {
        shorthost,
        env,
        root: Node::empty_map(Location::new(path.display().to_string(), 1, 1)),
        diagnostics: Vec::new(),
        visited: HashSet::new(),
    };
    match fs::metadata(path) {
        Err(error) => loader
            .diagnostics
            .push(Diagnostic::global(format!("cannot read configuration {}: {error}", path.display()))),
        Ok(metadata) if metadata.is_dir() => loader.directory(path, &mut Vec::new(), 0),
        Ok(_) => loader.file(path, None),
    }
    if loader.diagnostics.is_empty() { Ok(loader.root) } else { Err(loader.diagnostics) }
}

struct Loader<'a> {
    shorthost: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    root: Node,
    diagnostics: Vec<Diagnostic>,
    /// Canonical paths of directories already read.
    visited: HashSet<PathBuf>,
}

/// Where a file sits in wubot's plugin layout.
struct PluginFile {
    /// The folder name, e.g. `RSS`.
    plugin: String,
    /// The file name without its extensions, e.g. `slashdot`.
    instance: String,
}

impl Loader<'_> {
    /// Reads `dir`; `relative` is its path below the directory given to [`load`], as
    /// names, for recognising `plugins/<Plugin>/`.
    fn directory(&mut self, dir: &Path, relative: &mut Vec<String>, depth: usize) {
        if depth > MAX_DIRECTORY_DEPTH {
            self.diagnostics.push(Diagnostic::global(format!(
                "{}: directories nested more than {MAX_DIRECTORY_DEPTH} deep; not reading further",
                dir.display()
            )));
            return;
        }
        match fs::canonicalize(dir) {
            Ok(canonical) => {
                if !self.visited.insert(canonical) {
                    return;
                }
            }
            Err(error) => {
                self.diagnostics.push(Diagnostic::global(format!("cannot read directory {}: {error}", dir.display())));
                return;
            }
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                self.diagnostics.push(Diagnostic::global(format!("cannot read directory {}: {error}", dir.display())));
                return;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(error) => self
                    .diagnostics
                    .push(Diagnostic::global(format!("cannot read directory {}: {error}", dir.display()))),
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let Some(name) = name.to_str().map(str::to_string) else {
                // A name that is not UTF-8 cannot match `*.yaml`; only a directory could
                // matter, and the plugin layout needs UTF-8 names anyway.
                if path.is_dir() {
                    self.diagnostics.push(Diagnostic::global(format!(
                        "{}: directory name is not UTF-8; not reading it",
                        path.display()
                    )));
                }
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // `metadata` follows symbolic links, so a linked directory is read (once).
            match fs::metadata(&path) {
                Ok(metadata) if metadata.is_dir() => {
                    relative.push(name);
                    self.directory(&path, relative, depth + 1);
                    relative.pop();
                }
                Ok(_) => {
                    if let Some(instance) = self.selected(&name) {
                        let plugin = self.plugin_file(&path, relative, instance);
                        if let Ok(plugin) = plugin {
                            self.file(&path, plugin);
                        }
                    }
                }
                Err(error) => {
                    if self.selected(&name).is_some() {
                        self.diagnostics.push(Diagnostic::global(format!("cannot read {}: {error}", path.display())));
                    }
                }
            }
        }
    }

    /// Whether a file of this name is read on this host; if so, its name without the
    /// extensions (the instance name, in the plugin layout).
    fn selected<'n>(&self, name: &'n str) -> Option<&'n str> {
        for extension in [".yaml", ".yml"] {
            if let Some(stem) = name.strip_suffix(extension) {
                return Some(stem);
            }
            if let Some((stem, host)) = name.split_once(&format!("{extension}."))
                && !stem.is_empty()
                && host.eq_ignore_ascii_case(self.shorthost)
            {
                return Some(stem);
            }
        }
        None
    }

    /// Places a selected file: `Ok(None)` merges at the root, `Ok(Some)` is a plugin file,
    /// `Err` a file misplaced under `plugins/` (reported).
    fn plugin_file(&mut self, path: &Path, relative: &[String], instance: &str) -> Result<Option<PluginFile>, ()> {
        match relative {
            [top, plugin] if top == "plugins" => {
                Ok(Some(PluginFile { plugin: plugin.clone(), instance: instance.to_string() }))
            }
            [top, ..] if top == "plugins" => {
                self.diagnostics.push(Diagnostic::global(format!(
                    "{}: files under plugins/ must be plugins/<Plugin>/<instance>.yaml",
                    path.display()
                )));
                Err(())
            }
            _ => Ok(None),
        }
    }

    fn file(&mut self, path: &Path, plugin: Option<PluginFile>) {
        let name = path.display().to_string();
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.diagnostics.push(Diagnostic::global(format!("cannot read {name}: {error}")));
                return;
            }
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(error) => {
                let location = utf8_error_location(&name, &bytes, error.valid_up_to());
                self.diagnostics.push(Diagnostic::at(
                    &location,
                    "the file is not valid UTF-8 text (configuration files must be UTF-8)",
                ));
                return;
            }
        };
        let node = match parse_str(&name, text, self.env) {
            Ok(node) => node,
            Err(diagnostics) => {
                self.diagnostics.extend(diagnostics);
                return;
            }
        };
        let node = match plugin {
            None => node,
            Some(plugin) => match self.connector(node, &plugin) {
                Some(node) => node,
                None => return,
            },
        };
        let conflicts = merge(&mut self.root, node);
        self.diagnostics.extend(conflicts);
    }

    /// Wraps a plugin file's contents as `connectors: {<Plugin>-<instance>: {type, …}}`.
    fn connector(&mut self, contents: Node, plugin: &PluginFile) -> Option<Node> {
        let file_start = contents.location.clone();
        let kind = plugin.plugin.to_lowercase();
        let name = format!("{}-{}", plugin.plugin, plugin.instance);
        let NodeKind::Map(mut entries) = contents.kind else {
            // The parser only returns maps; anything else would be a bug upstream.
            return None;
        };
        if let Some((key, _)) = entries.iter().find(|(key, _)| key.as_str() == Some("type")) {
            self.diagnostics.push(Diagnostic::at(
                &key.location,
                format!(
                    "'type' cannot be set in a plugin file: the folder plugins/{}/ makes this connector type '{kind}'",
                    plugin.plugin
                ),
            ));
            return None;
        }
        // The same instance may also be defined by a host-specific file
        // (`slashdot.yaml` and `slashdot.yaml.alpha`): only the first brings the type,
        // or the two would conflict over it.
        let type_known = self
            .root
            .get("connectors")
            .and_then(|connectors| connectors.entry(&name))
            .and_then(|connector| connector.entry("type"))
            .and_then(Node::as_str)
            == Some(kind.as_str());
        if !type_known {
            entries.insert(0, (Node::plain("type", file_start.clone()), Node::plain(kind, file_start.clone())));
        }
        let connector = Node::new(NodeKind::Map(entries), file_start.clone());
        let connectors =
            Node::new(NodeKind::Map(vec![(Node::plain(name, file_start.clone()), connector)]), file_start.clone());
        Some(Node::new(NodeKind::Map(vec![(Node::plain("connectors", file_start.clone()), connectors)]), file_start))
    }
}

/// Line and column (1-based, in characters) of the byte at `offset`, which follows
/// valid UTF-8.
fn utf8_error_location(file: &str, bytes: &[u8], offset: usize) -> Location {
    let before = String::from_utf8_lossy(&bytes[..offset.min(bytes.len())]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    Location::new(Arc::<str>::from(file), line, column)
}
