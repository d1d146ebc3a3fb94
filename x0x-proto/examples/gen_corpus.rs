//! Writes a small seed corpus for the fuzz targets: one valid encoding of every frame kind,
//! plus keys, a certificate and a few broken inputs.
//!
//! Run: `cargo run -p x0x-proto --example gen_corpus` (writes into `fuzz/corpus/`).

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use x0x_proto::identity::{AgentCertificate, AgentKeypair, Domain, MachineKeypair, UserKeypair};
use x0x_proto::wire::*;

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
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
        ShuffleReply { peers: vec![peer] }.into(),
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
            message: signed.clone(),
        }
        .into(),
        IHave {
            topic,
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
    write(&kd, "certificate", &postcard::to_allocvec(&cert).unwrap());
    println!(
        "wrote {} frames and 5 key inputs under {}",
        frames.len(),
        root.display()
    );
}
