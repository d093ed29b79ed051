//! Replays every kept fuzz input: the corpus each target grew
//! (`corpus/<target>/`) and every crash reproducer (`artifacts/<target>/`).
//! A reproducer that still fails fails this test; so does a corpus that
//! never reaches a target's property (nothing in it decodes), or a seed
//! named `ok-*` that no longer decodes.

use std::path::PathBuf;

fn inputs(dir: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&path) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.path(),
                std::fs::read(e.path()).expect("read a kept input"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_kept_input_keeps_its_targets_property() {
    for (target, check) in weft_fuzzing::TARGETS {
        let corpus = inputs("corpus", target);
        for (path, bytes) in &corpus {
            let named_ok = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ok-"));
            if named_ok {
                assert!(
                    check(bytes),
                    "{target}: {} no longer decodes",
                    path.display()
                );
            }
        }
        let reached = corpus.iter().filter(|(_, bytes)| check(bytes)).count();
        assert!(
            reached > 0,
            "{target}: none of the {} corpus inputs decodes, so its property is never checked",
            corpus.len()
        );
        for (path, bytes) in inputs("artifacts", target) {
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{target}: {} fails again", path.display());
        }
    }
}
