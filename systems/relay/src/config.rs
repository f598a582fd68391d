//! The `groups:` section (SPEC §8): each group names the connectors it relays between
//! and its censor's patterns.
//!
//! ```yaml
//! groups:
//!   nuremberg:
//!     connectors: [irc-nbg, mail-nbg]
//!     censor:
//!       trigger: ["kontroll?e", "\\bs\\d\\b", "u\\d\\d?"]
//!       blocklist: ["nazi"]
//! ```
//!
//! Every mistake is reported with its place: a group name that cannot name the queue
//! `review.<group>`, a connector that is not configured, listed twice or of a type
//! the relay cannot tell reports of, fewer than two connectors, and each refused
//! pattern with the reason.

use std::collections::BTreeMap;

use flotilla_config::{Diagnostic, Located};
use flotilla_core::censor::{Censor, CensorPatterns};
use flotilla_service::{ConfiguredConnector, ServiceConfig};
use serde::Deserialize;

use crate::report::ConnectorKind;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    connectors: Option<Vec<Located<String>>>,
    censor: Option<RawCensor>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCensor {
    trigger: Option<Vec<Located<String>>>,
    blocklist: Option<Vec<Located<String>>>,
}

/// One member of a group: a configured connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub connector: String,
    pub kind: ConnectorKind,
    /// The queue it emits into, where its reports are read.
    pub queue: String,
}

/// One group, checked.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub name: String,
    pub members: Vec<Member>,
    /// The patterns as configured (the store may hold newer ones set at run time).
    pub patterns: CensorPatterns,
}

/// Decodes `groups:`; an empty list when absent.
pub fn decode(config: &ServiceConfig<'_>) -> Result<Vec<GroupSettings>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let raw: BTreeMap<String, RawGroup> = config.decode("groups", &mut problems);
    let section = config.section("groups");
    let mut groups = Vec::new();
    for (name, group) in raw {
        let place = section.and_then(|s| s.entry_with_key(&name)).map(|(key, _)| key.location.clone());
        let here = |message: String| match &place {
            Some(location) => Diagnostic::at(location, message),
            None => Diagnostic::global(message),
        };
        if !flotilla_bus::valid_name(&format!("review.{name}")) {
            problems.push(here(format!(
                "groups.{name}: a group's name must be letters, digits, '.', '_' or '-' (it names the queue review.{name})"
            )));
            continue;
        }
        let mut members: Vec<Member> = Vec::new();
        for connector in group.connectors.iter().flatten() {
            let at =
                |message: String| Diagnostic::at(&connector.location, format!("groups.{name}.connectors: {message}"));
            let Some(configured) = config.connectors.iter().find(|c| c.name == connector.value) else {
                problems.push(at(format!("'{}' is not a configured connector", connector.value)));
                continue;
            };
            if members.iter().any(|m| m.connector == connector.value) {
                problems.push(at(format!("'{}' is listed twice", connector.value)));
                continue;
            }
            match member(configured) {
                Ok(m) => members.push(m),
                Err(message) => problems.push(at(message)),
            }
        }
        if members.len() < 2 && group.connectors.as_ref().is_none_or(|c| c.len() < 2) {
            problems.push(here(format!("groups.{name}.connectors: a group relays between at least two connectors")));
        }
        let censor = group.censor.unwrap_or_default();
        let located: Vec<&Located<String>> =
            censor.trigger.iter().flatten().chain(censor.blocklist.iter().flatten()).collect();
        let patterns = CensorPatterns {
            trigger: censor.trigger.iter().flatten().map(|p| p.value.clone()).collect(),
            blocklist: censor.blocklist.iter().flatten().map(|p| p.value.clone()).collect(),
        };
        if let Err(error) = Censor::new(patterns.clone()) {
            for problem in error.problems {
                let offset = match problem.list {
                    flotilla_core::censor::PatternList::Trigger => 0,
                    flotilla_core::censor::PatternList::Blocklist => patterns.trigger.len(),
                };
                let message = format!("groups.{name}.censor.{problem}");
                problems.push(match located.get(offset + problem.index) {
                    Some(p) => Diagnostic::at(&p.location, message),
                    None => here(message),
                });
            }
        }
        groups.push(GroupSettings { name, members, patterns });
    }
    if problems.is_empty() { Ok(groups) } else { Err(problems) }
}

fn member(configured: &ConfiguredConnector) -> Result<Member, String> {
    let kind = ConnectorKind::of(&configured.kind).ok_or_else(|| {
        format!(
            "'{}' is a {} connector; groups relay between {} connectors",
            configured.name,
            configured.kind,
            ConnectorKind::NAMES.join(", ")
        )
    })?;
    Ok(Member { connector: configured.name.clone(), kind, queue: configured.queue.clone() })
}
