use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::signed::batch_tree;
use super::*;
use crate::identity::{
    AgentId, AgentKeypair, Domain, MachineId, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, Signature,
    SignerId, VerifyError,
};

fn arb_id32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn arb_machine() -> impl Strategy<Value = MachineId> {
    arb_id32().prop_map(MachineId::from_bytes)
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
    ]
}

fn arb_addrs() -> impl Strategy<Value = Vec<SocketAddr>> {
    proptest::collection::vec(arb_addr(), 0..=MAX_ADDRS_PER_PEER)
}

fn arb_peer() -> impl Strategy<Value = PeerAddr> {
    (arb_machine(), proptest::collection::vec(arb_addr(), 0..4))
        .prop_map(|(id, addrs)| PeerAddr { id, addrs })
}

fn arb_peers() -> impl Strategy<Value = Vec<PeerAddr>> {
    proptest::collection::vec(arb_peer(), 0..12)
}

fn arb_signed() -> impl Strategy<Value = Signed> {
    (
        arb_id32(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..512),
        any::<u8>(),
        proptest::option::of((any::<u16>(), any::<u16>(), 0usize..10)),
    )
        .prop_map(|(signer, with_key, body, fill, batch)| Signed {
            signer: SignerId::Agent(AgentId::from_bytes(signer)),
            signer_key: with_key.then(|| PublicKey::from_bytes(&[fill; PUBLIC_KEY_LEN]).unwrap()),
            body: Bytes::from(body),
            batch: batch.map(|(index, count, depth)| {
                Box::new(BatchProof {
                    index,
                    count,
                    path: vec![[fill; 32]; depth],
                })
            }),
            signature: Signature::from_bytes(&[fill; SIGNATURE_LEN]).unwrap(),
        })
}

