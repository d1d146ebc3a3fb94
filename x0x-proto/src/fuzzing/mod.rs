//! Entry points for the fuzz targets in `fuzz/` and for replaying their corpora as plain tests.
//!
//! Each function takes arbitrary bytes, must never panic, and checks an invariant of the
//! decoder it drives. Keeping the bodies here lets the corpus replay run on stable in
//! `cargo test` (see `tests/fuzz_corpus.rs`) while `cargo fuzz` explores.

use crate::identity::{
    AgentCertificate, AgentKeypair, MachineKeypair, PublicKey, Signature, UserKeypair,
};
use bytes::Bytes;

use crate::wire::{Frame, MAX_FRAME_LEN};

mod collab;

pub use self::collab::{collab_changes, collab_seeds, store_snapshot_decode, store_snapshot_seed};

/// Decodes a `T` from `data`, or `None`; whatever decodes re-encodes to bytes that decode to
/// the same value (`what` names it in the panic).
pub(crate) fn round_trip<T>(data: &[u8], what: &str) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v = postcard::from_bytes::<T>(data).ok()?;
    let again = postcard::to_allocvec(&v)
        .unwrap_or_else(|e| panic!("decoded {what} does not re-encode: {e}"));
    let back: T = postcard::from_bytes(&again)
        .unwrap_or_else(|e| panic!("re-encoded {what} does not decode: {e}"));
    assert_eq!(back, v, "{what} round trip changed it");
    Some(v)
}

/// Decodes a frame, copying and sharing; whatever decodes must re-encode to the same bytes.
pub fn frame_decode(data: &[u8]) {
    // The shared decoder (message parts borrowed from the buffer) agrees with the copying one.
    let shared = Frame::decode_shared(&Bytes::copy_from_slice(data));
    match (&Frame::decode(data), &shared) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "shared decoding differs"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("decoders disagree: {a:?} / {b:?}"),
    }
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

/// Decodes an agent certificate; whatever decodes re-encodes to a value that decodes to the
/// same certificate, and checking it (against its own agent, another agent, any time) returns
/// a verdict rather than panicking. A certificate that verifies must name the agent it was
/// checked for and be within its validity window.
pub fn certificate_decode(data: &[u8]) {
    let Some(cert) = round_trip::<AgentCertificate>(data, "certificate") else {
        return;
    };
    let _ = cert.signed_bytes();
    let _ = cert.user_id();
    let own = cert.agent_id();
    for now in [0, cert.issued_at(), u64::MAX] {
        if cert.verify(&own, now).is_ok() {
            assert!(cert.issued_at() <= now.saturating_add(crate::identity::CERT_EXPIRY_SKEW_SECS));
        }
    }
    let other = crate::AgentId::from_bytes([0x5a; 32]);
    if other != own {
        assert!(cert.verify(&other, cert.issued_at()).is_err());
    }
}

/// Decodes signed content (the envelope of every message and record); whatever decodes
/// re-encodes to the same bytes, and opening it for every domain with its attached key returns
/// a verdict, never a panic.
pub fn signed_decode(data: &[u8]) {
    use crate::identity::Domain;
    use crate::wire::Signed;

    let Some(signed) = round_trip::<Signed>(data, "signed content") else {
        return;
    };
    let _ = signed.id();
    let _ = signed.agent();
    if let Some(key) = &signed.signer_key {
        for domain in [
            Domain::AgentCertificate,
            Domain::PubSubMessage,
            Domain::IdentityAnnouncement,
            Domain::MachineAnnouncement,
            Domain::UserAnnouncement,
            Domain::RendezvousRecord,
        ] {
            let _ = signed.open::<crate::broadcast::PubSubBody>(key, domain);
        }
    }
    let _ = signed.decode_body::<crate::announce::IdentityAnnouncement>();
}

/// The node identity of the node targets. Key generation costs more than most inputs do, so
/// it is derived once per process and cloned (the keys are reference-counted); the value is
/// the same every time, so runs stay deterministic.
pub(crate) fn fuzz_identity() -> crate::node::Identity {
    static ID: std::sync::OnceLock<crate::node::Identity> = std::sync::OnceLock::new();
    ID.get_or_init(|| crate::node::Identity::from_seed([1; 32]))
        .clone()
}

