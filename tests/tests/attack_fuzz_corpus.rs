//! Replays every input committed in fuzz/corpus/ through the same property
//! checks the cargo-fuzz targets run (fuzz/fuzz_targets/checks.rs), on the
//! stable toolchain: the seed corpus, and any crashing input added to it
//! after a fix, stay regression tests in the ordinary test suite.

#[path = "../../fuzz/fuzz_targets/checks.rs"]
mod checks;

use std::fs;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = otpgate_tests::repo_root().join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let data = fs::read(&path).expect("read input");
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{target}: {} fails its check", path.display());
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
    eprintln!("attack_fuzz_corpus: {target}: {n} inputs pass");
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn record_corpus() {
    replay("record", checks::record);
}

#[test]
fn import_corpus() {
    replay("import", checks::import);
}

#[test]
fn normalise_corpus() {
    replay("normalise", checks::normalise_code);
}

#[test]
fn journal_corpus() {
    replay("journal", checks::journal);
}

/// The journal seeds reach the accepting paths, not only the refusals: the
/// fuzzer mutates from entries with valid checksums.
#[test]
fn journal_seeds_hold_valid_entries() {
    let dir = otpgate_tests::repo_root().join("fuzz/corpus/journal");
    for (name, entries) in [
        ("one-save", 1),
        ("save-delete-save", 3),
        ("torn-tail", 1),
        ("older-generation-after", 1),
        ("bad-kind", 0),
    ] {
        let data = fs::read(dir.join(name)).expect("seed");
        let generation = u64::from_le_bytes(data[..8].try_into().unwrap());
        let found = otpgated::journal::scan(&data[8..], generation).len();
        assert_eq!(found, entries, "{name}");
    }
}
