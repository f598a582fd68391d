//! Reloading the configuration while the node runs (`SIGHUP`, `flotilla reload`).
//!
//! The node reads its configuration again with the same loader it started with. A
//! configuration with any error is refused whole, with every error, and the running
//! one stays in force. Otherwise:
//!
//! - **rules** and the reactor's settings are replaced: the reactor takes them from
//!   its next batch on;
//! - **connectors** are compared by their section as written (after includes and
//!   variables): a new one starts, a removed one stops, a changed one restarts with its
//!   new settings, and one that did not change keeps running (its connections too). In
//!   a fleet, a changed connector restarts under the lease it holds, and a new one is
//!   placed like any other;
//! - what only a restart can apply (the `node`, `bus`, `store` and `http` sections,
//!   a service's sections, a service that would start or stop) is left as it is and
//!   named in the report, so the operator knows a restart is due.
//!
//! A connector's files read at build time (a monitor's `react:` rules file, say) count
//! as changed only when its section changed.

use std::collections::BTreeMap;
use std::fmt;

use flotilla_config::Diagnostic;
use flotilla_connector::{ConnectorState, NodeServices, StatusBoard};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConnectorPlan};
use crate::supervisor;

/// Reads the configuration again, as the node was started with it.
pub type Loader = Box<dyn Fn() -> Result<Config, Vec<Diagnostic>> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Connectors new in the configuration, started (or placed, in a fleet).
    pub started: Vec<String>,
    /// Connectors no longer in the configuration, stopped.
    pub stopped: Vec<String>,
    /// Connectors whose settings changed, restarted with the new ones.
    pub restarted: Vec<String>,
    /// Connectors left running as they were.
    pub unchanged: Vec<String>,
    /// Top-level rules now in force.
    pub rules: usize,
    /// Changes that were not applied because only a restart can apply them.
    pub needs_restart: Vec<String>,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| if names.is_empty() { "none".to_string() } else { names.join(", ") };
        writeln!(f, "configuration reloaded; {} rules in force", self.rules)?;
        writeln!(f, "connectors started: {}", list(&self.started))?;
        writeln!(f, "connectors stopped: {}", list(&self.stopped))?;
        writeln!(f, "connectors restarted: {}", list(&self.restarted))?;
        write!(f, "connectors unchanged: {}", list(&self.unchanged))?;
        for change in &self.needs_restart {
            write!(f, "\nnot applied until a restart: {change}")?;
        }
        Ok(())
    }
}

/// Names what changed between two configurations that a reload cannot apply.
pub fn needs_restart(running: &[(String, String)], services: &[&str], new: &Config) -> Vec<String> {
    let mut changes: Vec<String> = new
        .fixed
        .iter()
        .filter(|(what, text)| running.iter().any(|(w, t)| w == what && t != text))
        .map(|(what, _)| format!("{what} changed"))
        .collect();
    for plan in &new.services {
        if !services.contains(&plan.name) {
            changes.push(format!("the {} service would start", plan.name));
        }
    }
    for name in services {
        if !new.services.iter().any(|plan| plan.name == *name) {
            changes.push(format!("the {name} service would stop"));
        }
    }
    changes
}

/// The connectors a node runs itself (outside a fleet), by name.
pub struct LocalConnectors {
    running: BTreeMap<String, Local>,
    shared: NodeServices,
    board: StatusBoard,
    intake: CancellationToken,
}

struct Local {
    fingerprint: String,
    /// Its stop token and supervisor task; `None` when it does not run here (disabled,
    /// or its `nodes:` list leaves this node out).
    task: Option<(CancellationToken, JoinHandle<()>)>,
}

impl LocalConnectors {
    pub fn new(shared: NodeServices, board: StatusBoard, intake: CancellationToken) -> LocalConnectors {
        LocalConnectors { running: BTreeMap::new(), shared, board, intake }
    }

    /// Registers the connector and starts it under the supervisor unless it is
    /// disabled or meant for other nodes.
    pub fn start(&mut self, plan: &ConnectorPlan) {
        let runs_here = plan.nodes.as_ref().is_none_or(|nodes| nodes.contains(&self.shared.node_name));
        let task = if !plan.enabled {
            self.board.register(&plan.name, &plan.kind, ConnectorState::Stopped);
            None
        } else if !runs_here {
            tracing::info!(connector = %plan.name, "The connector's nodes: list does not name this node; it does not run here.");
            self.board.register(&plan.name, &plan.kind, ConnectorState::Stopped);
            None
        } else {
            self.board.register(&plan.name, &plan.kind, ConnectorState::Starting);
            let stop = self.intake.child_token();
            let ctx = self.shared.connector(&plan.name, &plan.kind, &plan.queue, stop.clone());
            let task = tokio::spawn(supervisor::supervise(
                plan.connector.clone(),
                ctx,
                plan.restart.clone(),
                self.board.clone(),
            ));
            Some((stop, task))
        };
        self.running.insert(plan.name.clone(), Local { fingerprint: plan.fingerprint.clone(), task });
    }

    /// Stops a connector (within its grace period) and forgets it.
    async fn stop(&mut self, name: &str) {
        if let Some(Local { task: Some((stop, task)), .. }) = self.running.remove(name) {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Applies a reloaded configuration's connectors (see the module docs).
    pub async fn apply(&mut self, plans: &[ConnectorPlan], report: &mut ReloadReport) {
        let gone: Vec<String> =
            self.running.keys().filter(|name| !plans.iter().any(|p| &p.name == *name)).cloned().collect();
        for name in gone {
            self.stop(&name).await;
            self.board.remove(&name);
            report.stopped.push(name);
        }
        for plan in plans {
            match self.running.get(&plan.name) {
                Some(local) if local.fingerprint == plan.fingerprint => report.unchanged.push(plan.name.clone()),
                Some(_) => {
                    self.stop(&plan.name).await;
                    self.start(plan);
                    report.restarted.push(plan.name.clone());
                }
                None => {
                    self.start(plan);
                    report.started.push(plan.name.clone());
                }
            }
        }
    }

    /// Waits for every connector's task (after the intake token was cancelled).
    pub async fn wait(self) {
        for (_, local) in self.running {
            if let Some((_, task)) = local.task {
                let _ = task.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_change_and_what_waits_for_a_restart() {
        let report = ReloadReport {
            started: vec!["rss".into()],
            stopped: vec![],
            restarted: vec!["irc".into(), "pulse".into()],
            unchanged: vec!["mail".into()],
            rules: 3,
            needs_restart: vec!["the http section changed".into()],
        };
        assert_eq!(
            report.to_string(),
            "configuration reloaded; 3 rules in force\n\
             connectors started: rss\n\
             connectors stopped: none\n\
             connectors restarted: irc, pulse\n\
             connectors unchanged: mail\n\
             not applied until a restart: the http section changed"
        );
    }
}
