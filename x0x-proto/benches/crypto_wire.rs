//! Criterion benchmarks of the costs every message pays: ML-DSA-65 sign and verify (cold key
//! and cached key), and frame encode / decode.
//!
//! Run: `cargo bench -p x0x-proto --bench crypto_wire`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use x0x_proto::identity::{AgentKeypair, Domain, PublicKey};
use x0x_proto::wire::{Frame, Gossip, NO_DEPTH, Signed, TopicId};

fn crypto(c: &mut Criterion) {
    let key = AgentKeypair::from_seed([7; 32]);
    let msg = vec![0xab; 1024];
    let sig = key.sign(Domain::PubSubMessage, &msg);

    c.bench_function("keygen_from_seed", |b| {
        b.iter(|| AgentKeypair::from_seed(black_box([9; 32])))
    });
    // ML-DSA signing loops a message-dependent number of times (rejection sampling), and our
    // signatures are deterministic: vary the message so the figure is the mean, not one
    // message's fixed cost.
    let mut counter = 0u64;
    let mut varied = msg.clone();
    c.bench_function("sign_1KiB", |b| {
        b.iter(|| {
            counter += 1;
            varied[..8].copy_from_slice(&counter.to_le_bytes());
            key.sign(Domain::PubSubMessage, black_box(&varied))
        })
    });
    // The drivers' signer (aws-lc-rs, hedged): `--features aws-lc-rs`, which also moves the
    // verify benches below to aws-lc-rs.
    #[cfg(feature = "aws-lc-rs")]
    {
        let fast = key.with_fast_signing();
        c.bench_function("sign_1KiB_aws_lc", |b| {
            b.iter(|| fast.sign(Domain::PubSubMessage, black_box(&msg)))
        });
    }
    let pk_bytes = *key.public_key().as_bytes();
    c.bench_function("verify_1KiB_cold_key", |b| {
        b.iter(|| {
            let pk = PublicKey::from_bytes(black_box(&pk_bytes)).unwrap();
            pk.verify(Domain::PubSubMessage, &msg, &sig).unwrap()
        })
    });
    let cached = PublicKey::from_bytes(&pk_bytes).unwrap();
    cached.verify(Domain::PubSubMessage, &msg, &sig).unwrap();
    c.bench_function("verify_1KiB_cached_key", |b| {
        b.iter(|| {
            cached
                .verify(Domain::PubSubMessage, black_box(&msg), &sig)
                .unwrap()
        })
    });
}

fn wire(c: &mut Criterion) {
    let key = AgentKeypair::from_seed([7; 32]);
    let payload = Bytes::from(vec![0x5a; 1024]);
    let signed = Signed::sign(&key, Domain::PubSubMessage, &payload, false);
    let frame = Frame::Gossip(Gossip {
        topic: TopicId::from_name("bench"),
        hops: 3,
        root: 0,
        depth: NO_DEPTH,
        message: signed,
    });
    let bytes = frame.encode().unwrap();
    c.bench_function("frame_encode_gossip_1KiB", |b| {
        b.iter(|| black_box(&frame).encode().unwrap())
    });
    c.bench_function("frame_decode_gossip_1KiB", |b| {
        b.iter(|| Frame::decode(black_box(&bytes)).unwrap())
    });
    let ping = Frame::Ping(x0x_proto::wire::Ping { seq: 42 })
        .encode()
        .unwrap();
    c.bench_function("frame_decode_ping", |b| {
        b.iter(|| Frame::decode(black_box(&ping)).unwrap())
    });
}

criterion_group!(benches, crypto, wire);
criterion_main!(benches);
