//! Load on real QUIC over loopback, at a size that fits CI (the full size is
//! `examples/load.rs`).

use x0x_tests::load::{LoadConfig, run};

/// Ten agents, one publisher, 1000 messages: every reading subscriber receives every message
/// exactly once, and the one subscriber that stops reading is dropped and counted by its
/// agent, not silently starved and not holding the others back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_agents_every_message_exactly_once_and_a_stalled_reader_is_dropped() {
    let r = run(LoadConfig {
        agents: 10,
        messages: 1000,
        ..LoadConfig::default()
    })
    .await
    .expect("load run");
    eprintln!("{}", r.to_json());
    assert_eq!(r.exactly_once.len(), 8, "eight reading subscribers");
    assert!(r.all_exactly_once(), "{}", r.to_json());
    assert_eq!(r.missing.iter().sum::<usize>(), 0);
    assert_eq!(r.duplicates.iter().sum::<usize>(), 0);
    assert_eq!(r.stalled_dropped, 1, "the stalled subscriber is counted");
    assert_eq!(r.others_dropped, 0);
}
