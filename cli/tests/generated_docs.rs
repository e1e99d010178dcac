//! The committed completions and man pages in packaging/ must be what the
//! current clap definitions generate. On failure, regenerate them with
//! `cargo run -p otpgate --bin otpgate-gen-docs -- packaging` at the
//! repository root and commit the result.

use std::path::Path;

#[test]
fn committed_completions_and_man_pages_are_up_to_date() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let fresh = tempfile::tempdir().unwrap();
    let files = otpgate::docs::generate(fresh.path()).unwrap();
    assert!(
        files.len() >= 3 + 15,
        "expected 3 completions and 15 man pages: {files:?}"
    );
    let mut stale = Vec::new();
    for rel in &files {
        let want = std::fs::read(fresh.path().join(rel)).unwrap();
        match std::fs::read(packaging.join(rel)) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{} differs", rel.display())),
            Err(e) => stale.push(format!("{} missing ({e})", rel.display())),
        }
    }
    // A page or completion that the definitions no longer produce.
    for dir in ["completions", "man"] {
        for entry in std::fs::read_dir(packaging.join(dir)).unwrap() {
            let rel = Path::new(dir).join(entry.unwrap().file_name());
            if !files.contains(&rel) {
                stale.push(format!("{} is no longer generated", rel.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "packaging/ is out of date: {stale:?}\nrun `cargo run -p otpgate --bin otpgate-gen-docs -- packaging` at the repository root"
    );
}

#[test]
fn every_command_has_a_man_page_and_completion() {
    let fresh = tempfile::tempdir().unwrap();
    otpgate::docs::generate(fresh.path()).unwrap();
    for cmd in [
        "enroll",
        "confirm",
        "status",
        "disable",
        "backup-codes",
        "unlock",
        "reset",
        "list",
        "stats",
        "import",
        "doctor",
        "admin",
        "policy",
        "breakglass",
    ] {
        let page =
            std::fs::read_to_string(fresh.path().join(format!("man/otpgate-{cmd}.1"))).unwrap();
        assert!(page.contains("otpgate"), "{cmd}");
        let bash = std::fs::read_to_string(fresh.path().join("completions/otpgate.bash")).unwrap();
        assert!(bash.contains(cmd), "bash completion lacks {cmd}");
    }
    let bash = std::fs::read_to_string(fresh.path().join("completions/otpgate.bash")).unwrap();
    for sub in ["explain", "generate", "ack", "--rhost"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let breakglass =
        std::fs::read_to_string(fresh.path().join("man/otpgate-breakglass.1")).unwrap();
    assert!(
        breakglass.contains("local console"),
        "where break-glass codes work is in the page"
    );
    let enroll = std::fs::read_to_string(fresh.path().join("man/otpgate-enroll.1")).unwrap();
    assert!(enroll.contains("qr\\-svg"), "options are in the page");
    assert!(
        enroll.contains("Examples"),
        "after_help examples are in the page"
    );
}
