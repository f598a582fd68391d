//! What an operator installs beside the binary: shell completions and manual pages, both
//! generated from the command-line definitions; and `FLOTILLA_CONFIG`, the environment
//! form of `-c`.

use std::process::Command;

use crate::support::*;

#[test]
fn bash_completes_commands_and_their_subcommands() {
    let out = Command::new(binary()).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("flotilla.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Ask bash's completion function what it offers, as bash would when TAB is pressed.
    let complete = |words: &str, current: usize| {
        let program = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={current}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _flotilla flotilla \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").arg("-c").arg(program).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).split_whitespace().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("flotilla ru", 1), ["run", "rules"]);
    let offered = complete("flotilla rules ''", 2);
    assert!(offered.contains(&"test".to_string()), "{offered:?}");
    let offered = complete("flotilla tail --", 2);
    for flag in ["--queue", "--from", "--where", "--config"] {
        assert!(offered.contains(&flag.to_string()), "{flag} not in {offered:?}");
    }
    // Every shell clap knows is offered; an unknown one is a usage error.
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(binary()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && out.stdout.len() > 100, "{shell}: {}", stderr(&out));
    }
    let out = Command::new(binary()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid value 'tcsh'"), "{}", stderr(&out));
}

#[test]
fn man_writes_a_page_per_command_that_man_renders() {
    let out = Command::new(binary()).arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(".TH flotilla 1"), "{}", stdout(&out));

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary()).args(["man", "--out"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut pages: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    for page in
        ["flotilla.1", "flotilla-run.1", "flotilla-check.1", "flotilla-rules-test.1", "flotilla-dispatcher-cli.1"]
    {
        assert!(pages.contains(&page.to_string()), "{page} not in {pages:?}");
    }
    // Rendered as a person reads it (groff is what man uses).
    let rendered = Command::new("groff")
        .args(["-man", "-Tascii", "-P-cbou"])
        .arg(dir.path().join("flotilla-rules-test.1"))
        .output();
    let Ok(rendered) = rendered else {
        panic!("groff is needed to render manual pages (apt-get install groff-base)");
    };
    // groff justifies lines: compare with runs of spaces folded.
    let text = stdout(&rendered).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("flotilla rules test [-c|--config]"), "{text}");
    assert!(text.contains("FLOTILLA_CONFIG"), "{text}");
}

#[test]
fn flotilla_config_names_the_configuration_when_c_is_not_given() {
    let ws = Workspace::new("connectors:\n  Pulse-a:\n    type: pulse\n    delay: soon\n");
    let elsewhere = tempfile::tempdir().unwrap();
    let check = |config: Option<&std::path::Path>| {
        let mut command = Command::new(binary());
        command.arg("check").current_dir(elsewhere.path()).env("FLOTILLA_LOG", "warn");
        if let Some(path) = config {
            command.env("FLOTILLA_CONFIG", path);
        }
        command.output().unwrap()
    };
    let out = check(Some(&ws.config()));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("connectors.Pulse-a.delay: invalid duration 'soon'"), "{}", stderr(&out));
    // Without it, the built-in defaults (valid) are used.
    let out = check(None);
    assert!(out.status.success(), "{}", stderr(&out));
    // -c wins over the environment.
    let good = Workspace::new("");
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(good.config())
        .env("FLOTILLA_CONFIG", ws.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
