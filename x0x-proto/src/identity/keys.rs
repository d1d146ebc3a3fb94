//! The role keypairs ([`MachineKeypair`], [`AgentKeypair`], [`UserKeypair`]), their
//! serialisation, and [`SigningKey`], what signing protocol content needs from any of them.

use std::fmt;
use std::sync::Arc;

use rand_core::CryptoRng;

#[cfg(feature = "os-rng")]
use super::GenerateError;
use super::backend::{self, Signer};
#[cfg(feature = "stand-in-crypto")]
use super::stand_in;
use super::{
    AgentId, Domain, KeyDecodeError, MachineId, PublicKey, Role, RoleTag, SEED_LEN, Signature,
    SignerId, UserId, signed_message,
};

/// Magic prefix of a serialised keypair (`X0K`), followed by a format version byte.
const KEY_MAGIC: &[u8; 3] = b"X0K";
/// Current keypair serialisation version.
const KEY_VERSION: u8 = 1;
/// `magic(3) | version(1) | role(1) | seed(32)`.
const KEY_FILE_LEN: usize = 3 + 1 + 1 + SEED_LEN;

struct KeypairInner {
    seed: [u8; SEED_LEN],
    public: PublicKey,
    /// How this keypair signs (the backend's state: expanded key, fast signer).
    signer: Signer,
    /// A simulation stand-in key (see [`stand_in`]).
    #[cfg(feature = "stand-in-crypto")]
    stand_in: bool,
}

impl Drop for KeypairInner {
    fn drop(&mut self) {
        // The expanded key zeroizes itself (ml-dsa `zeroize` feature); wipe the seed too.
        self.seed = [0u8; SEED_LEN];
    }
}

impl KeypairInner {
    fn from_seed(seed: [u8; SEED_LEN]) -> Self {
        Self {
            seed,
            public: PublicKey::from_array(backend::public_key(&seed)),
            signer: Signer::deterministic(),
            #[cfg(feature = "stand-in-crypto")]
            stand_in: false,
        }
    }

    /// The same key, signing through `signer`.
    #[cfg(feature = "aws-lc-rs")]
    fn with_signer(&self, signer: Signer) -> Self {
        Self {
            seed: self.seed,
            public: self.public.clone(),
            signer,
            #[cfg(feature = "stand-in-crypto")]
            stand_in: self.stand_in,
        }
    }

    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        #[cfg(feature = "stand-in-crypto")]
        if self.stand_in {
            return stand_in::sign(&self.public, domain, msg);
        }
        self.sign_raw(&signed_message(domain, msg))
    }

    /// Signs `msg` with pure ML-DSA-65 and an empty context.
    fn sign_raw(&self, msg: &[u8]) -> Signature {
        Signature(self.signer.sign(&self.seed, msg))
    }

    fn to_bytes(&self, role: Role) -> Vec<u8> {
        let mut v = Vec::with_capacity(KEY_FILE_LEN);
        v.extend_from_slice(KEY_MAGIC);
        v.push(KEY_VERSION);
        v.push(role.tag());
        v.extend_from_slice(&self.seed);
        v
    }

    fn from_bytes(role: Role, bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        if bytes.len() < 4 || &bytes[..3] != KEY_MAGIC {
            return Err(KeyDecodeError::BadMagic);
        }
        if bytes[3] != KEY_VERSION {
            return Err(KeyDecodeError::UnsupportedVersion(bytes[3]));
        }
        if bytes.len() != KEY_FILE_LEN {
            return Err(KeyDecodeError::Length {
                expected: KEY_FILE_LEN,
                got: bytes.len(),
            });
        }
        if bytes[4] != role.tag() {
            return Err(KeyDecodeError::WrongRole {
                expected: role,
                found: RoleTag(bytes[4]),
            });
        }
        let mut seed = [0u8; SEED_LEN];
        seed.copy_from_slice(&bytes[5..]);
        Ok(Self::from_seed(seed))
    }
}

/// A keypair that can sign protocol content: the three role keypairs.
pub trait SigningKey {
    /// The signer's role and id.
    fn signer_id(&self) -> SignerId;
    /// The public key.
    fn public_key(&self) -> &PublicKey;
    /// Signs `msg` for `domain`.
    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature;
}

