//! Shell completions and man pages, generated from the clap definitions in
//! [`crate::args`] so they cannot drift from `--help`. The generated files
//! are committed under `packaging/`; a test checks they are up to date.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Writes `completions/` and `man/` under `packaging_dir` and returns the
/// files written, relative to it.
pub fn generate(packaging_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let completions = packaging_dir.join("completions");
    let man = packaging_dir.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    let mut written = Vec::new();

    for shell in SHELLS {
        let mut cmd = crate::args::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "otpgate", &completions)?;
        written.push(path);
    }

    // One page per command, nested ones included: otpgate.1,
    // otpgate-enroll.1, otpgate-policy-explain.1, ... A group's page lists
    // its commands as `otpgate-policy-explain(1)`, so those pages must exist.
    let mut cmd = crate::args::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let mut todo = vec![cmd];
    while let Some(page) = todo.pop() {
        todo.extend(page.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        pages.push(page);
    }
    for page in pages {
        let path = clap_mangen::Man::new(page)
            .manual("otpgate manual")
            .generate_to(&man)?;
        written.push(path);
    }

    Ok(written
        .into_iter()
        .map(|p| {
            p.strip_prefix(packaging_dir)
                .map(Path::to_path_buf)
                .unwrap_or(p)
        })
        .collect())
}
