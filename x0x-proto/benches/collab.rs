//! Replicated stores through whole nodes, in process (no transport): how fast a replica
//! applies a writer's signed batches, and what a late joiner's catch-up costs. Prints a table;
//! the same run measures ML-DSA-65 sign and verify so the figures can be scaled to another
//! machine.
//!
//! Run: `cargo bench -p x0x-proto --features aws-lc-rs --bench collab` (the drivers' signer;
//! without the feature everything signs and verifies with RustCrypto).
//!
//! * **Apply throughput**: a writer node writes 20,000 keys with `store_put_batch`, 100 per
//!   call (one signed pub/sub message each); the GOSSIP frames it sends are then handed to a
//!   reader node with `handle_frame`, timed: frame decoding, signature verification, the
//!   broadcast layer, and the replica judging and applying every change.
//! * **Late joiner**: a store of 10,000 keys written 100 at a time; a fresh node connects and
//!   joins it, and the two nodes exchange frames until both are quiet: anti-entropy rounds,
//!   bytes each way, and the bytes sent against the writer's kept batches and against
//!   automerge's own encoding of the document.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use x0x_proto::collab::{AccessPolicy, CollabConfig, CollabStats, Replica, StoreKind};
use x0x_proto::identity::{AgentKeypair, Domain, PublicKey};
use x0x_proto::node::{Config, Direction, Identity, Node};
use x0x_proto::{Time, Transmit};

const TOPIC: &str = "bench-store";

fn identity(seed: u8) -> Identity {
    #[allow(unused_mut)]
    let mut id = Identity::from_seed([seed; 32]);
    #[cfg(feature = "aws-lc-rs")]
    {
        id.agent = id.agent.with_fast_signing();
        id.machine = id.machine.with_fast_signing();
    }
    id
}

/// A node; the second of a pair bootstraps to the first (at `addr(1)`), as a driver would.
fn node(seed: u8, second: bool) -> Node {
    let mut c = Config::default();
    if second {
        c.bootstrap = vec![addr(1)];
    }
    Node::new(identity(seed), c, [seed; 32]).unwrap()
}