macro_rules! keypair_type {
    ($(#[$doc:meta])* $name:ident, $id:ident, $id_fn:ident, $role:ident) => {
        $(#[$doc])*
        ///
        /// Cheap to clone (shared). `Debug` never prints secret material.
        #[derive(Clone)]
        pub struct $name(Arc<KeypairInner>);

        impl $name {
            /// Derives the keypair from a 32-byte seed (FIPS 204 `ML-DSA.KeyGen_internal`):
            /// the same seed always gives the same key.
            pub fn from_seed(seed: [u8; SEED_LEN]) -> Self {
                Self(Arc::new(KeypairInner::from_seed(seed)))
            }

            /// A **simulation stand-in** keypair: cheap to make and to sign with, verifiable by
            /// anyone (so forgeable by anyone). Only a node configured to accept stand-ins
            /// treats its signatures as valid; [`PublicKey::verify`] always refuses them.
            #[cfg(feature = "stand-in-crypto")]
            pub fn stand_in_from_seed(seed: [u8; SEED_LEN]) -> Self {
                Self(Arc::new(KeypairInner {
                    seed,
                    public: stand_in::public_key(&seed),
                    signer: Signer::deterministic(),
                    stand_in: true,
                }))
            }

            /// Generates a keypair from a caller-supplied cryptographic RNG.
            pub fn from_rng<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
                let mut seed = [0u8; SEED_LEN];
                rng.fill_bytes(&mut seed);
                Self::from_seed(seed)
            }

            /// Generates a keypair from the operating system's RNG.
            #[cfg(feature = "os-rng")]
            pub fn generate() -> Result<Self, GenerateError> {
                let mut seed = [0u8; SEED_LEN];
                getrandom::fill(&mut seed).map_err(|e| GenerateError::Rng(e.to_string()))?;
                Ok(Self::from_seed(seed))
            }

            /// The public key.
            pub fn public_key(&self) -> &PublicKey {
                &self.0.public
            }

            /// The id of this keypair's public key.
            pub fn $id_fn(&self) -> $id {
                $id::from_public_key(&self.0.public)
            }

            /// Signs `msg` for `domain` (ML-DSA-65 over [`signed_message`]; deterministic
            /// unless the keypair was made with `with_fast_signing`).
            pub fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
                self.0.sign(domain, msg)
            }

            /// The same key, signing through aws-lc-rs: faster, with hedged (randomised)
            /// instead of deterministic signatures (docs/benchmarks.md has the figures).
            /// Every verifier accepts them alike. What the drivers use; a simulation keeps the
            /// deterministic default so its runs replay byte for byte.
            #[cfg(feature = "aws-lc-rs")]
            pub fn with_fast_signing(&self) -> Self {
                Self(Arc::new(self.0.with_signer(Signer::fast())))
            }

            /// Serialises the private key: `"X0K" | version 1 | role | seed(32)` (37 bytes).
            /// Treat the result as secret.
            pub fn to_bytes(&self) -> Vec<u8> {
                self.0.to_bytes(Role::$role)
            }

            /// Parses bytes written by [`Self::to_bytes`], refusing other roles and versions.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
                KeypairInner::from_bytes(Role::$role, bytes).map(|k| Self(Arc::new(k)))
            }
        }

        impl SigningKey for $name {
            fn signer_id(&self) -> SignerId {
                SignerId::$role(self.$id_fn())
            }
            fn public_key(&self) -> &PublicKey {
                &self.0.public
            }
            fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
                self.0.sign(domain, msg)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.$id_fn())
            }
        }
    };
}

keypair_type!(
    /// A machine's ML-DSA-65 keypair: the host's transport (TLS) identity.
    MachineKeypair,
    MachineId,
    machine_id,
    Machine
);
keypair_type!(
    /// An agent's ML-DSA-65 keypair: signs the agent's messages and announcements.
    AgentKeypair,
    AgentId,
    agent_id,
    Agent
);
keypair_type!(
    /// A user's ML-DSA-65 keypair: certifies the agents the user owns.
    UserKeypair,
    UserId,
    user_id,
    User
);

impl MachineKeypair {
    /// Signs a TLS 1.3 handshake transcript (pure ML-DSA-65, empty context). Only for the
    /// transport's CertificateVerify; protocol content is signed with a [`Domain`].
    pub fn sign_tls13(&self, msg: &[u8]) -> Vec<u8> {
        self.0.sign_raw(msg).0.to_vec()
    }
}

impl AgentKeypair {
    /// The agent's ML-KEM-768 keypair for sealed direct messages, derived from the agent seed
    /// (`BLAKE3.derive_key("x0x-rs agent kem v1", seed)` extended to the 64-byte FIPS 203
    /// seed), so the agent key file is the only secret to keep. Costs one ML-KEM key
    /// generation; callers keep the result.
    pub fn kem_keypair(&self) -> crate::kem::KemKeypair {
        let mut seed = [0u8; crate::kem::KEM_SEED_LEN];
        blake3::Hasher::new_derive_key("x0x-rs agent kem v1")
            .update(&self.0.seed)
            .finalize_xof()
            .fill(&mut seed);
        crate::kem::KemKeypair::from_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::test_seed as seed;

    #[test]
    fn keypair_bytes_round_trip_and_refuse_other_roles() {
        let k = MachineKeypair::from_seed(seed(8));
        let bytes = k.to_bytes();
        assert_eq!(bytes.len(), KEY_FILE_LEN);
        let back = MachineKeypair::from_bytes(&bytes).unwrap();
        assert_eq!(back.machine_id(), k.machine_id());
        assert_eq!(
            AgentKeypair::from_bytes(&bytes).unwrap_err(),
            KeyDecodeError::WrongRole {
                expected: Role::Agent,
                found: RoleTag(1)
            }
        );
        let mut v2 = bytes.clone();
        v2[3] = 9;
        assert_eq!(
            MachineKeypair::from_bytes(&v2).unwrap_err(),
            KeyDecodeError::UnsupportedVersion(9)
        );
        assert_eq!(
            MachineKeypair::from_bytes(b"nope").unwrap_err(),
            KeyDecodeError::BadMagic
        );
        assert!(!format!("{k:?}").contains(&format!("{:?}", k.0.seed)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_bytes_never_panic_key_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = MachineKeypair::from_bytes(&bytes);
            let _ = AgentKeypair::from_bytes(&bytes);
            let _ = UserKeypair::from_bytes(&bytes);
            let _ = PublicKey::from_bytes(&bytes);
            let _ = Signature::from_bytes(&bytes);
            let _ = postcard::from_bytes::<crate::identity::AgentCertificate>(&bytes);
            let _ = postcard::from_bytes::<PublicKey>(&bytes);
        }

        #[test]
        fn keypair_bytes_round_trip(s in any::<[u8; 32]>()) {
            let k = UserKeypair::from_seed(s);
            let back = UserKeypair::from_bytes(&k.to_bytes()).unwrap();
            prop_assert_eq!(back.user_id(), k.user_id());
        }
    }
}
