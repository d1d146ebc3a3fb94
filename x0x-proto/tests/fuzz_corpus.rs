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
