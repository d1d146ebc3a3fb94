//! Identity types, re-exported from [`x0x_proto::identity`].
//!
//! Three ML-DSA-65 keys: the machine key (the TLS identity of this host), the agent key
//! (signs messages) and an optional user key (certifies agents with an [`AgentCertificate`]).

pub use x0x_proto::identity::{
    AgentCertificate, AgentId, AgentKeypair, GenerateError, KeyDecodeError, MachineId,
    MachineKeypair, PublicKey, UserId, UserKeypair,
};
