//! End-to-end runs of the simulator over the real `x0x_proto::Node`.

use x0x_sim::report::Report;
use x0x_sim::scenario::CryptoMode;
use x0x_sim::{RunOptions, Scenario, run, run_named};

/// Runs `sc` with `nodes` nodes and `seed`, without a progress bar.
fn report(sc: &Scenario, seed: u64, nodes: usize) -> Report {
    run(
        sc,
        &RunOptions {
            seed,
            nodes: Some(nodes),
            progress: false,
        },
    )
    .report
}

/// Runs a shipped scenario, shortened for a test: `rounds` rounds and a 20 s warm-up.
fn quick(name: &str, nodes: usize, seed: u64, rounds: usize, crypto: CryptoMode) -> Report {
    let mut sc = Scenario::load(name).unwrap();
    sc.workload.rounds = rounds;
    sc.warmup_ms = 20_000;
    sc.crypto = crypto;
    report(&sc, seed, nodes)
}

#[test]
fn same_seed_same_report_other_seed_other_digest() {
    let a = quick("broadcast-single", 50, 7, 5, CryptoMode::Auto);
    let b = quick("broadcast-single", 50, 7, 5, CryptoMode::Auto);
    assert_eq!(a.crypto, "real");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.deterministic_json(), b.deterministic_json());
    let c = quick("broadcast-single", 50, 8, 5, CryptoMode::Auto);
    assert_ne!(a.digest, c.digest);
}

#[test]
fn every_node_gets_connected_during_warm_up() {
    let r = quick("broadcast-single", 300, 3, 0, CryptoMode::StandIn);
    assert_eq!(r.live_nodes_at_overlay, 300);
    assert_eq!(r.isolated_nodes, 0, "{r:#?}");
    assert!(r.connections >= 299);
    assert!(r.frames_by_kind.get("Hello").copied().unwrap_or(0) >= 2 * 299);
}

#[test]
fn scenario_names_resolve_and_the_one_line_helper_runs() {
    for (name, _) in x0x_sim::scenario::BUILTIN {
        Scenario::load(name).unwrap();
    }
    let r = run_named("static-50", 20, 1).unwrap();
    assert_eq!(r.scenario, "static-50");
    assert_eq!(r.nodes, 20);
    assert!(Scenario::load("no-such-scenario").is_err());
}

#[test]
fn discovery_reaches_every_cache_and_lookups_answer_right() {
    let mut sc = Scenario::load("discovery").unwrap();
    sc.start_window_ms = 5_000;
    sc.warmup_ms = 20_000;
    let d = sc.discovery.as_mut().unwrap();
    // A short TTL keeps the gone-agent phase cheap in a debug build.
    d.ttl_s = 40;
    d.heartbeat_s = 15;
    d.lookups = 20;
    d.gone = 3;
    let r = report(&sc, 4, 100);
    let dr = r.discovery.clone().unwrap();
    assert!(dr.pairs > 0 && dr.pairs == dr.pairs_discovered, "{dr:#?}");
    assert_eq!(dr.late_joiners_short, 0, "{dr:#?}");
    assert!(dr.late_join_ms.is_some());
    assert_eq!(dr.lookups_live, 20, "{dr:#?}");
    assert_eq!(dr.lookups_gone, 3, "{dr:#?}");
    assert_eq!(dr.stale_answers, 0, "{dr:#?}");
    assert_eq!(r.find_agent_success_ratio, Some(1.0), "{dr:#?}");
    assert!(r.discovery_ms.unwrap().p99 < 2000.0, "{:?}", r.discovery_ms);
}

#[test]
fn direct_scenario_delivers_every_message_exactly_once_and_is_deterministic() {
    let run_it = || {
        let mut sc = Scenario::load("direct").unwrap();
        sc.warmup_ms = 20_000;
        sc.direct.messages = 300;
        sc.drain_ms = 40_000;
        report(&sc, 5, 100)
    };
    let r = run_it();
    let d = r.direct.clone().expect("direct summary");
    assert_eq!(d.messages, 300);
    assert_eq!(d.delivered, 300, "{d:#?}");
    assert_eq!(d.duplicate_deliveries, 0);
    assert_eq!(d.misdelivered, 0);
    assert_eq!(r.delivery_ratio, Some(1.0));
    assert!(r.latency_ms.is_some_and(|l| l.p99 > 0.0));
    assert_eq!(r.digest, run_it().digest, "same seed, same run");
}

