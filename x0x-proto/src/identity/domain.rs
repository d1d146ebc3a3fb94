//! What a signature is for: the [`Domain`] tags and the exact bytes a protocol signature covers.

/// What a signature is for. Each domain's tag starts the signed message ([`signed_message`]),
/// so a signature made for one purpose never verifies for another. The strings are part of the protocol
/// (docs/protocol.md, "Signed bytes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Domain {
    /// A user key certifying an agent key ([`super::AgentCertificate`]).
    AgentCertificate,
    /// An agent signing a pub/sub message envelope.
    PubSubMessage,
    /// An agent signing its identity announcement.
    IdentityAnnouncement,
    /// A machine signing its machine announcement.
    MachineAnnouncement,
    /// A user signing its user announcement.
    UserAnnouncement,
    /// A machine signing a rendezvous record.
    RendezvousRecord,
    /// An agent signing a direct message.
    DirectMessage,
    /// An agent signing the announcement of its ML-KEM-768 key ([`crate::kem`]).
    KemAnnouncement,
    /// A signer signing the root of a batch of bodies, each for its own domain
    /// ([`crate::wire::BatchProof`]).
    Batch,
    /// An application signing its own bytes with the agent key, under a context string of
    /// its choosing ([`application_message`]): never a protocol message.
    Application,
    /// A machine signing its presence record ([`crate::wire::PresenceRecord`]).
    PresenceBeacon,
}

impl Domain {
    /// The domain's tag, placed in every signed message ([`signed_message`]).
    pub const fn context(self) -> &'static [u8] {
        match self {
            Self::AgentCertificate => b"x0x-rs/agent-cert/v1",
            Self::PubSubMessage => b"x0x-rs/pubsub-msg/v1",
            Self::IdentityAnnouncement => b"x0x-rs/identity-announce/v1",
            Self::MachineAnnouncement => b"x0x-rs/machine-announce/v1",
            Self::UserAnnouncement => b"x0x-rs/user-announce/v1",
            Self::RendezvousRecord => b"x0x-rs/rendezvous/v1",
            Self::DirectMessage => b"x0x-rs/direct/v1",
            Self::KemAnnouncement => b"x0x-rs/kem-announce/v1",
            Self::Batch => b"x0x-rs/batch/v1",
            Self::Application => b"x0x-rs/app-sign/v1",
            Self::PresenceBeacon => b"x0x-rs/presence-beacon/v1",
        }
    }

    /// Every domain, for tests and docs.
    pub const ALL: [Self; 11] = [
        Self::AgentCertificate,
        Self::PubSubMessage,
        Self::IdentityAnnouncement,
        Self::MachineAnnouncement,
        Self::UserAnnouncement,
        Self::RendezvousRecord,
        Self::DirectMessage,
        Self::KemAnnouncement,
        Self::Batch,
        Self::Application,
        Self::PresenceBeacon,
    ];
}

/// Longest application context string, bytes.
pub const MAX_APPLICATION_CONTEXT: usize = 255;

/// The message an application signature covers ([`Domain::Application`]):
/// `len(context) as u8 | context | payload`, so the context cannot run into the payload and a
/// signature made under one context never verifies under another. `None` if the context is
/// longer than [`MAX_APPLICATION_CONTEXT`].
pub fn application_message(context: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(context.len()).ok()?;
    let mut out = Vec::with_capacity(1 + context.len() + payload.len());
    out.push(len);
    out.extend_from_slice(context.as_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Starts every protocol signature's message. TLS 1.3 handshake signatures (the only other
/// thing our keys sign) start with 64 spaces (RFC 8446 §4.4.3), so the two never collide.
pub const SIGNED_MESSAGE_TAG: &[u8] = b"x0x-rs/signed/v1\0";

/// The exact bytes an ML-DSA-65 signature (empty FIPS 204 context) covers when `msg` is signed
/// for `domain`: `SIGNED_MESSAGE_TAG | len(tag) as u8 | domain tag | msg`. The length byte
/// makes the split between tag and message unambiguous.
pub fn signed_message(domain: Domain, msg: &[u8]) -> Vec<u8> {
    let ctx = domain.context();
    let mut out = Vec::with_capacity(SIGNED_MESSAGE_TAG.len() + 1 + ctx.len() + msg.len());
    out.extend_from_slice(SIGNED_MESSAGE_TAG);
    // Domain tags are constants under 40 bytes.
    out.push(ctx.len() as u8);
    out.extend_from_slice(ctx);
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for d in Domain::ALL {
            assert!(seen.insert(d.context()), "duplicate context {d:?}");
            assert!(d.context().len() <= 255);
        }
    }
}