fn t(ms: u64) -> Time {
    Time::from_millis(1_800_000_000_000 + ms)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Frames and bytes one node sent the other, by frame kind.
#[derive(Default)]
struct Traffic {
    frames: BTreeMap<String, (u64, u64)>,
}

impl Traffic {
    fn add(&mut self, tx: &Transmit) {
        let e = self.frames.entry(format!("{:?}", tx.kind)).or_default();
        e.0 += 1;
        e.1 += tx.frame.len() as u64;
    }
    fn bytes(&self) -> u64 {
        self.frames.values().map(|v| v.1).sum()
    }
    fn of(&self, kind: &str) -> (u64, u64) {
        self.frames.get(kind).copied().unwrap_or_default()
    }
    fn summary(&self) -> String {
        self.frames
            .iter()
            .map(|(k, (n, b))| format!("{k} {n} ({b} B)"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Delivers every queued frame between `a` and `b` until both are quiet; counts what each
/// sent.
fn pump(a: &mut Node, b: &mut Node, now: Time, ab: &mut Traffic, ba: &mut Traffic) {
    let (ida, idb) = (a.machine_id(), b.machine_id());
    for _ in 0..10_000 {
        let ta: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let tb: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
        if ta.is_empty() && tb.is_empty() {
            return;
        }
        for tx in ta {
            ab.add(&tx);
            b.handle_frame(now, ida, &tx.frame).unwrap();
        }
        for tx in tb {
            ba.add(&tx);
            a.handle_frame(now, idb, &tx.frame).unwrap();
        }
    }
    panic!("the nodes did not go quiet");
}

/// `b` dials its bootstrap address, `a`'s, and joins the overlay through it.
fn connect(a: &mut Node, b: &mut Node, now: Time) {
    a.start(now);
    b.start(now);
    let dialed = std::iter::from_fn(|| b.poll_action())
        .any(|x| matches!(x, x0x_proto::Action::Dial { addr: to, .. } if to == addr(1)));
    assert!(dialed, "the second node dials the first");
    b.handle_connected(now, a.machine_id(), addr(1), Direction::Outbound);
    a.handle_connected(now, b.machine_id(), addr(2), Direction::Inbound);
    pump(a, b, now, &mut Traffic::default(), &mut Traffic::default());
    assert_eq!(a.active_view(), vec![b.machine_id()], "neighbours");
}

fn drain(n: &mut Node) {
    while n.poll_event().is_some() {}
    while n.poll_action().is_some() {}
}

/// `n` keys written `per` at a time; returns the writer's time.
fn write_keys(w: &mut Node, n: usize, per: usize, ms: &mut u64) -> Duration {
    let mut spent = Duration::ZERO;
    for start in (0..n).step_by(per) {
        let items: Vec<(String, Bytes, String)> = (start..(start + per).min(n))
            .map(|k| {
                (
                    format!("key-{k:06}"),
                    Bytes::from(format!("value of key {k}, some forty bytes long")),
                    "text/plain".to_owned(),
                )
            })
            .collect();
        *ms += 1;
        let t0 = Instant::now();
        w.store_put_batch(t(*ms), TOPIC, items).unwrap();
        spent += t0.elapsed();
    }
    spent
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// ML-DSA-65 sign and verify of 1 KiB, medians of `n`.
fn reference(n: usize) -> Vec<(&'static str, Duration)> {
    let key = AgentKeypair::from_seed([7; 32]);
    let mut msg = vec![0xab; 1024];
    let mut out = Vec::new();
    let mut sign = |k: &AgentKeypair| {
        median(
            (0..n as u64)
                .map(|i| {
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    let t0 = Instant::now();
                    std::hint::black_box(k.sign(Domain::PubSubMessage, &msg));
                    t0.elapsed()
                })
                .collect(),
        )
    };
    out.push(("ML-DSA-65 sign 1 KiB (RustCrypto)", sign(&key)));
    #[cfg(feature = "aws-lc-rs")]
    out.push((
        "ML-DSA-65 sign 1 KiB (aws-lc-rs)",
        sign(&key.with_fast_signing()),
    ));
    let sig = key.sign(Domain::PubSubMessage, &msg);
    let pk = PublicKey::from_bytes(key.public_key().as_bytes()).unwrap();
    let verify = median(
        (0..n)
            .map(|_| {
                let t0 = Instant::now();
                pk.verify(Domain::PubSubMessage, &msg, &sig).unwrap();
                t0.elapsed()
            })
            .collect(),
    );
    out.push((
        if cfg!(feature = "aws-lc-rs") {
            "ML-DSA-65 verify 1 KiB, cached key (aws-lc-rs)"
        } else {
            "ML-DSA-65 verify 1 KiB, cached key (RustCrypto)"
        },
        verify,
    ));
    out
}

/// Apply throughput: 20,000 keys in batches of 100, through a reader node.
fn apply_throughput(keys: usize, per: usize) {
    let (mut w, mut r) = (node(1, false), node(2, true));
    let mut ms = 0;
    connect(&mut w, &mut r, t(ms));
    w.create_store(
        t(ms),
        StoreKind::Kv,
        TOPIC,
        "bench",
        AccessPolicy::Signed,
        &[],
    )
    .unwrap();
    r.join_store(t(ms), StoreKind::Kv, TOPIC, Some(w.agent_id()))
        .unwrap();
    pump(
        &mut w,
        &mut r,
        t(ms),
        &mut Traffic::default(),
        &mut Traffic::default(),
    );
    drain(&mut w);
    drain(&mut r);
    let base = r.store(TOPIC).unwrap().change_count();

    let write = write_keys(&mut w, keys, per, &mut ms);
    let frames: Vec<Transmit> = std::iter::from_fn(|| w.poll_transmit()).collect();
    let gossip = frames
        .iter()
        .filter(|f| format!("{:?}", f.kind) == "Gossip")
        .count();
    let bytes: usize = frames.iter().map(|f| f.frame.len()).sum();

    let (wid, now) = (w.machine_id(), t(ms + 1));
    let t0 = Instant::now();
    for f in &frames {
        r.handle_frame(now, wid, &f.frame).unwrap();
        while r.poll_transmit().is_some() {}
        drain(&mut r);
    }
    let read = t0.elapsed();
    let replica = r.store(TOPIC).unwrap();
    let applied = replica.change_count() - base;
    assert_eq!(applied, keys, "every change applied");
    assert_eq!(replica.heads(), w.store(TOPIC).unwrap().heads());
    let st = r.collab_stats();
    assert_eq!(st.refused_policy + st.refused_malformed + st.bad_batches, 0);

    // The same changes into a bare replica: the store's own share of the reader's time.
    let batches = w.store(TOPIC).unwrap().snapshot().proofs;
    let decoded: Vec<(Bytes, Vec<Bytes>)> = batches
        .iter()
        .map(|p| {
            let s: x0x_proto::wire::Signed = postcard::from_bytes(p).unwrap();
            let body: x0x_proto::broadcast::PubSubBody = s.decode_body().unwrap();
            let pl = x0x_proto::collab::ChangesPayload::decode(&body.payload).unwrap();
            (p.clone(), pl.changes)
        })
        .collect();
    let cfg = CollabConfig::default();
    let mut stats = CollabStats::default();
    let mut bare = Replica::new(
        TOPIC.into(),
        StoreKind::Kv,
        r.agent_id(),
        3,
        Some(w.agent_id()),
    );
    let t0 = Instant::now();
    for (p, changes) in &decoded {
        bare.apply(w.agent_id(), p.clone(), changes, &cfg, &mut stats);
    }
    let bare_time = t0.elapsed();
    assert_eq!(bare.change_count(), keys + 1);

    println!("apply throughput ({keys} keys, {per} per signed batch)");
    println!(
        "  writer: {:>8.0} changes/s  ({:.3} s for {} store_put_batch calls)",
        keys as f64 / write.as_secs_f64(),
        write.as_secs_f64(),
        keys / per
    );
    println!(
        "  reader: {:>8.0} changes/s  ({:.3} s for {} frames, {} GOSSIP, {} bytes) -- target >= 20 000",
        applied as f64 / read.as_secs_f64(),
        read.as_secs_f64(),
        frames.len(),
        gossip,
        bytes
    );
    println!(
        "  Replica::apply alone (decoded batches, no verification): {:>8.0} changes/s ({:.3} s)",
        keys as f64 / bare_time.as_secs_f64(),
        bare_time.as_secs_f64()
    );
}

/// Late joiner: a store of `keys` keys written `per` at a time; a fresh node joins.
fn late_joiner(keys: usize, per: usize) {
    let (mut w, mut j) = (node(3, false), node(4, true));
    let mut ms = 0;
    w.create_store(
        t(ms),
        StoreKind::Kv,
        TOPIC,
        "bench",
        AccessPolicy::Signed,
        &[],
    )
    .unwrap();
    write_keys(&mut w, keys, per, &mut ms);
    while w.poll_transmit().is_some() {}
    drain(&mut w);
    let now = t(ms + 1000);
    connect(&mut w, &mut j, now);
    drain(&mut w);
    drain(&mut j);
    let (w0, j0) = (w.collab_stats(), j.collab_stats());

    let (mut wj, mut jw) = (Traffic::default(), Traffic::default());
    let t0 = Instant::now();
    j.join_store(now, StoreKind::Kv, TOPIC, Some(w.agent_id()))
        .unwrap();
    pump(&mut j, &mut w, now, &mut jw, &mut wj);
    let spent = t0.elapsed();

    let (ws, js) = (w.collab_stats(), j.collab_stats());
    let theirs = w.store(TOPIC).unwrap();
    let mine = j.store(TOPIC).unwrap();
    assert_eq!(mine.heads(), theirs.heads(), "the joiner caught up");
    assert_eq!(mine.change_count(), keys + 1);
    let rounds = js.sync_requests - j0.sync_requests;
    let sent = ws.sync_bytes_sent - w0.sync_bytes_sent;
    let proofs = theirs.proof_bytes() as f64;
    let encoded = theirs.encoded_len() as f64;
    let (heads_n, _) = jw.of("CollabHeads");
    let (batch_frames, batch_frame_bytes) = wj.of("CollabBatches");

    println!(
        "late joiner ({keys} keys written {per} per batch, {} batches)",
        keys / per + 1
    );
    println!(
        "  caught up in {:.3} s (wall, both nodes)",
        spent.as_secs_f64()
    );
    println!(
        "  rounds: {rounds} (CollabHeads the joiner sent: {heads_n}) -- target <= 3; CollabBatches frames: {batch_frames}"
    );
    println!(
        "  writer's kept batches (state with proofs): {} B; automerge's encoding (no proofs): {} B",
        theirs.proof_bytes(),
        theirs.encoded_len()
    );
    println!(
        "  batches sent: {sent} B = {:.3} x the kept batches, {:.2} x automerge's encoding; \
         CollabBatches frames {batch_frame_bytes} B ({:.3} x the kept batches) -- target <= 1.5 x",
        sent as f64 / proofs,
        sent as f64 / encoded,
        batch_frame_bytes as f64 / proofs
    );
    println!(
        "  all frames writer -> joiner: {} B ({:.3} x the kept batches): {}",
        wj.bytes(),
        wj.bytes() as f64 / proofs,
        wj.summary()
    );
    println!(
        "  all frames joiner -> writer: {} B: {}",
        jw.bytes(),
        jw.summary()
    );
    println!(
        "  joiner: remote_applied {}, duplicates {}, bad_batches {}",
        js.remote_applied - j0.remote_applied,
        js.duplicates - j0.duplicates,
        js.bad_batches - j0.bad_batches
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    println!(
        "x0x-proto collab bench, backend: {}",
        if cfg!(feature = "aws-lc-rs") {
            "aws-lc-rs"
        } else {
            "RustCrypto"
        }
    );
    println!("reference (median of 200):");
    for (what, d) in reference(200) {
        println!("  {what}: {:.1} us", d.as_secs_f64() * 1e6);
    }
    apply_throughput(20_000, 100);
    late_joiner(10_000, 100);
}