/// Runs a shipped adversarial scenario, shortened for a test.
fn hostile(name: &str, nodes: usize, rounds: usize) -> Report {
    let mut sc = Scenario::load(name).unwrap();
    sc.workload.rounds = rounds;
    sc.warmup_ms = 20_000;
    sc.crypto = CryptoMode::StandIn;
    report(&sc, 5, nodes)
}

#[test]
fn black_holes_do_not_cost_honest_nodes_their_messages() {
    let r = hostile("blackhole-10", 200, 8);
    let a = r.adversary.as_ref().unwrap();
    assert_eq!(a.roles.get("black_hole"), Some(&20));
    assert!(a.gossip_withheld > 0, "the black holes were in the trees");
    // Lazy IHAVE / GRAFT repair reaches every honest subscriber anyway.
    assert_eq!(r.delivery_ratio, Some(1.0), "{:?}", r.delivery_per_round);
    assert_eq!(a.invariant_violations, 0);
    for (table, b) in &a.memory {
        assert!(b.max <= b.cap, "{table}: {} > {}", b.max, b.cap);
    }
}

#[test]
fn forgeries_and_replays_are_refused_by_reason_and_never_delivered() {
    let r = hostile("forgery", 150, 6);
    let a = r.adversary.as_ref().unwrap();
    let injected: u64 = a.forged_injected.values().sum();
    assert!(injected > 1000 && a.replays_injected > 100, "{a:?}");
    assert_eq!(a.forged_deliveries, 0);
    assert_eq!(a.replayed_redeliveries, 0);
    assert_eq!(r.delivery_ratio, Some(1.0));
    // Each forged message reaches one honest node, which refuses it for its reason. The last
    // few may still be in flight when the run ends, and a few go down with a connection the
    // receiver closed (counted in `drops`, with every other frame lost that way).
    let slack = 20 + r.drops.closed_connection + r.drops.no_connection;
    let refused = |k: &str| {
        a.rejections
            .get(&format!("message/{k}"))
            .copied()
            .unwrap_or(0)
    };
    let sent = |k: &str| a.forged_injected.get(k).copied().unwrap_or(0);
    let close = |got: u64, want: u64| got <= want && got + slack >= want;
    assert!(
        close(refused("bad_signature"), sent("bad_signature")),
        "{a:?}"
    );
    assert!(
        close(refused("topic_mismatch"), sent("wrong_topic")),
        "{a:?}"
    );
    assert!(
        close(
            refused("key_mismatch") + refused("unknown_key"),
            sent("key_mismatch") + sent("unknown_key")
        ),
        "{a:?}"
    );
}

#[test]
fn a_sybil_flood_through_one_node_stays_within_every_cap() {
    let mut sc = Scenario::load("sybil-flood").unwrap();
    let spec = sc.adversary.as_mut().unwrap();
    spec.sybils = 1000;
    spec.sybil_window_ms = 2000;
    sc.workload.rounds = 5;
    sc.warmup_ms = 20_000;
    let r = report(&sc, 3, 150);
    let a = r.adversary.as_ref().unwrap();
    assert_eq!(a.roles.get("sybil"), Some(&1000));
    let t = a.target.unwrap();
    assert!(t.connections_max <= 64, "{t:?}");
    assert_eq!(a.invariant_violations, 0);
    for (table, b) in &a.memory {
        assert!(b.max <= b.cap, "{table}: {} > {}", b.max, b.cap);
    }
    assert!(r.delivery_ratio.is_some());
}

