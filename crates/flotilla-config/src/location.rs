//! Where a piece of configuration was written, and the diagnostics that point there.
//!
//! Every error this crate reports is a [`Diagnostic`]: a message that says what was
//! expected, plus (almost always) the file, line and column it concerns, so that
//! `flotilla check` can print every mistake in the form editors understand
//! (`file:line:column: message`).

use std::fmt;
use std::sync::Arc;

/// A position in a configuration file. Lines and columns are 1-based, columns count
/// characters (not bytes), as editors do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file as it was named when loading (e.g. `conf/plugins/RSS/slashdot.yaml`).
    pub file: Arc<str>,
    /// 1-based line; 0 only for [`Location::unknown`].
    pub line: usize,
    /// 1-based column in characters; 0 only for [`Location::unknown`].
    pub column: usize,
}

impl Location {
    /// A location in `file`.
    pub fn new(file: impl Into<Arc<str>>, line: usize, column: usize) -> Location {
        Location { file: file.into(), line, column }
    }

    /// The location of a value that did not come from a YAML file (for instance a
    /// [`crate::Located`] decoded from JSON). Displays as `<unknown location>`.
    pub fn unknown() -> Location {
        Location { file: Arc::from(""), line: 0, column: 0 }
    }

    /// False for [`Location::unknown`].
    pub fn is_known(&self) -> bool {
        self.line != 0
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_known() {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        } else {
            f.write_str("<unknown location>")
        }
    }
}

/// One problem with the configuration: what was wrong and where.
///
/// Displays as `file:line:column: message`, or just the message when there is no
/// location (an unreadable directory, for instance, has no line to point at).
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{}", self.render())]
pub struct Diagnostic {
    /// Where the problem is, when it is inside a file.
    pub location: Option<Location>,
    /// What was wrong, saying what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `location`.
    pub fn at(location: &Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic { location: Some(location.clone()), message: message.into() }
    }

    /// A diagnostic without a position (I/O problems with whole files or directories).
    pub fn global(message: impl Into<String>) -> Diagnostic {
        Diagnostic { location: None, message: message.into() }
    }

    fn render(&self) -> String {
        match &self.location {
            Some(location) if location.is_known() => format!("{location}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

/// Orders diagnostics the way a reader goes through the configuration: files in the
/// order they first appear in `diagnostics` (which follows load order), then by line and
/// column inside each file. Diagnostics without a location keep their place at the front.
/// The sort is stable, so two messages at one position keep the order they were found in.
pub fn sort_diagnostics(diagnostics: &mut [Diagnostic]) {
    let mut files: Vec<Arc<str>> = Vec::new();
    for diagnostic in diagnostics.iter() {
        if let Some(location) = &diagnostic.location
            && !files.contains(&location.file)
        {
            files.push(location.file.clone());
        }
    }
    diagnostics.sort_by_key(|diagnostic| match &diagnostic.location {
        None => (0, 0, 0),
        Some(location) => {
            let rank = files.iter().position(|file| *file == location.file).map_or(0, |index| index + 1);
            (rank, location.line, location.column)
        }
    });
}
