use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::*;
use crate::identity::{AgentKeypair, MachineKeypair};
use crate::kem;

fn t(ms: u64) -> Time {
    Time::from_millis(1_700_000_000_000 + ms)
}

struct Fixture {
    sender: AgentId,
    sender_machine: MachineId,
    recipient: AgentId,
    recipient_kem: KemKeypair,
    other_kem: KemKeypair,
    config: DirectConfig,
}

impl Fixture {
    /// The recipient opening `env` at `now` with its own key, from the expected sender.
    fn open(&self, now: Time, env: &SealedEnvelope) -> Result<Bytes, DirectReject> {
        open_sealed(
            &self.config,
            now,
            &self.recipient,
            &self.recipient_kem,
            &self.sender,
            env,
        )
    }
}

fn fixture() -> Fixture {
    let a = AgentKeypair::from_seed([1; 32]);
    let b = AgentKeypair::from_seed([2; 32]);
    let c = AgentKeypair::from_seed([3; 32]);
    Fixture {
        sender: a.agent_id(),
        sender_machine: MachineKeypair::from_seed([4; 32]).machine_id(),
        recipient: b.agent_id(),
        recipient_kem: b.kem_keypair(),
        other_kem: c.kem_keypair(),
        config: DirectConfig::default(),
    }
}

fn sealed_env(f: &Fixture, created: u64, expires: u64, payload: &[u8]) -> SealedEnvelope {
    let id = RequestId([7; 16]);
    let aad = aad(
        &id,
        &f.sender,
        &f.sender_machine,
        &f.recipient,
        created,
        expires,
    );
    let mut rng = ChaCha8Rng::from_seed([5; 32]);
    let sealed = kem::seal(&mut rng, f.recipient_kem.public_key(), &aad, payload).unwrap();
    SealedEnvelope {
        request_id: id,
        sender: f.sender,
        sender_machine: f.sender_machine,
        recipient: f.recipient,
        created_at_ms: created,
        expires_at_ms: expires,
        attempt: 1,
        sealed,
    }
}

#[test]
fn direct_sealed_envelope_opens_for_its_recipient_only() {
    let f = fixture();
    let now = t(0);
    let env = sealed_env(&f, now.as_millis(), t(60_000).as_millis(), b"hi");
    let open = |kem: &KemKeypair, me: &AgentId, author: &AgentId, env: &SealedEnvelope| {
        open_sealed(&f.config, now, me, kem, author, env)
    };
    assert_eq!(
        open(&f.recipient_kem, &f.recipient, &f.sender, &env).unwrap(),
        Bytes::from_static(b"hi")
    );
    // Another agent's key cannot open it even if it claims to be the recipient.
    assert_eq!(
        open(&f.other_kem, &f.recipient, &f.sender, &env),
        Err(DirectReject::Tampered)
    );
    // Addressed to someone else.
    assert_eq!(
        open(&f.recipient_kem, &f.sender, &f.sender, &env),
        Err(DirectReject::WrongRecipient)
    );
    // Signed (as pub/sub author) by someone other than the claimed sender.
    assert_eq!(
        open(&f.recipient_kem, &f.recipient, &f.recipient, &env),
        Err(DirectReject::ForgedSender)
    );
}

#[test]
fn direct_tampered_ciphertext_is_rejected() {
    let f = fixture();
    let now = t(0);
    let env = sealed_env(&f, now.as_millis(), t(60_000).as_millis(), b"payload");
    let mut bad = env.clone();
    let mut c = bad.sealed.ciphertext.to_vec();
    c[3] ^= 0x40;
    bad.sealed.ciphertext = c.into();
    let r = f.open(now, &bad);
    assert_eq!(r, Err(DirectReject::Tampered));
    assert_eq!(r.unwrap_err().to_string(), "tampered");
    // The AAD binds the header: changing the claimed machine or timestamps breaks the tag.
    let mut moved = env.clone();
    moved.sender_machine = MachineKeypair::from_seed([9; 32]).machine_id();
    assert_eq!(f.open(now, &moved), Err(DirectReject::Tampered));
    let mut later = env;
    later.expires_at_ms += 1;
    assert_eq!(f.open(now, &later), Err(DirectReject::Tampered));
}

