//! Entry points for the fuzz targets in `fuzz/` and for replaying their corpora as plain tests.
//!
//! Each function takes arbitrary bytes, must never panic, and checks an invariant of the
//! decoder it drives. Keeping the bodies here lets the corpus replay run on stable in
//! `cargo test` (see `tests/fuzz_corpus.rs`) while `cargo fuzz` explores.

use crate::identity::{
    AgentCertificate, AgentKeypair, MachineKeypair, PublicKey, Signature, UserKeypair,
};
use crate::wire::{Frame, MAX_FRAME_LEN};

/// Decodes a frame; whatever decodes must re-encode to the same bytes.
pub fn frame_decode(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let again = frame
            .encode()
            .unwrap_or_else(|e| panic!("decoded frame does not re-encode: {e}"));
        assert_eq!(&again[..], data, "a frame has exactly one encoding");
        assert!(data.len() <= MAX_FRAME_LEN);
    }
}

/// Feeds the key, signature and certificate decoders.
pub fn key_decode(data: &[u8]) {
    let _ = MachineKeypair::from_bytes(data);
    let _ = AgentKeypair::from_bytes(data);
    let _ = UserKeypair::from_bytes(data);
    let _ = PublicKey::from_bytes(data);
    let _ = PublicKey::from_spki_der(data);
    let _ = Signature::from_bytes(data);
    let _ = postcard::from_bytes::<AgentCertificate>(data);
}

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by name, for corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decode", frame_decode),
    ("key_decode", key_decode),
    ("node_ops", node_ops),
];

/// Drives one [`crate::Node`] with a sequence of operations decoded from `data`: connections
/// and disconnections of a few peers, well-formed frames of every kind built from the input,
/// raw bytes, timer advances and application calls. After every operation it checks the
/// node's invariants: views and caches within their caps, queues bounded, no panic.
pub fn node_ops(data: &[u8]) {
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::identity::{Domain, MachineId};
    use crate::node::{Config, Direction, Identity, Node};
    use crate::time::Time;
    use crate::wire::{self, PeerAddr, TopicId};

    let mut config = Config {
        max_connections: 8,
        max_queued_transmits: 256,
        max_queued_events: 64,
        ..Config::default()
    };
    config.broadcast.cache_capacity = 16;
    config.broadcast.seen_capacity = 32;
    config.broadcast.max_missing = 16;
    config.announce.max_agents = 8;
    config.announce.max_tracked_queries = 16;
    let caps = (16usize, 32usize, 16usize);
    let Ok(mut node) = Node::new(Identity::from_seed([1; 32]), config, [2; 32]) else {
        return;
    };
    let peers: Vec<MachineId> = (0u8..6)
        .map(|i| MachineId::from_bytes([i + 10; 32]))
        .collect();
    let addr = |i: u8| SocketAddr::from(([10, 0, 0, i], 5483));
    let topic = TopicId::from_name("fuzz");
    let mut now = Time::from_secs(1_800_000_000);
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    while let Some(op) = next() {
        let p = peers[(next().unwrap_or(0) % 6) as usize];
        let x = next().unwrap_or(0);
        match op % 16 {
            0 => node.handle_connected(now, p, addr(x), Direction::Inbound),
            1 => node.handle_disconnected(now, p),
            2 => {
                now = now + Duration::from_millis(u64::from(x) * 37);
                node.handle_timeout(now);
            }
            3 => {
                let len = usize::from(x);
                let raw: Vec<u8> = (0..len).map(|_| next().unwrap_or(0)).collect();
                let _ = node.handle_frame(now, p, &raw);
            }
            4 => {
                let _ = node.publish(now, topic, Bytes::from(vec![x; usize::from(x)]));
            }
            5 => node.subscribe(now, topic),
            6 => node.unsubscribe(now, topic),
            7 => {
                let _ = node.announce_identity(now, x % 2 == 0, x % 3 == 0);
            }
            8 => {
                let _ = node.find_agent(now, crate::AgentId::from_bytes([x; 32]));
            }
            9 => node.handle_dial_failed(now, addr(x)),
            _ => {
                let peer_addr = PeerAddr {
                    id: peers[(x % 6) as usize],
                    addrs: vec![addr(x)],
                };
                let frame: Frame = match op % 16 {
                    10 => wire::Hello {
                        agent: crate::AgentId::from_bytes([x; 32]),
                        addrs: vec![addr(x)],
                    }
                    .into(),
                    11 => match x % 4 {
                        0 => wire::Join {
                            addrs: vec![addr(x)],
                        }
                        .into(),
                        1 => wire::ForwardJoin {
                            joiner: peer_addr,
                            ttl: x % 8,
                        }
                        .into(),
                        2 => wire::Neighbor {
                            high_priority: x % 2 == 0,
                        }
                        .into(),
                        _ => wire::Shuffle {
                            origin: peer_addr.clone(),
                            peers: vec![peer_addr; usize::from(x % 5)],
                            ttl: x % 7,
                        }
                        .into(),
                    },
                    12 => match x % 4 {
                        0 => wire::NeighborReply {
                            accepted: x % 2 == 0,
                        }
                        .into(),
                        1 => wire::Disconnect { alive: x % 2 == 0 }.into(),
                        2 => wire::Ping { seq: u64::from(x) }.into(),
                        _ => wire::PingReq {
                            target: peers[(x % 6) as usize],
                            seq: u64::from(x),
                        }
                        .into(),
                    },
                    13 => wire::Interest {
                        topics: vec![topic],
                    }
                    .into(),
                    14 => {
                        let id = wire::MessageId([x; 32]);
                        match x % 3 {
                            0 => wire::IHave {
                                topic,
                                entries: vec![wire::IHaveEntry { id, hops: x }],
                            }
                            .into(),
                            1 => wire::Graft {
                                topic,
                                ids: vec![id],
                            }
                            .into(),
                            _ => wire::Prune { topic }.into(),
                        }
                    }
                    _ => match x % 3 {
                        0 => wire::Query {
                            id: u64::from(x),
                            target: wire::QueryTarget::Agent(crate::AgentId::from_bytes([x; 32])),
                            ttl: x % 4,
                        }
                        .into(),
                        1 => wire::SyncRequest {
                            max_records: u32::from(x),
                        }
                        .into(),
                        _ => {
                            // A message with a bad signature: must be rejected, never relayed.
                            let k = AgentKeypair::from_seed([x; 32]);
                            let mut s = wire::Signed::sign(&k, Domain::PubSubMessage, &x, true);
                            s.body = Bytes::from(vec![x, x]);
                            wire::Gossip {
                                topic,
                                hops: x,
                                message: s,
                            }
                            .into()
                        }
                    },
                };
                if let Ok(bytes) = frame.encode() {
                    let _ = node.handle_frame(now, p, &bytes);
                }
            }
        }
        node.check_invariants(caps)
            .unwrap_or_else(|e| panic!("invariant broken: {e}"));
        while node.poll_transmit().is_some() {}
        while node.poll_action().is_some() {}
        while node.poll_event().is_some() {}
    }
}
