//! Writes a small seed corpus for the fuzz targets: one valid encoding of every frame kind,
//! plus keys, certificates, signed envelopes, announcement and rendezvous bodies (fresh,
//! stale, future, expired, over-long), presence records (live, expired, too long, another
//! machine's), replicated-store changes and anti-entropy bodies, and a few node operation
//! sequences.
//!
//! Run: `cargo run -p x0x-proto --example gen_corpus` (writes into `fuzz/corpus/`).

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use x0x_proto::announce::{
    IdentityAnnouncement, MachineAnnouncement, NatHints, RendezvousRecord, UserAnnouncement,
};
use x0x_proto::identity::{AgentCertificate, AgentKeypair, Domain, MachineKeypair, UserKeypair};
use x0x_proto::wire::*;

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// Writes `value`'s postcard encoding.
fn write_postcard<T: serde::Serialize>(dir: &Path, name: &str, value: &T) {
    write(dir, name, &postcard::to_allocvec(value).unwrap());
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let agent = AgentKeypair::from_seed([1; 32]);
    let machine = MachineKeypair::from_seed([2; 32]);
    let user = UserKeypair::from_seed([3; 32]);
    let addr: SocketAddr = "127.0.0.1:5483".parse().unwrap();
    let peer = PeerAddr {
        id: machine.machine_id(),
        addrs: vec![addr],
    };
    let topic = TopicId::from_name("corpus");
    let signed = Signed::sign(
        &agent,
        Domain::PubSubMessage,
        &Bytes::from_static(b"hello"),
        true,
    );
    let id = signed.id();
    let presence = PresenceRecord {
        agent: agent.agent_id(),
        machine: machine.machine_id(),
        addresses: vec![addr],
        since: 1_800_000_000,
        expires: 1_800_000_090,
        seq: 1,
    };
    let beacon = Signed::sign(&machine, Domain::PresenceBeacon, &presence, true);
    let frames: Vec<Frame> = vec![
        Hello {
            agent: agent.agent_id(),
            addrs: vec![addr],
        }
        .into(),
        Join { addrs: vec![addr] }.into(),
        ForwardJoin {
            joiner: peer.clone(),
            ttl: 6,
        }
        .into(),
        Neighbor {
            high_priority: true,
        }
        .into(),
        NeighborReply { accepted: true }.into(),
        Disconnect { alive: true }.into(),
        Shuffle {
            origin: peer.clone(),
            peers: vec![peer.clone(); 3],
            ttl: 6,
        }
        .into(),
        ShuffleReply {
            peers: vec![peer.clone()],
        }
        .into(),
        Ping { seq: 1 }.into(),
        Ack { seq: 1 }.into(),
        PingReq {
            target: machine.machine_id(),
            seq: 2,
        }
        .into(),
        PingReqAck {
            target: machine.machine_id(),
            seq: 2,
            alive: true,
        }
        .into(),
        Gossip {
            topic,
            hops: 1,
            root: 0,
            depth: NO_DEPTH,
            message: signed.clone(),
        }
        .into(),
        IHave {
            topic,
            root: 0,
            depth: NO_DEPTH,
            entries: vec![IHaveEntry { id, hops: 2 }],
        }
        .into(),
        Graft {
            topic,
            ids: vec![id],
        }
        .into(),
        Prune { topic }.into(),
        Interest {
            topics: vec![topic],
        }
        .into(),
        SyncRequest { max_records: 100 }.into(),
        SyncRecords {
            records: vec![Record {
                kind: RecordKind::Announcement,
                signed: signed.clone(),
            }],
        }
        .into(),
        Query {
            id: 7,
            target: QueryTarget::Agent(agent.agent_id()),
            ttl: 3,
        }
        .into(),
        QueryHit {
            id: 7,
            records: vec![Record {
                kind: RecordKind::Rendezvous,
                signed: signed.clone(),
            }],
        }
        .into(),
        Beacon {
            record: beacon.clone(),
        }
        .into(),
        PresenceQuery {
            id: 9,
            ttl: 2,
            target: Some(agent.agent_id()),
        }
        .into(),
        PresenceAnswer {
            id: 9,
            records: vec![beacon],
        }
        .into(),
        Observed { addr }.into(),
        PunchRequest {
            target: machine.machine_id(),
        }
        .into(),
        PunchNotify { peer: peer.clone() }.into(),
        TopicWalk {
            topic,
            origin: peer.clone(),
            ttl: 3,
        }
        .into(),
        TopicLink {
            topic,
            accepted: Some(true),
        }
        .into(),
        Direct {
            envelope: x0x_proto::direct::DirectEnvelope {
                request_id: x0x_proto::direct::RequestId([5; 16]),
                sender: agent.agent_id(),
                recipient: agent.agent_id(),
                created_at_ms: 1_000,
                expires_at_ms: 61_000,
                attempt: 0,
                payload: Bytes::from_static(b"direct"),
            },
            binding: None,
        }
        .into(),
        DirectAck {
            request_id: x0x_proto::direct::RequestId([5; 16]),
            sender: agent.agent_id(),
            recipient: agent.agent_id(),
            attempt: 0,
            outcome: x0x_proto::direct::DirectOutcome::Accepted,
        }
        .into(),
        CollabHeads {
            topic,
            heads: vec![[7; 32]],
            reply: true,
        }
        .into(),
        CollabBatches {
            topic,
            batches: vec![Bytes::from(postcard::to_allocvec(&signed).unwrap())],
            more: false,
        }
        .into(),
    ];
    for f in &frames {
        write(
            &root.join("frame_decode"),
            &format!("{}", f.kind()),
            &f.encode().unwrap(),
        );
    }
    write(&root.join("frame_decode"), "empty", b"");
    write(&root.join("frame_decode"), "bad_version", &[9, 1, 0]);
    let kd = root.join("key_decode");
    write(&kd, "machine_key", &machine.to_bytes());
    write(&kd, "agent_key", &agent.to_bytes());
    write(&kd, "user_key", &user.to_bytes());
    write(&kd, "public_key", agent.public_key().as_bytes());
    let cert = AgentCertificate::issue(&user, agent.agent_id(), 1, Some(2));
    write_postcard(&kd, "certificate", &cert);
    let cd = root.join("certificate_decode");
    let cert_bytes = postcard::to_allocvec(&cert).unwrap();
    write(&cd, "certificate", &cert_bytes);
    let forever = AgentCertificate::issue(&user, agent.agent_id(), 1, None);
    write_postcard(&cd, "no_expiry", &forever);
    write(&cd, "truncated", &cert_bytes[..cert_bytes.len() / 2]);

    let sd = root.join("signed_decode");
    write_postcard(&sd, "pubsub", &signed);
    let keyless = Signed::sign(&machine, Domain::MachineAnnouncement, &7u64, false);
    write_postcard(&sd, "keyless", &keyless);

    // Record bodies stamped with the clock the record targets run at.
    let now = x0x_proto::fuzzing::RECORD_FUZZ_NOW_SECS;
    let ad = root.join("announcement_decode");
    let ident = IdentityAnnouncement {
        machine_id: machine.machine_id(),
        addresses: vec![addr],
        announced_at: now,
        nat: Some(NatHints {
            can_receive_direct: Some(true),
            nat_type: Some("full-cone".into()),
        }),
        user: Some(AgentCertificate::issue(
            &user,
            AgentKeypair::from_seed([3; 32]).agent_id(),
            now - 10,
            Some(now + 3600),
        )),
    };
    write_postcard(&ad, "identity", &ident);
    let stale = IdentityAnnouncement {
        announced_at: now - 100_000,
        user: None,
        nat: None,
        ..ident.clone()
    };
    write_postcard(&ad, "identity_stale", &stale);
    let future = IdentityAnnouncement {
        announced_at: now + 100_000,
        ..stale.clone()
    };
    write_postcard(&ad, "identity_future", &future);
    let many = IdentityAnnouncement {
        addresses: vec![addr; 17],
        announced_at: now,
        ..stale
    };
    write_postcard(&ad, "identity_many_addrs", &many);
    let mach = MachineAnnouncement {
        agent_id: agent.agent_id(),
        addresses: vec![addr],
        announced_at: now,
    };
    write_postcard(&ad, "machine", &mach);
    let usr = UserAnnouncement {
        agents: vec![agent.agent_id()],
        announced_at: now,
    };
    write_postcard(&ad, "user", &usr);

    let rd = root.join("rendezvous_decode");
    let live = RendezvousRecord {
        machine_id: machine.machine_id(),
        addresses: vec![addr],
        issued_at_ms: now * 1000,
        expires_at_ms: now * 1000 + 60_000,
    };
    write_postcard(&rd, "live", &live);
    let expired = RendezvousRecord {
        expires_at_ms: now * 1000 - 1,
        ..live.clone()
    };
    write_postcard(&rd, "expired", &expired);
    let boundary = RendezvousRecord {
        expires_at_ms: now * 1000,
        ..live
    };
    write_postcard(&rd, "boundary", &boundary);

    // Presence records of the machine `presence_record_decode` signs with.
    let pd = root.join("presence_record_decode");
    let signer = MachineKeypair::from_seed([5; 32]).machine_id();
    let live = PresenceRecord {
        agent: agent.agent_id(),
        machine: signer,
        addresses: vec![addr],
        since: now - 100,
        expires: now + 90,
        seq: 3,
    };
    write_postcard(&pd, "live", &live);
    let expired = PresenceRecord {
        expires: now,
        ..live.clone()
    };
    write_postcard(&pd, "expired", &expired);
    let too_long = PresenceRecord {
        expires: now + 86_400,
        ..live.clone()
    };
    write_postcard(&pd, "too_long", &too_long);
    let other_machine = PresenceRecord {
        machine: machine.machine_id(),
        ..live
    };
    write_postcard(&pd, "other_machine", &other_machine);

    let nd = root.join("node_ops");
    write(
        &nd,
        "connect_hello_gossip",
        &[0, 1, 7, 10, 1, 3, 15, 1, 2, 2, 0, 40],
    );
    write(
        &nd,
        "subscribe_publish",
        &[5, 0, 0, 4, 0, 9, 14, 2, 3, 2, 0, 200, 1, 1, 0],
    );
    // A sealed envelope (to a key the fuzz target does not hold) and an acknowledgement.
    let dd = root.join("direct_envelope_decode");
    let to = x0x_proto::kem::KemKeypair::from_seed([9; x0x_proto::kem::KEM_SEED_LEN]);
    let (request_id, created, expires) = (x0x_proto::direct::RequestId([3; 16]), 1_000, 61_000);
    let (sender, recipient) = (agent.agent_id(), agent.agent_id());
    let aad = x0x_proto::direct::aad(
        &request_id,
        &sender,
        &machine.machine_id(),
        &recipient,
        created,
        expires,
    );
    let mut rng = <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::from_seed([5; 32]);
    let sealed = x0x_proto::kem::seal(&mut rng, to.public_key(), &aad, b"hello").unwrap();
    let env = x0x_proto::direct::InboxItem::Sealed(x0x_proto::direct::SealedEnvelope {
        request_id,
        sender,
        sender_machine: machine.machine_id(),
        recipient,
        created_at_ms: created,
        expires_at_ms: expires,
        attempt: 1,
        sealed,
    });
    write_postcard(&dd, "sealed", &env);
    write(&dd, "kem_public_key", to.public_key().as_bytes());
    // Changes each agent of the fixture store could send next (the owner's, the writer's, an
    // outsider's, an empty one, one with no past, task-list steps), a payload of two, and the
    // anti-entropy bodies.
    let cc = root.join("collab_changes");
    for (name, data) in x0x_proto::fuzzing::collab_seeds() {
        write(&cc, name, &data);
    }
    // A saved store as the daemon writes it, and the same cut short.
    let ss = root.join("store_snapshot_decode");
    let snapshot = x0x_proto::fuzzing::store_snapshot_seed();
    write(&ss, "kv_three_entries", &snapshot);
    write(&ss, "truncated", &snapshot[..snapshot.len() / 2]);
    println!(
        "wrote {} frames and the record, key and node inputs under {}",
        frames.len(),
        root.display()
    );
}