#[test]
fn direct_expired_and_far_future_envelopes_are_rejected() {
    let c = DirectConfig::default();
    let now = t(1_000_000);
    let ms = now.as_millis();
    assert_eq!(check_window(&c, now, ms, ms + 1000), Ok(()));
    assert_eq!(
        check_window(&c, now, ms - 5000, ms - 1),
        Err(DirectReject::Expired)
    );
    assert_eq!(
        check_window(&c, now, ms - 5000, ms),
        Err(DirectReject::Expired)
    );
    assert_eq!(
        check_window(&c, now, ms + 31_000, ms + 60_000),
        Err(DirectReject::FromFuture)
    );
    // Within the skew is fine.
    assert_eq!(check_window(&c, now, ms + 29_000, ms + 60_000), Ok(()));
    assert_eq!(
        check_window(&c, now, ms, ms + 601_000),
        Err(DirectReject::BadLifetime)
    );
    assert_eq!(
        check_window(&c, now, ms, ms.saturating_sub(1)),
        Err(DirectReject::BadLifetime)
    );
    // The same checks apply to sealed envelopes, before any decryption.
    let f = fixture();
    let env = sealed_env(&f, ms - 200_000, ms - 100_000, b"old");
    assert_eq!(f.open(now, &env), Err(DirectReject::Expired));
}

#[test]
fn direct_dedup_window_is_bounded_and_counts_evictions() {
    let config = DirectConfig {
        dedup_capacity: 3,
        ..Default::default()
    };
    let mut s = DirectState::new(config, KemKeypair::from_seed([1; 64]));
    let a = AgentKeypair::from_seed([1; 32]).agent_id();
    for i in 0..5u8 {
        s.remember(
            t(u64::from(i)),
            (a, RequestId([i; 16])),
            DirectOutcome::Accepted,
        );
    }
    assert_eq!(s.dedup.len(), 3);
    assert_eq!(s.stats.dedup_evicted, 2);
    assert_eq!(
        s.dedup.get(&(a, RequestId([0; 16]))),
        None,
        "oldest evicted"
    );
    assert_eq!(
        s.dedup.get(&(a, RequestId([4; 16]))),
        Some(DirectOutcome::Accepted)
    );
    // Entries older than the retention (max lifetime + skew) expire on the next insert.
    s.remember(t(700_000), (a, RequestId([9; 16])), DirectOutcome::Accepted);
    assert_eq!(s.dedup.len(), 1);
    assert_eq!(s.stats.dedup_evicted, 2, "expiry is not an eviction");
}

#[test]
fn direct_timeout_adapts_to_measured_rtt() {
    let s0 = DirectState::new(DirectConfig::default(), KemKeypair::from_seed([1; 64]));
    let m = MachineKeypair::from_seed([1; 32]).machine_id();
    let fast_key = RttKey::Machine(m);
    // No sample: the initial timeout, doubled per retry, capped.
    assert_eq!(s0.timeout(fast_key, 1, false), Duration::from_secs(1));
    assert_eq!(s0.timeout(fast_key, 2, false), Duration::from_secs(2));
    assert_eq!(s0.timeout(fast_key, 12, false), Duration::from_secs(30));
    let mut s = s0;
    // A fast link: samples around 1 ms give the 20 ms floor, not a second.
    for _ in 0..10 {
        s.rtt_sample(fast_key, Duration::from_micros(1000));
    }
    assert_eq!(s.timeout(fast_key, 1, false), Duration::from_millis(20));
    // A slow link: 300 ms samples give a timeout above 300 ms (no false timeouts).
    let slow_key = RttKey::Machine(MachineKeypair::from_seed([2; 32]).machine_id());
    for _ in 0..10 {
        s.rtt_sample(slow_key, Duration::from_millis(300));
    }
    let slow = s.timeout(slow_key, 1, false);
    assert!(
        slow > Duration::from_millis(300) && slow < Duration::from_secs(1),
        "{slow:?}"
    );
    assert_eq!(s.srtt(slow_key).map(|d| d.as_millis()), Some(300));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any corruption of a sealed envelope is refused with a typed reason, never a panic,
    /// never delivered.
    #[test]
    fn direct_corrupted_sealed_envelopes_never_open(
        which in 0usize..4,
        pos in any::<usize>(),
        bit in 0u8..8,
    ) {
        let f = fixture();
        let now = t(0);
        let env = sealed_env(&f, now.as_millis(), t(60_000).as_millis(), b"secret payload");
        let mut bad = env.clone();
        let flip = |b: &Bytes| {
            let mut v = b.to_vec();
            let i = pos % v.len();
            v[i] ^= 1 << bit;
            Bytes::from(v)
        };
        match which {
            0 => bad.sealed.ciphertext = flip(&bad.sealed.ciphertext),
            1 => bad.sealed.kem_ciphertext = flip(&bad.sealed.kem_ciphertext),
            2 => bad.sealed.nonce[pos % 12] ^= 1 << bit,
            _ => bad.request_id.0[pos % 16] ^= 1 << bit,
        }
        let r = f.open(now, &bad);
        prop_assert_eq!(r, Err(DirectReject::Tampered));
    }

    /// Arbitrary bytes on the inbox topic decode to an item or fail; never panic.
    #[test]
    fn direct_inbox_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = postcard::from_bytes::<InboxItem>(&bytes);
        let _ = crate::wire::Frame::decode(&bytes);
    }
}
