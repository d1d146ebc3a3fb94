//! Ids: the [`Role`] a key plays, the id of a key in each role ([`MachineId`], [`AgentId`],
//! [`UserId`]) and [`SignerId`], a role and id together.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ID_LEN, KeyDecodeError, PublicKey, VerifyError};
use crate::util::ids::{id_cmp, id_fmt};

/// The role a key plays. Part of the id derivation and of serialised keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A host's transport identity.
    Machine,
    /// A logical agent.
    Agent,
    /// A human owner.
    User,
}

impl Role {
    /// The role's byte in serialised keys.
    pub(super) fn tag(self) -> u8 {
        match self {
            Self::Machine => 1,
            Self::Agent => 2,
            Self::User => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Machine),
            2 => Some(Self::Agent),
            3 => Some(Self::User),
            _ => None,
        }
    }

    /// BLAKE3 `derive_key` context for this role's ids.
    pub(super) fn id_context(self) -> &'static str {
        match self {
            Self::Machine => "x0x-rs 2026-11 machine-id v1",
            Self::Agent => "x0x-rs 2026-11 agent-id v1",
            Self::User => "x0x-rs 2026-11 user-id v1",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Machine => "machine",
            Self::Agent => "agent",
            Self::User => "user",
        })
    }
}

/// The role byte found in a serialised key, which may be one this build does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleTag(pub u8);

impl fmt::Display for RoleTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Role::from_tag(self.0) {
            Some(r) => r.fmt(f),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

fn parse_hex32(s: &str) -> Result<[u8; ID_LEN], KeyDecodeError> {
    if s.len() != ID_LEN * 2 {
        return Err(KeyDecodeError::Length {
            expected: ID_LEN * 2,
            got: s.len(),
        });
    }
    let mut out = [0u8; ID_LEN];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16).ok_or(KeyDecodeError::Hex)?;
        let lo = (chunk[1] as char).to_digit(16).ok_or(KeyDecodeError::Hex)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        ///
        /// `Display` prints the first 5 bytes as hex; `{:#}` and [`Self::to_hex`] print all 32.
        #[derive(Clone, Copy, Serialize, Deserialize)]
        pub struct $name([u8; ID_LEN]);

        id_cmp!($name);
        id_fmt!($name);

        impl $name {
            /// The id of a public key for this role.
            pub fn from_public_key(key: &PublicKey) -> Self {
                Self(key.id_bytes($role))
            }

            /// Wraps raw id bytes (no check is possible: any 32 bytes may be an id).
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw id bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Full lowercase hex (64 characters).
            pub fn to_hex(&self) -> String {
                format!("{self:#}")
            }

            /// Parses 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self, KeyDecodeError> {
                parse_hex32(s).map(Self)
            }

            /// Checks that `key` hashes to this id.
            pub fn verify_key(&self, key: &PublicKey) -> Result<(), VerifyError> {
                if Self::from_public_key(key) == *self {
                    Ok(())
                } else {
                    Err(VerifyError::IdMismatch)
                }
            }
        }
    };
}

id_type!(
    /// The id of a machine: a role-separated BLAKE3 hash of its ML-DSA-65 public key.
    MachineId,
    Role::Machine
);
id_type!(
    /// The id of an agent: a role-separated BLAKE3 hash of its ML-DSA-65 public key.
    AgentId,
    Role::Agent
);
id_type!(
    /// The id of a user: a role-separated BLAKE3 hash of its ML-DSA-65 public key.
    UserId,
    Role::User
);

/// Which key signed something: the role and the id of its public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignerId {
    /// A machine key.
    Machine(MachineId),
    /// An agent key.
    Agent(AgentId),
    /// A user key.
    User(UserId),
}

impl SignerId {
    /// Checks that `key` is the key this id names (same role, same hash).
    pub fn verify_key(&self, key: &PublicKey) -> Result<(), VerifyError> {
        match self {
            Self::Machine(id) => id.verify_key(key),
            Self::Agent(id) => id.verify_key(key),
            Self::User(id) => id.verify_key(key),
        }
    }
}

impl fmt::Display for SignerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine(id) => write!(f, "machine:{id}"),
            Self::Agent(id) => write!(f, "agent:{id}"),
            Self::User(id) => write!(f, "user:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::test_seed as seed;
    use crate::identity::{AgentKeypair, MachineKeypair};

    #[test]
    fn same_seed_same_key_and_id() {
        let a = AgentKeypair::from_seed(seed(1));
        let b = AgentKeypair::from_seed(seed(1));
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.agent_id(), b.agent_id());
        assert_ne!(a.agent_id(), AgentKeypair::from_seed(seed(2)).agent_id());
    }

    #[test]
    fn ids_are_role_separated() {
        let m = MachineKeypair::from_seed(seed(3));
        let a = AgentKeypair::from_seed(seed(3));
        assert_eq!(m.public_key(), a.public_key());
        assert_ne!(m.machine_id().as_bytes(), a.agent_id().as_bytes());
    }

    #[test]
    fn display_short_and_full() {
        let id = AgentKeypair::from_seed(seed(4)).agent_id();
        assert_eq!(format!("{id}").len(), 10);
        assert_eq!(format!("{id:#}").len(), 64);
        assert_eq!(id.to_hex(), format!("{id:#}"));
        assert_eq!(AgentId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(format!("{id:?}").starts_with("AgentId("));
        assert_eq!(
            AgentId::from_hex("zz"),
            Err(KeyDecodeError::Length {
                expected: 64,
                got: 2
            })
        );
        assert_eq!(AgentId::from_hex(&"g".repeat(64)), Err(KeyDecodeError::Hex));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn id_hex_round_trip(b in any::<[u8; 32]>()) {
            let id = MachineId::from_bytes(b);
            prop_assert_eq!(MachineId::from_hex(&id.to_hex()).unwrap(), id);
        }
    }
}