/// `replay-flood`, scaled down: a dedup window of 2 048 ids, a flood of 200 messages a second
/// for 30 s, and replays of frames 15–25 s old, whose ids the flood pushed out of the window.
/// None is delivered twice; the window's floor refuses them.
#[test]
fn a_flood_past_the_dedup_window_lets_no_replay_through() {
    let mut sc = Scenario::load("replay-flood").unwrap();
    let mut b = x0x_proto::broadcast::BroadcastConfig::default();
    b.seen_capacity = 2048;
    sc.node.broadcast = Some(b);
    let flood = sc.flood.as_mut().unwrap();
    flood.per_sec = 200.0;
    flood.duration_ms = 30_000;
    sc.adversary.as_mut().unwrap().replay_age_ms = 15_000;
    sc.workload.rounds = 3;
    let r = report(&sc, 5, 12);
    let a = r.adversary.as_ref().unwrap();
    assert!(a.replays_injected > 100, "{a:?}");
    assert_eq!(a.replayed_redeliveries, 0, "{a:?}");
    assert_eq!(r.flood.as_ref().unwrap().redelivered, 0);
    assert!(
        a.rejections
            .get("broadcast/replay_floor")
            .copied()
            .unwrap_or(0)
            > 0,
        "{a:?}"
    );
    assert!(
        r.messages_published_in_60s_max >= 6000,
        "{}",
        r.messages_published_in_60s_max
    );
    assert_eq!(r.delivery_ratio, Some(1.0));
}

/// `crash-50` at 1 000 nodes: half crash at once; nodes whose whole active view died find
/// stand-ins in their passive views before the rounds start 5 s later, so the overlay is one
/// piece and the first round reaches every survivor (a node cut off waited for SWIM's
/// suspicion of each neighbour in turn, and missed it).
#[test]
fn half_the_network_crashing_leaves_one_piece_and_full_delivery() {
    let mut sc = Scenario::load("crash-50").unwrap();
    sc.workload.rounds = 3;
    let r = report(&sc, 2, 1000);
    assert_eq!(r.components, 1, "components at the rounds' start");
    assert_eq!(r.delivery_per_round.first().copied(), Some(Some(1.0)));
    assert_eq!(r.delivery_ratio, Some(1.0));
    assert_eq!(r.swim.false_positives, 0);
}

/// The eclipse attack and a Sybil flood through one node: the target keeps at least two
/// honest neighbours in every sample (its longest-standing ones are never evicted, and joins
/// past the newcomer budget are refused) and receives every broadcast.
#[test]
fn eclipse_and_sybil_targets_keep_two_honest_neighbours() {
    let eclipse = hostile("eclipse", 150, 6);
    let mut sc = Scenario::load("sybil-flood").unwrap();
    let spec = sc.adversary.as_mut().unwrap();
    spec.sybils = 1000;
    spec.sybil_window_ms = 2000;
    sc.workload.rounds = 6;
    sc.warmup_ms = 20_000;
    let sybil = report(&sc, 3, 150);
    for r in [eclipse, sybil] {
        let a = r.adversary.as_ref().unwrap();
        let t = a.target.unwrap();
        assert!(t.samples > 10, "{t:?}");
        assert_eq!(t.samples_under_two_honest, 0, "{}: {t:?}", r.scenario);
        let refused = a.rejections.get("membership/joins_refused");
        assert!(refused.copied().unwrap_or(0) > 0, "{}: {a:?}", r.scenario);
        assert_eq!(r.delivery_ratio, Some(1.0), "{}", r.scenario);
    }
}

#[test]
fn adversarial_runs_are_deterministic() {
    let a = hostile("eclipse", 100, 3);
    let b = hostile("eclipse", 100, 3);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.deterministic_json(), b.deterministic_json());
    assert!(a.adversary.unwrap().eclipse_joins > 0);
}

/// Half the nodes block a spammer: none of them delivers its messages (they still relay them
/// to the others), and the honest rounds reach everyone.
#[test]
fn blocking_nodes_never_deliver_the_spam_and_everyone_else_gets_everything() {
    let r = quick("trust-spam", 60, 5, 6, CryptoMode::StandIn);
    let t = r.trust.as_ref().expect("a trust report");
    assert!(t.blockers >= 15 && t.others >= 15, "{t:?}");
    assert_eq!(t.spam_published, 6);
    assert_eq!(t.spam_delivered_at_blockers, 0, "{t:?}");
    assert_eq!(
        t.spam_delivered_elsewhere, t.spam_deliverable_elsewhere,
        "{t:?}"
    );
    assert_eq!(
        t.refused_at_blockers,
        t.spam_published * t.blockers as u64,
        "{t:?}"
    );
    assert_eq!(r.delivery_ratio, Some(1.0));
}

