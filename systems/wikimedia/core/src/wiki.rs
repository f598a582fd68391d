//! The registry of Wikimedia wikis, so a definition can name its wiki the way its author
//! knows it: by database name (`enwiki`), by host (`en.wikipedia.org`) or in the original
//! dispatcher's `en_wikipedia` form. All three resolve to the same [`Wiki`], whose
//! database name is what definitions store, what events carry in their `wiki` field and
//! what the output formats print.
//!
//! The list is real data compiled into the binary (`data/wikis.tsv`, generated from
//! Wikimedia's own configuration; its header says from which commit). A wiki that is not
//! in the list is rejected, so a typo never becomes a definition that silently watches
//! nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

/// The embedded list: `dbname<TAB>host` lines, `#` comments.
const EMBEDDED: &str = include_str!("../data/wikis.tsv");

static EMBEDDED_WIKIS: LazyLock<Wikis> = LazyLock::new(|| {
    // The data is part of the source tree and `embedded_list_is_valid` checks it, so a
    // failure here is a build defect, not an input error.
    Wikis::parse(EMBEDDED).expect("data/wikis.tsv is valid (checked by the crate's tests)")
});

/// One wiki: its database name and its host. Cheap to copy; equality is by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wiki {
    dbname: &'static str,
    host: &'static str,
}

impl Wiki {
    /// The database name, e.g. `enwiki`: the canonical name everywhere in Flotilla.
    pub fn dbname(&self) -> &'static str {
        self.dbname
    }

    /// The host, e.g. `en.wikipedia.org`.
    pub fn host(&self) -> &'static str {
        self.host
    }
}

impl fmt::Debug for Wiki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wiki({})", self.dbname)
    }
}

impl fmt::Display for Wiki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dbname)
    }
}

/// A name that is not a known wiki in any of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown wiki '{name}'")]
pub struct UnknownWiki {
    /// The name as it was given.
    pub name: String,
}

/// Why a wiki list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WikiListError {
    /// A line is not `dbname<TAB>host` with two non-empty, lowercase, space-free parts.
    #[error("line {line}: expected 'dbname<TAB>host', found {found:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        found: String,
    },
    /// Two wikis would answer to the same name (database name, host or alias).
    #[error("line {line}: the name '{name}' already belongs to {other}")]
    Ambiguous {
        /// 1-based line number.
        line: usize,
        /// The name claimed twice.
        name: String,
        /// The database name of the wiki that claimed it first.
        other: String,
    },
}

/// The set of known wikis with O(1) lookup by any accepted name.
pub struct Wikis {
    list: Vec<Wiki>,
    /// Every accepted name, lowercase, to its position in `list`.
    by_name: HashMap<&'static str, usize>,
    /// The `en_wikipedia` forms, which are derived and so owned here.
    by_alias: HashMap<String, usize>,
}

impl fmt::Debug for Wikis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wikis({} wikis)", self.list.len())
    }
}

impl Wikis {
    /// The list compiled into the binary.
    pub fn embedded() -> &'static Wikis {
        &EMBEDDED_WIKIS
    }

    /// Reads a list in the embedded format: `dbname<TAB>host` per line, blank lines and
    /// lines starting with `#` ignored. The text must live for the whole program (the
    /// embedded list does; a list read at start-up can be leaked once).
    ///
    /// # Errors
    /// A malformed line, or a name (database name, host or `lang_family` alias) that
    /// two wikis would share.
    pub fn parse(text: &'static str) -> Result<Wikis, WikiListError> {
        let mut wikis = Wikis { list: Vec::new(), by_name: HashMap::new(), by_alias: HashMap::new() };
        for (number, line) in text.lines().enumerate() {
            let line_no = number + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || WikiListError::Malformed { line: line_no, found: line.to_string() };
            let (dbname, host) = line.split_once('\t').ok_or_else(malformed)?;
            let valid = |s: &str| {
                !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_uppercase()) && !s.contains('\t')
            };
            if !valid(dbname) || !valid(host) {
                return Err(malformed());
            }
            let position = wikis.list.len();
            wikis.list.push(Wiki { dbname, host });
            for name in [dbname, host] {
                wikis.claim_name(name, position, line_no)?;
            }
            wikis.claim_alias(alias_of_host(host), position, line_no)?;
        }
        Ok(wikis)
    }

    fn claim_name(&mut self, name: &'static str, position: usize, line: usize) -> Result<(), WikiListError> {
        if let Some(other) = self.owner_of(name).filter(|&other| other != position) {
            return Err(self.ambiguous(name, other, line));
        }
        self.by_name.insert(name, position);
        Ok(())
    }

    fn claim_alias(&mut self, alias: String, position: usize, line: usize) -> Result<(), WikiListError> {
        if let Some(other) = self.owner_of(&alias).filter(|&other| other != position) {
            return Err(self.ambiguous(&alias, other, line));
        }
        self.by_alias.insert(alias, position);
        Ok(())
    }

    fn owner_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).or_else(|| self.by_alias.get(name)).copied()
    }

    fn ambiguous(&self, name: &str, other: usize, line: usize) -> WikiListError {
        WikiListError::Ambiguous { line, name: name.to_string(), other: self.list[other].dbname.to_string() }
    }

    /// Finds a wiki by database name, host or `lang_family` alias (`en_wikipedia`,
    /// `zh_min_nan_wikipedia`, `commons_wikimedia`). Letter case and surrounding spaces
    /// do not matter, nor do `-` versus `_` in the alias form.
    ///
    /// # Errors
    /// [`UnknownWiki`] with the name as given.
    pub fn resolve(&self, name: &str) -> Result<Wiki, UnknownWiki> {
        // The common case, a canonical database name, costs one lookup and no allocation.
        if let Some(&position) = self.by_name.get(name) {
            return Ok(self.list[position]);
        }
        let lowered = name.trim().to_lowercase();
        let found = self.by_name.get(lowered.as_str()).or_else(|| self.by_alias.get(&lowered.replace('-', "_")));
        match found {
            Some(&position) => Ok(self.list[position]),
            None => Err(UnknownWiki { name: name.to_string() }),
        }
    }

    /// The wiki with exactly this database name, as events carry it.
    pub fn by_dbname(&self, dbname: &str) -> Option<Wiki> {
        let position = *self.by_name.get(dbname)?;
        let wiki = self.list[position];
        (wiki.dbname == dbname).then_some(wiki)
    }

    /// How many wikis the list holds.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every wiki, in list order.
    pub fn iter(&self) -> impl Iterator<Item = Wiki> + '_ {
        self.list.iter().copied()
    }
}

