//! [`Identity`]: the keypairs a node acts with.

use crate::identity::{AgentCertificate, AgentKeypair, MachineKeypair, UserKeypair};

/// The keys a node acts with.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The machine key: the transport identity, proven by the driver's TLS handshake.
    pub machine: MachineKeypair,
    /// The agent key: signs messages and announcements.
    pub agent: AgentKeypair,
    /// The optional user key and the certificate binding the agent to it.
    pub user: Option<(UserKeypair, AgentCertificate)>,
}

impl Identity {
    /// An identity with machine and agent keys and no user.
    pub fn new(machine: MachineKeypair, agent: AgentKeypair) -> Self {
        Self {
            machine,
            agent,
            user: None,
        }
    }

    /// Deterministic identity from one 32-byte seed (tests and simulations).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let m = blake3::derive_key("x0x-rs identity-from-seed machine v1", &seed);
        let a = blake3::derive_key("x0x-rs identity-from-seed agent v1", &seed);
        Self::new(MachineKeypair::from_seed(m), AgentKeypair::from_seed(a))
    }

    /// Deterministic **stand-in** identity for large simulations (see
    /// [`crate::identity::stand_in`]); only nodes with
    /// [`Config::allow_stand_in_signatures`](super::Config::allow_stand_in_signatures) accept what
    /// it signs.
    #[cfg(feature = "stand-in-crypto")]
    pub fn stand_in_from_seed(seed: [u8; 32]) -> Self {
        let m = blake3::derive_key("x0x-rs identity-from-seed machine v1", &seed);
        let a = blake3::derive_key("x0x-rs identity-from-seed agent v1", &seed);
        Self::new(
            MachineKeypair::stand_in_from_seed(m),
            AgentKeypair::stand_in_from_seed(a),
        )
    }
}