/// The agent key that signs the record targets' inputs (derived once, as above).
fn record_signer() -> AgentKeypair {
    static KEY: std::sync::OnceLock<AgentKeypair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| AgentKeypair::from_seed([3; 32])).clone()
}

/// The clock of the record targets: announcements in their seed corpus are stamped with it.
pub const RECORD_FUZZ_NOW_SECS: u64 = 1_800_000_000;

/// Signs `body` (arbitrary bytes, as if a hostile agent signed garbage) with a fixed agent key
/// and hands it to a fresh node as a catch-up record from a connected peer, so the bytes go
/// through the node's real path: verify, decode the body, check freshness and caps, merge.
/// Returns the node and the signing agent.
pub fn feed_record(
    kind: crate::wire::RecordKind,
    domain: crate::identity::Domain,
    body: &[u8],
    now: crate::Time,
) -> Option<(crate::Node, crate::AgentId)> {
    use crate::identity::SigningKey;
    use crate::node::{Config, Direction, Node};
    use crate::wire::{self, Record, Signed};

    let mut config = Config::default();
    config.announce.max_agents = 4;
    config.announce.max_rendezvous = 4;
    let mut node = Node::new(fuzz_identity(), config, [2; 32]).ok()?;
    let peer = crate::MachineId::from_bytes([9; 32]);
    let addr = std::net::SocketAddr::from(([10, 0, 0, 9], 5483));
    node.handle_connected(now, peer, addr, Direction::Inbound);
    let hello: Frame = wire::Hello {
        agent: crate::AgentId::from_bytes([9; 32]),
        addrs: vec![addr],
    }
    .into();
    let _ = node.handle_frame(now, peer, &hello.encode().ok()?);
    let key = record_signer();
    let signed = Signed {
        signer: key.signer_id(),
        signer_key: Some(key.public_key().clone()),
        body: Bytes::copy_from_slice(body),
        batch: None,
        signature: key.sign(domain, body),
    };
    let frame: Frame = wire::SyncRecords {
        records: vec![Record { kind, signed }],
    }
    .into();
    let bytes = frame.encode().ok()?;
    let _ = node.handle_frame(now, peer, &bytes);
    node.check_invariants()
        .unwrap_or_else(|e| panic!("invariant broken: {e}"));
    Some((node, key.agent_id()))
}

/// Decodes the three announcement bodies from `data`; each that decodes round-trips. Then
/// feeds `data` as a correctly signed identity announcement to a node: whatever it accepts is
/// fresh (not stamped in the future beyond the skew, not older than the TTL) and lists at most
/// [`crate::announce::MAX_ANNOUNCED_ADDRS`] addresses.
pub fn announcement_decode(data: &[u8]) {
    use crate::announce::{
        IdentityAnnouncement, MAX_ANNOUNCED_ADDRS, MachineAnnouncement, UserAnnouncement,
    };
    use crate::identity::Domain;
    use crate::wire::RecordKind;

    round_trip::<IdentityAnnouncement>(data, "body");
    round_trip::<MachineAnnouncement>(data, "body");
    round_trip::<UserAnnouncement>(data, "body");

    let now = crate::Time::from_secs(RECORD_FUZZ_NOW_SECS);
    let Some((node, agent)) = feed_record(
        RecordKind::Announcement,
        Domain::IdentityAnnouncement,
        data,
        now,
    ) else {
        return;
    };
    if let Some(found) = node.discovered_agent(now, &agent) {
        assert!(found.addresses.len() <= MAX_ANNOUNCED_ADDRS);
        let cfg = &node.config().announce;
        assert!(found.announced_at <= RECORD_FUZZ_NOW_SECS + cfg.max_clock_skew.as_secs());
        assert!(
            found
                .announced_at
                .saturating_add(cfg.identity_ttl.as_secs())
                >= RECORD_FUZZ_NOW_SECS
        );
        let ann = postcard::from_bytes::<IdentityAnnouncement>(data)
            .unwrap_or_else(|e| panic!("an accepted announcement does not decode: {e}"));
        assert_eq!(found.machine_id, ann.machine_id);
    }
}