fn arb_record() -> impl Strategy<Value = Record> {
    (any::<bool>(), arb_signed()).prop_map(|(rv, signed)| Record {
        kind: if rv {
            RecordKind::Rendezvous
        } else {
            RecordKind::Announcement
        },
        signed,
    })
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let topic = || arb_id32().prop_map(TopicId);
    let msg = || arb_id32().prop_map(MessageId);
    prop_oneof![
        (arb_id32(), arb_addrs()).prop_map(|(a, addrs)| Frame::Hello(Hello {
            agent: AgentId::from_bytes(a),
            addrs
        })),
        arb_addrs().prop_map(|addrs| Frame::Join(Join { addrs })),
        (arb_peer(), any::<u8>())
            .prop_map(|(joiner, ttl)| Frame::ForwardJoin(ForwardJoin { joiner, ttl })),
        any::<bool>().prop_map(|high_priority| Frame::Neighbor(Neighbor { high_priority })),
        any::<bool>().prop_map(|accepted| Frame::NeighborReply(NeighborReply { accepted })),
        any::<bool>().prop_map(|alive| Frame::Disconnect(Disconnect { alive })),
        (arb_peer(), arb_peers(), any::<u8>())
            .prop_map(|(origin, peers, ttl)| Frame::Shuffle(Shuffle { origin, peers, ttl })),
        arb_peers().prop_map(|peers| Frame::ShuffleReply(ShuffleReply { peers })),
        any::<u64>().prop_map(|seq| Frame::Ping(Ping { seq })),
        any::<u64>().prop_map(|seq| Frame::Ack(Ack { seq })),
        (arb_machine(), any::<u64>())
            .prop_map(|(target, seq)| Frame::PingReq(PingReq { target, seq })),
        (arb_machine(), any::<u64>(), any::<bool>())
            .prop_map(|(target, seq, alive)| Frame::PingReqAck(PingReqAck { target, seq, alive })),
        (topic(), any::<u8>(), any::<(u32, u8)>(), arb_signed()).prop_map(
            |(topic, hops, (root, depth), message)| Frame::Gossip(Gossip {
                topic,
                hops,
                root,
                depth,
                message
            })
        ),
        (
            topic(),
            any::<(u32, u8)>(),
            proptest::collection::vec((msg(), any::<u8>()), 0..40)
        )
            .prop_map(|(topic, (root, depth), e)| Frame::IHave(IHave {
                topic,
                root,
                depth,
                entries: e
                    .into_iter()
                    .map(|(id, hops)| IHaveEntry { id, hops })
                    .collect()
            })),
        (topic(), proptest::collection::vec(msg(), 0..40))
            .prop_map(|(topic, ids)| Frame::Graft(Graft { topic, ids })),
        topic().prop_map(|topic| Frame::Prune(Prune { topic })),
        proptest::collection::vec(topic(), 0..40)
            .prop_map(|topics| Frame::Interest(Interest { topics })),
        any::<u32>().prop_map(|max_records| Frame::SyncRequest(SyncRequest { max_records })),
        proptest::collection::vec(arb_record(), 0..3)
            .prop_map(|records| Frame::SyncRecords(SyncRecords { records })),
        (any::<u64>(), arb_id32(), any::<bool>(), any::<u8>()).prop_map(|(id, a, rv, ttl)| {
            let a = AgentId::from_bytes(a);
            let target = if rv {
                QueryTarget::Rendezvous(a)
            } else {
                QueryTarget::Agent(a)
            };
            Frame::Query(Query { id, target, ttl })
        }),
        (any::<u64>(), proptest::collection::vec(arb_record(), 0..3))
            .prop_map(|(id, records)| Frame::QueryHit(QueryHit { id, records })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_frame_round_trips(frame in arb_frame()) {
        let bytes = frame.encode().unwrap();
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        prop_assert_eq!(bytes[1], frame.kind().byte());
        prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame.clone());
        prop_assert_eq!(Frame::decode_shared(&bytes).unwrap(), frame);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Frame::decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(
        kind in proptest::sample::select(FrameKind::ALL),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![WIRE_VERSION, kind.byte()];
        bytes.extend_from_slice(&body);
        let shared = Frame::decode_shared(&Bytes::copy_from_slice(&bytes));
        match Frame::decode(&bytes) {
            Ok(f) => {
                // Whatever decodes re-encodes to the same bytes: one encoding per frame.
                let again = f.encode().unwrap();
                prop_assert_eq!(again.as_ref(), &bytes[..]);
                prop_assert_eq!(shared, Ok(f));
            }
            Err(_) => prop_assert!(shared.is_err()),
        }
    }

    #[test]
    fn truncated_frames_are_rejected(frame in arb_frame(), cut in 1usize..64) {
        let bytes = frame.encode().unwrap();
        let keep = bytes.len().saturating_sub(cut);
        prop_assert!(Frame::decode(&bytes[..keep]).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected(frame in arb_frame(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = frame.encode().unwrap().to_vec();
        bytes.extend_from_slice(&extra);
        prop_assert!(Frame::decode(&bytes).is_err());
    }
}

#[test]
fn header_errors_are_typed() {
    assert_eq!(Frame::decode(&[]), Err(DecodeError::TooShort(0)));
    assert_eq!(Frame::decode(&[1]), Err(DecodeError::TooShort(1)));
    assert_eq!(
        Frame::decode(&[9, 1]),
        Err(DecodeError::UnsupportedVersion(9))
    );
    assert_eq!(
        Frame::decode(&[1, 0xee]),
        Err(DecodeError::UnknownKind(0xee))
    );
    let big = vec![1u8; MAX_FRAME_LEN + 1];
    assert!(matches!(
        Frame::decode(&big),
        Err(DecodeError::TooLarge {
            limit: MAX_FRAME_LEN,
            ..
        })
    ));
    // A control kind has its own, smaller limit, checked before the body is read.
    let mut ping = vec![WIRE_VERSION, FrameKind::Ping.byte()];
    ping.resize(MAX_CONTROL_FRAME_LEN + 1, 0);
    assert!(matches!(
        Frame::decode(&ping),
        Err(DecodeError::TooLarge {
            limit: MAX_CONTROL_FRAME_LEN,
            ..
        })
    ));
}

#[test]
fn kinds_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for k in FrameKind::ALL {
        assert!(seen.insert(k.byte()), "duplicate tag {k}");
        assert_eq!(FrameKind::from_byte(k.byte()), Some(*k));
        assert!(k.max_len() <= MAX_FRAME_LEN);
    }
}

#[test]
fn lists_claiming_huge_lengths_are_refused_without_allocating() {
    // Interest with a varint length of 2^32: the bounded decoder refuses it from the prefix.
    let bytes = [
        WIRE_VERSION,
        FrameKind::Interest.byte(),
        0x80,
        0x80,
        0x80,
        0x80,
        0x10,
    ];
    assert!(matches!(
        Frame::decode(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
    // One element over the cap is refused too.
    let too_many = Frame::Interest(Interest {
        topics: vec![TopicId([0; 32]); MAX_TOPICS_PER_FRAME + 1],
    });
    assert!(matches!(
        too_many.encode(),
        Err(EncodeError::TooManyEntries { .. })
    ));
    let mut body = Vec::new();
    body.extend_from_slice(&[WIRE_VERSION, FrameKind::Interest.byte()]);
    let n = MAX_TOPICS_PER_FRAME + 1;
    body.extend_from_slice(&[(n as u8 & 0x7f) | 0x80, (n >> 7) as u8]);
    body.extend(std::iter::repeat_n(0u8, 32 * n));
    assert!(matches!(
        Frame::decode(&body),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn oversized_gossip_is_refused_at_encode() {
    let k = AgentKeypair::from_seed([1; 32]);
    let mut signed = Signed::sign(&k, Domain::PubSubMessage, &"x", false);
    signed.body = Bytes::from(vec![0u8; MAX_FRAME_LEN]);
    let f = Frame::Gossip(Gossip {
        topic: TopicId([0; 32]),
        hops: 0,
        root: 0,
        depth: NO_DEPTH,
        message: signed,
    });
    assert!(matches!(
        f.encode(),
        Err(EncodeError::TooLarge {
            kind: FrameKind::Gossip,
            ..
        })
    ));
}

#[test]
fn signed_content_opens_only_with_the_right_key_and_domain() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        n: u32,
        s: String,
    }
    let k = AgentKeypair::from_seed([2; 32]);
    let body = Body {
        n: 7,
        s: "hi".into(),
    };
    let signed = Signed::sign(&k, Domain::PubSubMessage, &body, true);
    assert_eq!(signed.id(), MessageId::of_body(&signed.body));
    let key = signed.signer_key.clone().unwrap();
    assert_eq!(
        signed.open::<Body>(&key, Domain::PubSubMessage).unwrap(),
        body
    );
    assert_eq!(
        signed.open::<Body>(&key, Domain::DirectMessage),
        Err(OpenError::Verify(VerifyError::BadSignature))
    );
    let other = AgentKeypair::from_seed([3; 32]);
    assert_eq!(
        signed.open::<Body>(other.public_key(), Domain::PubSubMessage),
        Err(OpenError::Verify(VerifyError::IdMismatch))
    );
    let mut tampered = signed.clone();
    let mut b = tampered.body.to_vec();
    b[0] ^= 1;
    tampered.body = Bytes::from(b);
    assert_eq!(
        tampered.open::<Body>(&key, Domain::PubSubMessage),
        Err(OpenError::Verify(VerifyError::BadSignature))
    );
    // A frame carrying it survives the wire unchanged and still verifies.
    let f = Frame::Gossip(Gossip {
        topic: TopicId::from_name("t"),
        hops: 3,
        root: 0,
        depth: NO_DEPTH,
        message: signed,
    });
    let Frame::Gossip(g) = Frame::decode(&f.encode().unwrap()).unwrap() else {
        panic!("kind")
    };
    assert_eq!(
        g.message.open::<Body>(&key, Domain::PubSubMessage).unwrap(),
        body
    );
}

/// A GOSSIP decoded from a shared buffer keeps its message body and signature in that buffer
/// (no copies), and is the same frame `decode` gives.
#[test]
fn shared_decoding_borrows_the_gossip_message_from_the_frame() {
    let key = AgentKeypair::from_seed([4; 32]);
    let message = Signed::sign(&key, Domain::PubSubMessage, &7u32, false);
    let bytes = Frame::Gossip(Gossip {
        topic: TopicId::from_name("t"),
        hops: 2,
        root: 0,
        depth: NO_DEPTH,
        message,
    })
    .encode()
    .unwrap();
    let Frame::Gossip(g) = Frame::decode_shared(&bytes).unwrap() else {
        panic!("kind")
    };
    let inside = |p: *const u8| bytes.as_ptr_range().contains(&p);
    assert!(inside(g.message.body.as_ptr()));
    assert!(inside(g.message.signature.as_bytes().as_ptr()));
    assert_eq!(Frame::Gossip(g), Frame::decode(&bytes).unwrap());
    // The canonical-encoding rule holds on this path too.
    let mut overlong = bytes.to_vec();
    overlong.push(0);
    assert!(Frame::decode_shared(&Bytes::from(overlong)).is_err());
}

#[test]
fn topic_ids_are_stable_and_display_short() {
    let t = TopicId::from_name("chat");
    assert_eq!(t, TopicId::from_name("chat"));
    assert_ne!(t, TopicId::from_name("chat2"));
    assert_eq!(format!("{t}").len(), 10);
    assert_eq!(format!("{t:#}").len(), 64);
}

/// `Ack { seq: 0x1fffff }` with its varint padded by a zero continuation byte (found by the
/// `frame_decode` fuzz target): the same value, so the decoder refuses it rather than let one
/// frame have two encodings.
#[test]
fn overlong_varints_are_refused() {
    let canonical = Frame::from(Ack { seq: 0x1f_ffff }).encode().unwrap();
    assert_eq!(&canonical[..], &[WIRE_VERSION, 0x19, 0xff, 0xff, 0x7f]);
    assert!(Frame::decode(&canonical).is_ok());
    let overlong = [WIRE_VERSION, 0x19, 0xff, 0xff, 0xff, 0x00];
    assert!(matches!(
        Frame::decode(&overlong),
        Err(DecodeError::Malformed { .. })
    ));
    assert!(matches!(
        Frame::decode_shared(&Bytes::copy_from_slice(&overlong)),
        Err(DecodeError::Malformed { .. })
    ));
}

// ----- batch signatures -----

proptest! {
    /// Every leaf's path leads to the root, and no other leaf, index or count does.
    #[test]
    fn batch_paths_lead_to_the_root(n in 2usize..=MAX_BATCH, salt in any::<u8>(), pick in any::<usize>()) {
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| *blake3::hash(&[salt, i as u8, (i >> 8) as u8]).as_bytes()).collect();
        let (root, paths) = batch_tree(&leaves);
        for (i, (leaf, path)) in leaves.iter().zip(&paths).enumerate() {
            let proof = BatchProof { index: i as u16, count: n as u16, path: path.clone() };
            prop_assert_eq!(proof.root(leaf), Some(root));
            prop_assert!(path.len() <= 8);
        }
        let i = pick % n;
        let j = (i + 1) % n;
        let proof = BatchProof { index: i as u16, count: n as u16, path: paths[i].clone() };
        // Another leaf with this path does not reach the root.
        prop_assert_ne!(proof.root(&leaves[j]), Some(root));
        // Nor does this leaf claiming another index. (Another count can reach the same
        // root; the count is bound by the signed batch message instead, see
        // `a_batch_is_signed_once_and_each_member_opens_alone`.)
        let moved = BatchProof { index: j as u16, ..proof.clone() };
        prop_assert_ne!(moved.root(&leaves[i]), Some(root));
        // A longer path is refused outright.
        let mut longer = proof.clone();
        longer.path.push([0; 32]);
        prop_assert_eq!(longer.root(&leaves[i]), None);
    }
}

#[test]
fn batch_proofs_of_the_wrong_shape_are_refused() {
    let leaf = [1u8; 32];
    for (index, count) in [(0, 0), (0, 1), (2, 2), (0, (MAX_BATCH + 1) as u16)] {
        let proof = BatchProof {
            index,
            count,
            path: vec![[0; 32]; 9],
        };
        assert_eq!(proof.root(&leaf), None, "index {index} count {count}");
    }
}

#[test]
fn a_batch_is_signed_once_and_each_member_opens_alone() {
    let key = AgentKeypair::from_seed([3; 32]);
    let bodies: Vec<Bytes> = (0u8..5)
        .map(|i| Bytes::from(postcard::to_allocvec(&vec![i; 10]).unwrap()))
        .collect();
    let signed = Signed::sign_batch(&key, Domain::PubSubMessage, bodies.clone(), true);
    assert_eq!(signed.len(), 5);
    for (s, b) in signed.iter().zip(&bodies) {
        assert_eq!(s.body, *b);
        assert_eq!(
            s.signature, signed[0].signature,
            "one signature for the batch"
        );
        assert_eq!(
            s.id(),
            MessageId::of_body(b),
            "ids do not depend on batching"
        );
        let v: Vec<u8> = s.open(key.public_key(), Domain::PubSubMessage).unwrap();
        assert_eq!(v.len(), 10);
        // Not valid for another domain.
        assert!(
            s.open::<Vec<u8>>(key.public_key(), Domain::DirectMessage)
                .is_err()
        );
    }
    // A member with a swapped body does not verify.
    let mut forged = signed[1].clone();
    forged.body = signed[2].body.clone();
    assert!(
        forged
            .open::<Vec<u8>>(key.public_key(), Domain::PubSubMessage)
            .is_err()
    );
    // A member claiming a larger batch (same path shape for index 0 of 5 vs 6) does not.
    let mut recounted = signed[0].clone();
    if let Some(p) = recounted.batch.as_mut() {
        p.count = 6;
    }
    assert!(
        recounted
            .open::<Vec<u8>>(key.public_key(), Domain::PubSubMessage)
            .is_err()
    );
    // A lone body is signed alone.
    let one = Signed::sign_batch(&key, Domain::PubSubMessage, vec![bodies[0].clone()], false);
    assert!(one[0].batch.is_none());
    let _: Vec<u8> = one[0]
        .open(key.public_key(), Domain::PubSubMessage)
        .unwrap();
}
