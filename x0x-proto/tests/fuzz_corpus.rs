//! Replays every committed fuzz corpus file (and any saved crash artifact) through its target,
//! so the inputs the fuzzers found stay covered on stable Rust in every CI run.

use std::path::PathBuf;

#[test]
fn replay_fuzz_corpora() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, target) in x0x_proto::fuzzing::TARGETS {
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                target(&data);
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0, "no corpus found under {}", root.display());
}

mod properties {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary operation sequences never panic a node nor push any view, cache or queue
        /// past its cap (the checks run inside `node_ops` after every operation).
        #[test]
        fn node_invariants_hold_under_arbitrary_operations(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            x0x_proto::fuzzing::node_ops(&data);
        }
    }
}