/// Decodes a rendezvous record body from `data` (round trip), then feeds `data` as a
/// correctly signed rendezvous record to a node: a record it returns is never expired.
pub fn rendezvous_decode(data: &[u8]) {
    use crate::announce::RendezvousRecord;
    use crate::identity::Domain;
    use crate::wire::RecordKind;

    round_trip::<RendezvousRecord>(data, "record");
    let now = crate::Time::from_secs(RECORD_FUZZ_NOW_SECS);
    let Some((node, agent)) =
        feed_record(RecordKind::Rendezvous, Domain::RendezvousRecord, data, now)
    else {
        return;
    };
    if let Some(rv) = node.cached_rendezvous(now, &agent) {
        assert!(
            rv.expires_at_ms > now.as_millis(),
            "expired record returned"
        );
        assert!(rv.addresses.len() <= crate::announce::MAX_ANNOUNCED_ADDRS);
    }
    // Later, every record has expired or not; asking never panics.
    let _ = node.cached_rendezvous(crate::Time::from_micros(u64::MAX), &agent);
}

/// The machine key that signs `presence_record_decode`'s inputs (derived once).
fn beacon_signer() -> MachineKeypair {
    static KEY: std::sync::OnceLock<MachineKeypair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| MachineKeypair::from_seed([5; 32]))
        .clone()
}

/// Signs `body` with a fixed machine key and hands it to a fresh node as a beacon on the
/// connection that machine authenticated, so arbitrary bytes go through the whole beacon
/// path: signature, decoding, binding to the connection, rate limit, freshness, replay.
/// Returns the node.
pub fn feed_beacon(body: &[u8], now: crate::Time) -> Option<crate::Node> {
    use crate::identity::{Domain, SigningKey};
    use crate::node::{Config, Direction, Node};
    use crate::wire::{self, Signed};

    let mut node = Node::new(fuzz_identity(), Config::default(), [2; 32]).ok()?;
    let key = beacon_signer();
    let peer = key.machine_id();
    let addr = std::net::SocketAddr::from(([10, 0, 0, 5], 5483));
    node.handle_connected(now, peer, addr, Direction::Inbound);
    let hello: Frame = wire::Hello {
        agent: crate::AgentId::from_bytes([5; 32]),
        addrs: vec![addr],
    }
    .into();
    let _ = node.handle_frame(now, peer, &hello.encode().ok()?);
    let record = Signed {
        signer: key.signer_id(),
        signer_key: Some(key.public_key().clone()),
        body: Bytes::copy_from_slice(body),
        batch: None,
        signature: key.sign(Domain::PresenceBeacon, body),
    };
    let frame: Frame = wire::Beacon { record }.into();
    let _ = node.handle_frame(now, peer, &frame.encode().ok()?);
    node.check_invariants()
        .unwrap_or_else(|e| panic!("invariant broken: {e}"));
    Some(node)
}

/// Decodes a presence record body from `data` (round trip), then feeds `data` as a correctly
/// signed beacon to a node: a record it keeps names the connection's machine, has not
/// expired, and lists at most 16 addresses.
pub fn presence_record_decode(data: &[u8]) {
    use crate::wire::PresenceRecord;

    round_trip::<PresenceRecord>(data, "presence record");
    let now = crate::Time::from_secs(RECORD_FUZZ_NOW_SECS);
    let Some(node) = feed_beacon(data, now) else {
        return;
    };
    let Ok(record) = postcard::from_bytes::<PresenceRecord>(data) else {
        return;
    };
    if let Some(held) = node.presence_status(now, &record.agent) {
        assert_eq!(
            held.machine_id,
            beacon_signer().machine_id(),
            "bound to the connection"
        );
        assert!(held.expires > now.as_secs(), "expired record kept");
        assert!(held.addresses.len() <= crate::wire::MAX_ADDRS_PER_PEER);
    }
}

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by name, for corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decode", frame_decode),
    ("key_decode", key_decode),
    ("node_ops", node_ops),
    ("certificate_decode", certificate_decode),
    ("signed_decode", signed_decode),
    ("announcement_decode", announcement_decode),
    ("rendezvous_decode", rendezvous_decode),
    ("direct_envelope_decode", direct_envelope_decode),
    ("presence_record_decode", presence_record_decode),
    ("collab_changes", collab_changes),
    ("store_snapshot_decode", store_snapshot_decode),
];

