//! `examples/monitors.yaml` must stay a working configuration: it is loaded through
//! the real configuration loader, every connector section is built by this crate's
//! connector types (as the node builds them), the node's rules compile, and one of its
//! monitors runs with its own rules.

mod common;

use std::path::{Path, PathBuf};

use common::{Harness, QUEUE};
use flotilla_config::{Node, decode_at};
use flotilla_connector::{Connector, ConnectorSection, split_section};
use flotilla_reactor::{CompileContext, NoFiles, RuleConfig};

/// The keys the node takes out of every connector section before `build` sees it.
const COMMON_KEYS: [&str; 5] = ["type", "enabled", "enable", "queue", "restart"];

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/monitors.yaml")
}

fn load() -> Node {
    let env = |name: &str| std::env::var(name).ok();
    match flotilla_config::load(&example_path(), "examplehost", &env) {
        Ok(tree) => tree,
        Err(errors) => panic!("the example does not load: {errors:#?}"),
    }
}

/// Builds every connector of the example, returning (name, type, connector).
fn build_all(tree: &Node) -> Vec<(String, String, Box<dyn Connector>)> {
    let types = flotilla_monitors::connector_types();
    let connectors = tree.entry("connectors").and_then(Node::as_map).expect("the example has connectors");
    let mut built = Vec::new();
    let mut problems = Vec::new();
    for (key, section) in connectors {
        let name = key.as_str().unwrap().to_string();
        let (common, rest) = split_section(section, &COMMON_KEYS);
        let kind =
            common.entry("type").and_then(Node::as_str).expect("every connector has a type").to_ascii_lowercase();
        let connector_type =
            types.iter().find(|t| t.name == kind).unwrap_or_else(|| panic!("{name}: unknown type {kind}"));
        let section = ConnectorSection { name: &name, node: &rest, path: format!("connectors.{name}") };
        match (connector_type.build)(&section) {
            Ok(connector) => built.push((name, kind, connector)),
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
    }
    assert!(problems.is_empty(), "the example's connectors do not build:\n{}", problems.join("\n"));
    built
}

#[test]
fn the_example_loads_and_every_section_builds() {
    let tree = load();
    let built = build_all(&tree);
    let mut kinds: Vec<&str> = built.iter().map(|(_, kind, _)| kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["command", "diskspace", "filetail", "pulse", "uptime"],
        "the example shows the offline monitors"
    );

    let rules_node = tree.entry("rules").expect("the example has rules");
    let (rules, errors) = decode_at::<Vec<RuleConfig>>(rules_node, "rules");
    assert!(errors.is_empty(), "{errors:#?}");
    let ctx = CompileContext { host: "examplehost", base_dir: Path::new("."), loader: &NoFiles };
    let tree = flotilla_reactor::compile(&rules.unwrap(), &ctx).expect("the example's rules compile");
    assert!(tree.uses_plugin("SQL") && tree.uses_plugin("Console"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_command_monitor_runs_its_own_rules() {
    let tree = load();
    let (name, kind, connector) = build_all(&tree)
        .into_iter()
        .find(|(name, _, _)| name == "Command-uptime")
        .expect("Command-uptime is in the example");
    let h = Harness::new().await;
    let task = h.spawn(connector, &name, &kind);
    let queued = h.wait_for(QUEUE, 1).await;
    h.shutdown.cancel();
    task.await.unwrap().unwrap();
    let subject = queued[0].get_str("subject").unwrap();
    let seconds = queued[0].get_str("up_seconds").expect("CaptureData set up_seconds");
    assert!(seconds.parse::<u64>().is_ok(), "{seconds}");
    assert_eq!(subject, format!("up for {seconds} seconds"));
    assert_eq!(queued[0].get_str("status"), Some("OK"));
}

#[test]
fn the_examples_in_docs_monitors_md_build() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/monitors.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let blocks: Vec<&str> = text.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert!(blocks.len() >= 9, "one example per monitor at least, found {}", blocks.len());
    let mut built = Vec::new();
    for block in blocks {
        let tree = common::yaml("docs/monitors.md", block);
        // A block is either a whole configuration or just connector sections.
        let connectors = tree.entry("connectors").cloned().unwrap_or(tree);
        let wrapped = Node::new(
            flotilla_config::NodeKind::Map(vec![(Node::plain("connectors", connectors.location.clone()), connectors)]),
            flotilla_config::Location::new("docs/monitors.md", 1, 1),
        );
        built.extend(build_all(&wrapped).into_iter().map(|(_, kind, _)| kind));
    }
    built.sort_unstable();
    built.dedup();
    assert_eq!(built, ["command", "diskspace", "filetail", "pulse", "rss", "uptime", "webfetch", "webmatches"]);
}
