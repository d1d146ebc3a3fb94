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

/// Every frame kind has a seed in the frame decoder's corpus, so a decoder added with a new
/// kind is fuzzed and replayed from the start (`cargo run -p x0x-proto --example gen_corpus`).
#[test]
fn every_frame_kind_has_a_corpus_seed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decode");
    for kind in x0x_proto::wire::FrameKind::ALL {
        let seed = dir.join(format!("{kind}"));
        let bytes = std::fs::read(&seed)
            .unwrap_or_else(|_| panic!("no seed for {kind} at {}", seed.display()));
        let frame = x0x_proto::wire::Frame::decode(&bytes).expect("the seed decodes");
        assert_eq!(frame.kind(), *kind);
    }
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

        /// Seed changes, payloads and anti-entropy bodies with bytes overwritten, inserted
        /// and cut never panic a replica nor break its invariants (checked inside
        /// `collab_changes`): a stable stand-in for what libFuzzer explores.
        #[test]
        fn replicas_survive_mutated_changes(
            seed in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let seeds = x0x_proto::fuzzing::collab_seeds();
            let mut data = seeds[seed.index(seeds.len())].1.clone();
            for (at, byte, how) in edits {
                let i = at.index(data.len() + 1);
                match how {
                    0 if i < data.len() => data[i] = byte,
                    1 => data.insert(i, byte),
                    _ if i < data.len() => {
                        data.remove(i);
                    }
                    _ => {}
                }
            }
            // Sometimes cut the tail (a quarter at most).
            let keep = cut.index(data.len() + 1).max(data.len() * 3 / 4);
            data.truncate(keep);
            x0x_proto::fuzzing::collab_changes(&data);
        }
    }
}

/// The record targets only find bugs past the signature check if their seeds get there: the
/// fresh seeds must be accepted into the caches and the stale, future, over-long and expired
/// ones refused for the reason they were built to hit.
#[test]
fn record_seeds_reach_the_caches() {
    use x0x_proto::Time;
    use x0x_proto::announce::RejectReason;
    use x0x_proto::fuzzing::{RECORD_FUZZ_NOW_SECS, feed_record};
    use x0x_proto::identity::Domain;
    use x0x_proto::wire::RecordKind;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let now = Time::from_secs(RECORD_FUZZ_NOW_SECS);
    let ann = |name: &str| {
        let data = std::fs::read(root.join("announcement_decode").join(name)).unwrap();
        feed_record(
            RecordKind::Announcement,
            Domain::IdentityAnnouncement,
            &data,
            now,
        )
        .unwrap()
    };
    let (node, agent) = ann("identity");
    let found = node
        .discovered_agent(now, &agent)
        .expect("fresh seed accepted");
    assert!(found.user_id.is_some(), "its user certificate verified");
    for (seed, reason) in [
        ("identity_stale", RejectReason::Stale),
        ("identity_future", RejectReason::FutureTimestamp),
        ("identity_many_addrs", RejectReason::TooManyAddresses),
    ] {
        let (node, agent) = ann(seed);
        assert!(node.discovered_agent(now, &agent).is_none(), "{seed}");
        assert_eq!(node.stats().discovery.rejected.get(&reason), 1, "{seed}");
    }
    let rv = |name: &str| {
        let data = std::fs::read(root.join("rendezvous_decode").join(name)).unwrap();
        let (node, agent) =
            feed_record(RecordKind::Rendezvous, Domain::RendezvousRecord, &data, now).unwrap();
        node.cached_rendezvous(now, &agent)
    };
    assert!(rv("live").is_some());
    assert!(rv("expired").is_none());
    assert!(rv("boundary").is_none());
}

/// The presence seeds reach past the signature check: the live record is kept, the expired,
/// too-long and other-machine ones refused for their reason.
#[test]
fn presence_seeds_reach_the_records() {
    use x0x_proto::Time;
    use x0x_proto::fuzzing::{RECORD_FUZZ_NOW_SECS, feed_beacon};
    use x0x_proto::wire::PresenceRecord;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let now = Time::from_secs(RECORD_FUZZ_NOW_SECS);
    let feed = |name: &str| {
        let data = std::fs::read(root.join("presence_record_decode").join(name)).unwrap();
        let record: PresenceRecord = postcard::from_bytes(&data).unwrap();
        let node = feed_beacon(&data, now).unwrap();
        let held = node.presence_status(now, &record.agent).is_some();
        (held, node.stats().presence.rejected)
    };
    assert!(feed("live").0, "the live seed is kept");
    for (seed, reason) in [
        ("expired", "stale"),
        ("too_long", "stale"),
        ("other_machine", "wrong_signer"),
    ] {
        let (held, rejected) = feed(seed);
        assert!(!held, "{seed}");
        let counts = serde_json::to_value(rejected).unwrap();
        assert_eq!(counts[reason], 1, "{seed}: {counts}");
    }
}
