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
/// Notes that were never part of the repository, which a reader cannot
/// follow. Spelled in pieces so that a search of the tree for them finds
/// only real mentions, not this list.
const FORBIDDEN: [&str; 3] = [
    concat!("SP", "EC.md"),
    concat!("FIELD", "-NOTES"),
    concat!("../", "shared"),
];

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

/// The anchors GitHub gives a document's headings: lower case, letters,
/// digits, `-` and `_` kept, spaces made `-`, the rest dropped; a repeated
/// heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let mut slug = String::new();
        for c in title.trim().chars() {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                slug.extend(c.to_lowercase());
            } else if c == ' ' {
                slug.push('-');
            }
        }
        let base = slug.clone();
        let mut n = 0;
        while out.contains(&slug) {
            n += 1;
            slug = format!("{base}-{n}");
        }
        out.push(slug);
    }
    out
}

/// The fragment of a link, if any (`#how-it-fails`).
fn fragment(target: &str) -> Option<&str> {
    let target = target.split_whitespace().next().unwrap_or("");
    target
        .split_once('#')
        .map(|(_, f)| f)
        .filter(|f| !f.is_empty())
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
            let shown = format!("{}:{line}: ({target})", file.display());
            // The document a fragment points into: another file, or this one.
            let resolved = if target.starts_with('#') {
                file.clone()
            } else {
                let Some(path) = local_path(&target) else {
                    continue;
                };
                checked += 1;
                match fs::canonicalize(dir.join(path)) {
                    Ok(p) if p.starts_with(&root) => p,
                    Ok(p) => {
                        broken.push(format!("{shown} leaves the repository: {}", p.display()));
                        continue;
                    }
                    Err(e) => {
                        broken.push(format!("{shown}: {e}"));
                        continue;
                    }
                }
            };
            let Some(frag) = fragment(&target) else {
                continue;
            };
            if resolved.extension().is_some_and(|x| x == "md") {
                let target_text = fs::read_to_string(&resolved).expect("read linked document");
                if !anchors(&target_text).iter().any(|a| a == frag) {
                    broken.push(format!("{shown}: no heading with the anchor #{frag}"));
                }
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
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
    assert_eq!(fragment("../b.md#x"), Some("x"));
    assert_eq!(fragment("docs/a.md"), None);
}

#[test]
fn anchors_are_the_ones_github_makes() {
    let text = "# The master key: a file, or a systemd credential\n## ssh (`/etc/pam.d/sshd`)\n```\n# not a heading\n```\n## Options\n### Options\n#nospace";
    assert_eq!(
        anchors(text),
        [
            "the-master-key-a-file-or-a-systemd-credential",
            "ssh-etcpamdsshd",
            "options",
            "options-1"
        ]
    );
}
