//! `packaging/flotilla.service`, the systemd unit: systemd's own checker accepts it, its
//! hardening keeps the exposure low, and its `ExecStart` and `ExecStartPre` lines run
//! against the example configuration as they are written.

use std::process::Command;

use crate::support::*;

const UNIT: &str = include_str!("../../../../packaging/flotilla.service");

/// The unit with `/usr/bin/flotilla` replaced by this test run's binary, in a directory.
fn unit_for_this_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("flotilla.service");
    std::fs::write(&path, UNIT.replace("/usr/bin/flotilla", binary())).unwrap();
    path
}

#[test]
fn systemd_accepts_the_unit_and_rates_its_exposure_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_binary(dir.path());
    let verify = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output();
    let Ok(verify) = verify else { panic!("systemd-analyze is needed (apt-get install systemd)") };
    assert!(verify.status.success() && stderr(&verify).trim().is_empty(), "{}", stderr(&verify));
    let security = Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&unit).output().unwrap();
    let text = stdout(&security);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for flotilla.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure {level}:\n{text}");
    assert!(UNIT.contains("\nType=notify\n"), "the node notifies systemd when ready");
}

#[test]
fn the_units_commands_run_as_written() {
    let exec = |key: &str| -> Vec<String> {
        let line = UNIT.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    let start = exec("ExecStart=");
    assert_eq!(start[..4], ["/usr/bin/flotilla", "run", "-c", "/etc/flotilla/flotilla.yaml"]);
    let check = exec("ExecStartPre=");
    assert_eq!(check[..4], ["/usr/bin/flotilla", "check", "-c", "/etc/flotilla/flotilla.yaml"]);
    // docs/service.md has the example configuration copied there: it passes check.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart.yaml");
    let out = Command::new(binary()).args(["check", "-c", example]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
