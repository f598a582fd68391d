//! The binary as shipped (`scripts/dist`): debug information split into `flotilla.debug`
//! by `scripts/split-debug`. Tested on this test run's own binary: the split one has no
//! debug sections and no symbols, still runs, and an address in it still resolves to a
//! function, file and line through the `.debug` file beside it.

use std::process::Command;

use crate::support::*;

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_split_binary_has_no_debug_info_and_still_symbolises_through_its_debug_file() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/split-debug");
    let out = Command::new(script).arg(binary()).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shipped = dir.path().join("flotilla");
    let debug = dir.path().join("flotilla.debug");
    let shipped_text = shipped.to_str().unwrap();

    let sections = tool("readelf", &["-S", "-W", shipped_text]);
    for dwarf in [".debug_info", ".debug_line", ".debug_str"] {
        assert!(!sections.contains(dwarf), "{dwarf} in {sections}");
    }
    assert!(!sections.contains(".symtab"), "{sections}");
    assert!(sections.contains(".gnu_debuglink"), "{sections}");
    let original = std::fs::metadata(binary()).unwrap().len();
    let split = std::fs::metadata(&shipped).unwrap().len();
    assert!(split * 2 < original, "{split} bytes split, {original} before");

    let version = tool(shipped_text, &["--version"]);
    assert!(version.starts_with("flotilla "), "{version}");

    // An address of `flotilla::main`, from the symbols the .debug file kept…
    let symbols = tool("nm", &["-C", debug.to_str().unwrap()]);
    let address = symbols
        .lines()
        .find(|l| l.ends_with(" flotilla::main"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("flotilla::main is not among the .debug file's symbols"));
    // …resolves through the shipped binary's debug link.
    let resolved = tool("addr2line", &["-f", "-C", "-e", shipped_text, &format!("0x{address}")]);
    assert!(resolved.starts_with("flotilla::main\n"), "{resolved}");
    assert!(resolved.contains("crates/flotilla/src/main.rs:"), "{resolved}");

    // Without the .debug file, the same address says nothing.
    std::fs::remove_file(&debug).unwrap();
    let resolved = tool("addr2line", &["-f", "-C", "-e", shipped_text, &format!("0x{address}")]);
    assert!(resolved.starts_with("??"), "{resolved}");
}
