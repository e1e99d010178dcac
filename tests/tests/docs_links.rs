//! The documentation a newcomer reads: the README is a front page (short),
//! the reference lives in docs/, and every relative link in them leads to a
//! file that is in the repository. Needs no root, no bus and no binary.

use std::fs;
use std::path::{Path, PathBuf};

use otpgate_tests::repo_root;

/// The front page stays a front page; the reference belongs in docs/.
const README_MAX_LINES: usize = 250;
/// The architecture in one page.
const DESIGN_MAX_LINES: usize = 150;
/// The documents the README promises.
const DOCS: [&str; 4] = ["design.md", "protocol.md", "operations.md", "security.md"];
/// Places a reader of the repository cannot follow.
const FORBIDDEN: [&str; 3] = ["SPEC.md", "FIELD-NOTES", "../shared"];

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ is missing")
        .map(|e| e.expect("reading docs/").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Link targets outside fenced code blocks: inline `[text](target)` and
/// reference definitions `[label]: target`. Each with its line number.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end + 1..];
        }
        if let Some(def) = trimmed.strip_prefix('[') {
            if let Some((_, target)) = def.split_once("]:") {
                if let Some(t) = target.split_whitespace().next() {
                    out.push((i + 1, t.to_string()));
                }
            }
        }
    }
    out
}

/// The file part of a relative link, or None for a web link or an anchor.
fn local_path(target: &str) -> Option<&str> {
    let target = target.split_whitespace().next().unwrap_or("");
    let target = target.trim_start_matches('<').trim_end_matches('>');
    if target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:")
    {
        return None;
    }
    Some(target.split('#').next().unwrap_or(target))
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = fs::canonicalize(repo_root()).expect("repository root");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documents(&root) {
        let text = fs::read_to_string(&file).expect("read document");
        let dir = file.parent().expect("document directory");
        for (line, target) in link_targets(&text) {
            let Some(path) = local_path(&target) else {
                continue;
            };
            checked += 1;
            let shown = format!("{}:{line}: ({target})", file.display());
            match fs::canonicalize(dir.join(path)) {
                Ok(p) if p.starts_with(&root) => {}
                Ok(p) => broken.push(format!("{shown} leaves the repository: {}", p.display())),
                Err(e) => broken.push(format!("{shown}: {e}")),
            }
        }
    }
    println!("{checked} relative links checked");
    assert!(checked > 0, "no relative link found: is the parser broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_page_and_the_docs_exist() {
    let root = repo_root();
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    println!("README.md: {lines} lines");
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines: the front page must stay under {README_MAX_LINES}; move reference material into docs/"
    );
    for doc in DOCS {
        let path = root.join("docs").join(doc);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("docs/{doc}: {} lines", text.lines().count());
        assert!(
            readme.contains(&format!("](docs/{doc})")),
            "README.md does not link to docs/{doc}"
        );
    }
    let design = fs::read_to_string(root.join("docs/design.md")).expect("docs/design.md");
    let design_lines = design.lines().count();
    assert!(
        design_lines <= DESIGN_MAX_LINES,
        "docs/design.md has {design_lines} lines: keep the architecture to one page ({DESIGN_MAX_LINES})"
    );
}

#[test]
fn no_document_points_outside_the_repository() {
    let root = repo_root();
    let mut found = Vec::new();
    for file in documents(&root) {
        let text = fs::read_to_string(&file).expect("read document");
        for (i, line) in text.lines().enumerate() {
            for word in FORBIDDEN {
                if line.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "documents name files readers do not have:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_link_parser_finds_inline_and_reference_links_outside_code() {
    let text = "see [a](docs/a.md) and [b](../b.md#x)\n```\n[c](not/me)\n```\n[d]: e/f.md\n[web](https://example.org)";
    let targets: Vec<String> = link_targets(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        targets,
        ["docs/a.md", "../b.md#x", "e/f.md", "https://example.org"]
    );
    let locals: Vec<&str> = targets.iter().filter_map(|t| local_path(t)).collect();
    assert_eq!(locals, ["docs/a.md", "../b.md", "e/f.md"]);
}
