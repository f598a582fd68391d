//! `flotilla completions SHELL` and `flotilla man`: shell completion scripts and manual
//! pages generated from the same clap definitions that parse the command line, so they
//! cannot drift from it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write `flotilla.1` and one `flotilla-COMMAND.1` per command into this directory
    /// instead of printing `flotilla.1`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "flotilla", &mut script);
    std::io::stdout().write_all(&script).context("cannot write the completion script")?;
    Ok(())
}

pub fn man(args: ManArgs, command: clap::Command) -> Outcome {
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page).context("cannot render the manual page")?;
        std::io::stdout().write_all(&page).context("cannot write the manual page")?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let command = command.version(env!("CARGO_PKG_VERSION"));
    write_pages(&dir, &command, "flotilla", "flotilla")?;
    Ok(())
}

/// Writes `PAGE.1` for `command` and, recursively, `PAGE-SUB.1` for its subcommands
/// (`help` excepted: clap adds it, it has no page of its own). `invocation` is what a
/// user types (`flotilla rules test`), for the synopsis.
fn write_pages(dir: &std::path::Path, command: &clap::Command, page: &str, invocation: &str) -> anyhow::Result<()> {
    let path = dir.join(format!("{page}.1"));
    let named = command.clone().display_name(page.to_string()).bin_name(invocation.to_string());
    let mut text = Vec::new();
    clap_mangen::Man::new(named).render(&mut text).context("cannot render the manual page")?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(dir, sub, &format!("{page}-{}", sub.get_name()), &format!("{invocation} {}", sub.get_name()))?;
    }
    Ok(())
}
