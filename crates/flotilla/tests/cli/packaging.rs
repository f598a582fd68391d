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

/// `scripts/deb` packages this run's binary; dpkg installs it into a throwaway root
/// (its database there, the maintainer scripts run as they would on a host without
/// systemd), the installed files are where the unit and the docs say, the installed
/// binary starts a node from the installed configuration as the unit's `ExecStart`
/// does, and removing the package keeps the edited configuration (a conffile).
#[test]
fn the_debian_package_installs_and_its_binary_runs_the_installed_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/deb");
    let built = Command::new(script)
        .args(["--binary", binary(), "--out"])
        .arg(dir.path())
        .env("DEB_COMPRESSION", "none")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let package = std::path::PathBuf::from(stdout(&built).trim());
    let info = Command::new("dpkg-deb").arg("--info").arg(&package).output().unwrap();
    let control = stdout(&info);
    for field in ["Package: flotilla", "Version: 0.1.0", "Depends: libc6 (>= 2."] {
        assert!(control.contains(field), "{control}");
    }

    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let out = Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends", "--log=/dev/null"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg {args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    dpkg(&["-i", package.to_str().unwrap()]);
    assert!(dpkg(&["-s", "flotilla"]).contains("Status: install ok installed"));
    for file in [
        "usr/bin/flotilla",
        "lib/systemd/system/flotilla.service",
        "etc/flotilla/flotilla.yaml",
        "usr/share/man/man1/flotilla.1.gz",
        "usr/share/man/man1/flotilla-run.1.gz",
        "usr/share/bash-completion/completions/flotilla",
        "usr/share/doc/flotilla/copyright",
    ] {
        assert!(root.join(file).is_file(), "{file} is not installed");
    }
    assert_eq!(std::fs::read_to_string(root.join("lib/systemd/system/flotilla.service")).unwrap(), UNIT);

    // The unit's ExecStart, with the installed paths (the HTTP port moved to a free one
    // so tests can run side by side), in a working directory like StateDirectory's.
    let installed = root.join("usr/bin/flotilla");
    let config = std::fs::read_to_string(root.join("etc/flotilla/flotilla.yaml")).unwrap();
    assert!(config.contains("listen: 127.0.0.1:8080"));
    std::fs::write(root.join("etc/flotilla/flotilla.yaml"), config.replace("127.0.0.1:8080", "127.0.0.1:0")).unwrap();
    let state = dir.path().join("var-lib-flotilla");
    std::fs::create_dir_all(&state).unwrap();
    let check =
        Command::new(&installed).args(["check", "-c"]).arg(root.join("etc/flotilla/flotilla.yaml")).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let node = NodeProcess::start_program(&installed, &root.join("etc/flotilla/flotilla.yaml"), |command| {
        command.current_dir(&state);
    });
    assert_eq!(http_get(&node.http, "/healthz"), (200, "ok".to_string()));
    assert!(node.signal_and_wait(libc::SIGTERM).success());
    assert!(state.join("flotilla-data").is_dir(), "the data lives under the working directory");

    // Removing keeps the configuration the operator edited.
    dpkg(&["-r", "flotilla"]);
    assert!(!installed.exists());
    assert!(root.join("etc/flotilla/flotilla.yaml").is_file());
}