/// A crash of a tenth of the nodes: every node that had a crashed agent online reports it
/// offline, within three beacon intervals, and nothing alive is reported failed.
#[test]
fn presence_reports_every_crash_within_three_intervals() {
    let mut sc = Scenario::load("presence-crash").unwrap();
    sc.crypto = CryptoMode::StandIn;
    let r = report(&sc, 4, 100);
    let p = r.presence.as_ref().expect("a presence report");
    let interval = p.beacon_interval_ms;
    assert!(p.offline_pairs > 0, "{p:?}");
    assert_eq!(p.offline_detected_ratio, Some(1.0), "{p:?}");
    assert!(p.offline_max_ms.unwrap() <= 3.0 * interval, "{p:?}");
    assert!(p.offline_mean_ms.unwrap() <= 2.5 * interval, "{p:?}");
    assert_eq!(p.false_offline, 0, "{p:?}");
    assert!(p.online_p99_ms.unwrap() <= interval, "{p:?}");
}

/// Under 5 % loss nothing alive is reported failed, and look-ups find agents two hops away.
#[test]
fn presence_finds_friends_of_friends_without_false_offline() {
    let mut sc = Scenario::load("presence").unwrap();
    sc.crypto = CryptoMode::StandIn;
    sc.drain_ms = 60_000;
    let spec = sc.presence.as_mut().unwrap();
    spec.finds = 100;
    spec.finds_at_ms = 120_000;
    let r = report(&sc, 4, 100);
    let p = r.presence.as_ref().expect("a presence report");
    assert_eq!(p.foaf_finds, 100, "{p:?}");
    assert!(p.foaf_find_ratio.unwrap() >= 0.99, "{p:?}");
    assert_eq!(p.false_offline, 0, "{p:?}");
    assert!(
        p.online_samples > 0 && p.bytes_per_node_per_sec > 0.0,
        "{p:?}"
    );
}

/// Presence runs only where a scenario asks for it, so the other scenarios' traffic (and
/// digests) are what they were.
#[test]
fn presence_is_off_unless_the_scenario_asks() {
    let r = quick("broadcast-single", 50, 7, 2, CryptoMode::StandIn);
    assert!(r.presence.is_none());
    assert!(
        !r.frames_sent_by_kind.contains_key("Beacon"),
        "{:?}",
        r.frames_sent_by_kind
    );
}

/// The collab scenario shortened: 40 nodes, 8 writers, a 10 s partition.
fn collab_quick(seed: u64) -> Report {
    let mut sc = Scenario::load("collab-partition").unwrap();
    sc.warmup_ms = 20_000;
    let p = sc.partition.as_mut().unwrap();
    p.at_ms = 10_000;
    p.duration_ms = 10_000;
    let c = sc.collab.as_mut().unwrap();
    c.writers = 8;
    c.writes_until_ms = 20_000;
    report(&sc, seed, 40)
}

#[test]
fn a_partitioned_store_converges_after_the_heal_and_refuses_forgeries_everywhere() {
    let a = collab_quick(6);
    let c = a.collab.as_ref().expect("a collab report");
    assert!(c.converged, "{c:?}");
    assert!(c.converge_ms.unwrap() <= 5000.0, "{c:?}");
    assert_eq!(c.replicas, 40);
    assert!(c.writes_per_side.iter().all(|&w| w > 0), "{c:?}");
    assert!(c.unauthorised_injected >= 1);
    assert_eq!(c.refused_applied, 0);
    assert_eq!(c.writes_refused_locally, 0);
    // Same seed, same final state and report.
    let b = collab_quick(6);
    assert_eq!(b.collab, a.collab);
    assert_eq!(a.digest, b.digest);
}