/// Decodes a sealed-path inbox item (envelope or acknowledgement) and, for an envelope, runs
/// every receiver check against a fixed recipient key at times around its window: a typed
/// verdict each time, and nothing opens that was not sealed to that key. Also feeds the KEM
/// public-key decoder.
pub fn direct_envelope_decode(data: &[u8]) {
    use crate::direct::{DirectConfig, InboxItem, check_window, open_sealed};
    use crate::kem::{KEM_SEED_LEN, KemKeypair, KemPublicKey};
    let _ = KemPublicKey::from_bytes(data);
    let Some(item) = round_trip::<InboxItem>(data, "inbox item") else {
        return;
    };
    let InboxItem::Sealed(env) = item else {
        return;
    };
    let config = DirectConfig::default();
    let kem = KemKeypair::from_seed([7; KEM_SEED_LEN]);
    for at in [
        env.created_at_ms,
        env.created_at_ms.saturating_add(1),
        env.expires_at_ms,
        u64::MAX / 2,
    ] {
        let now = crate::Time::from_millis(at);
        let _ = check_window(&config, now, env.created_at_ms, env.expires_at_ms);
        let opened = open_sealed(&config, now, &env.recipient, &kem, &env.sender, &env);
        // Fuzzed bytes are not sealed to this key: the AEAD must refuse them.
        assert!(
            opened.is_err(),
            "arbitrary bytes opened as a sealed message"
        );
    }
}

/// Drives one [`crate::Node`] with a sequence of operations decoded from `data`: connections
/// and disconnections of a few peers, well-formed frames of every kind built from the input,
/// raw bytes, timer advances and application calls. After every operation it checks the
/// node's invariants: views and caches within their caps, queues bounded, no panic.
pub fn node_ops(data: &[u8]) {
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::identity::{Domain, MachineId};
    use crate::node::{Config, Direction, Node};
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
    let Ok(mut node) = Node::new(fuzz_identity(), config, [2; 32]) else {
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
                let _ = node.handle_frame(now, p, &Bytes::from(raw));
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
                    13 => match x % 4 {
                        0 => wire::Interest {
                            topics: vec![topic],
                        }
                        .into(),
                        1 => wire::PresenceQuery {
                            id: u64::from(x),
                            ttl: x,
                            target: (x % 2 == 0).then(|| crate::AgentId::from_bytes([x; 32])),
                        }
                        .into(),
                        2 => wire::PresenceAnswer {
                            id: u64::from(x),
                            records: vec![wire::Signed::sign(
                                &MachineKeypair::from_seed([x; 32]),
                                Domain::PresenceBeacon,
                                &x,
                                true,
                            )],
                        }
                        .into(),
                        // Signed by a machine that is not the connection's: refused.
                        _ => wire::Beacon {
                            record: wire::Signed::sign(
                                &MachineKeypair::from_seed([x; 32]),
                                Domain::PresenceBeacon,
                                &x,
                                true,
                            ),
                        }
                        .into(),
                    },
                    14 => {
                        let id = wire::MessageId([x; 32]);
                        match x % 3 {
                            0 => wire::IHave {
                                topic,
                                root: u32::from(x),
                                depth: x,
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
                                root: u32::from(x),
                                depth: x,
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
        node.check_invariants()
            .unwrap_or_else(|e| panic!("invariant broken: {e}"));
        while node.poll_transmit().is_some() {}
        while node.poll_action().is_some() {}
        while node.poll_event().is_some() {}
    }
}