/// The original dispatcher's name for a wiki: the host without `.org`, with `.` and `-`
/// written as `_` (`en.wikipedia.org` is `en_wikipedia`).
fn alias_of_host(host: &str) -> String {
    host.strip_suffix(".org").unwrap_or(host).replace(['.', '-'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, expect: Option<&str>) {
        let got = Wikis::embedded().resolve(name).ok().map(|w| w.dbname());
        assert_eq!(got, expect, "resolving {name:?}");
    }

    #[test]
    fn embedded_list_is_valid() {
        let wikis = Wikis::parse(EMBEDDED).expect("embedded list parses");
        assert!(wikis.len() > 900, "only {} wikis", wikis.len());
    }

    #[test]
    fn names_in_every_form_resolve_to_the_same_wiki() {
        check("enwiki", Some("enwiki"));
        check("en.wikipedia.org", Some("enwiki"));
        check("en_wikipedia", Some("enwiki"));
        check("EN.Wikipedia.org", Some("enwiki"));
        check(" enwiki ", Some("enwiki"));
        check("zh_min_nanwiki", Some("zh_min_nanwiki"));
        check("zh-min-nan.wikipedia.org", Some("zh_min_nanwiki"));
        check("zh_min_nan_wikipedia", Some("zh_min_nanwiki"));
        check("zh-min-nan_wikipedia", Some("zh_min_nanwiki"));
        check("wikidatawiki", Some("wikidatawiki"));
        check("www.wikidata.org", Some("wikidatawiki"));
        check("www_wikidata", Some("wikidatawiki"));
        check("commons.wikimedia.org", Some("commonswiki"));
        check("commons_wikimedia", Some("commonswiki"));
        check("meta.wikimedia.org", Some("metawiki"));
        check("www.mediawiki.org", Some("mediawikiwiki"));
        check("species.wikimedia.org", Some("specieswiki"));
        check("be-tarask.wikipedia.org", Some("be_x_oldwiki"));
        check("de.wiktionary.org", Some("dewiktionary"));
        check("fr_wikisource", Some("frwikisource"));
        check("en.wikivoyage.org", Some("enwikivoyage"));
        check("ko.wikipedia.org", Some("kowiki"));
        check("", None);
        check("enwikii", None);
        check("en.wikipedia.com", None);
        check("wikipedia", None);
    }

    #[test]
    fn by_dbname_is_exact() {
        let wikis = Wikis::embedded();
        assert_eq!(wikis.by_dbname("kowiki").map(|w| w.host()), Some("ko.wikipedia.org"));
        assert_eq!(wikis.by_dbname("ko.wikipedia.org"), None);
        assert_eq!(wikis.by_dbname("KOWIKI"), None);
    }

    #[test]
    fn unknown_wiki_keeps_the_name_as_given() {
        let err = Wikis::embedded().resolve("Nowhere Wiki").unwrap_err();
        assert_eq!(err.name, "Nowhere Wiki");
    }

    #[track_caller]
    fn check_list(text: &'static str, expect: Result<usize, &str>) {
        let got = Wikis::parse(text).map(|w| w.len()).map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string));
    }

    #[test]
    fn list_format_errors_say_where() {
        check_list("# c\n\nawiki\ta.example.org\n", Ok(1));
        check_list("awiki a.example.org\n", Err("line 1: expected 'dbname<TAB>host', found \"awiki a.example.org\""));
        check_list("awiki\t\n", Err("line 1: expected 'dbname<TAB>host', found \"awiki\\t\""));
        check_list(
            "awiki\ta.example.org\nbwiki\ta.example.org\n",
            Err("line 2: the name 'a.example.org' already belongs to awiki"),
        );
        check_list(
            "a_example\tz.org\nbwiki\ta.example.org\n",
            Err("line 2: the name 'a_example' already belongs to a_example"),
        );
        check_list(
            "Awiki\ta.example.org\n",
            Err("line 1: expected 'dbname<TAB>host', found \"Awiki\\ta.example.org\""),
        );
    }
}
