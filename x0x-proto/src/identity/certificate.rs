//! [`AgentCertificate`]: a user key's statement that an agent belongs to that user.

use serde::{Deserialize, Serialize};

use super::{AgentId, Domain, PublicKey, Signature, UserId, UserKeypair, VerifyError};

/// Clock skew tolerated at either end of a certificate's validity (`issued_at`, `not_after`),
/// in seconds: 300, as in x0x, so both accept the same certificates at the same time.
pub const CERT_EXPIRY_SKEW_SECS: u64 = 300;

/// A user key's statement that an agent belongs to that user.
///
/// Carries the user's public key (so anyone can derive the [`UserId`] and check the signature)
/// and the certified [`AgentId`] (which binds the agent's public key through its hash).
/// Signed bytes: postcard of `(user_id, agent_id, issued_at, not_after)` under
/// [`Domain::AgentCertificate`] (docs/protocol.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCertificate {
    user_public_key: PublicKey,
    agent_id: AgentId,
    issued_at: u64,
    not_after: Option<u64>,
    signature: Signature,
}

#[derive(Serialize)]
struct CertSigned<'a> {
    user_id: &'a UserId,
    agent_id: &'a AgentId,
    issued_at: u64,
    not_after: Option<u64>,
}

impl AgentCertificate {
    /// Issues a certificate: `user` vouches for `agent` from `issued_at` (unix seconds) until
    /// `not_after` (unix seconds, `None` = no expiry).
    pub fn issue(
        user: &UserKeypair,
        agent: AgentId,
        issued_at: u64,
        not_after: Option<u64>,
    ) -> Self {
        let user_id = user.user_id();
        let msg = Self::signed_bytes_for(&user_id, &agent, issued_at, not_after);
        Self {
            user_public_key: user.public_key().clone(),
            agent_id: agent,
            issued_at,
            not_after,
            signature: user.sign(Domain::AgentCertificate, &msg),
        }
    }

    fn signed_bytes_for(
        user_id: &UserId,
        agent_id: &AgentId,
        issued_at: u64,
        not_after: Option<u64>,
    ) -> Vec<u8> {
        postcard::to_allocvec(&CertSigned {
            user_id,
            agent_id,
            issued_at,
            not_after,
        })
        .unwrap_or_else(|_| unreachable!("postcard never fails on plain data"))
    }

    /// The exact bytes the user key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        Self::signed_bytes_for(
            &self.user_id(),
            &self.agent_id,
            self.issued_at,
            self.not_after,
        )
    }

    /// The certifying user.
    pub fn user_id(&self) -> UserId {
        UserId::from_public_key(&self.user_public_key)
    }

    /// The user's public key.
    pub fn user_public_key(&self) -> &PublicKey {
        &self.user_public_key
    }

    /// The certified agent.
    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    /// Issue time, unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// Expiry, unix seconds (`None`: never expires).
    pub fn not_after(&self) -> Option<u64> {
        self.not_after
    }

    /// Checks the signature, that the certificate names `agent`, and its validity at
    /// `now_secs` (unix seconds) with [`CERT_EXPIRY_SKEW_SECS`] of tolerance either way.
    pub fn verify(&self, agent: &AgentId, now_secs: u64) -> Result<(), VerifyError> {
        if self.agent_id != *agent {
            return Err(VerifyError::WrongAgent);
        }
        if self.issued_at > now_secs.saturating_add(CERT_EXPIRY_SKEW_SECS) {
            return Err(VerifyError::IssuedInFuture {
                issued_at: self.issued_at,
                now: now_secs,
            });
        }
        if let Some(not_after) = self.not_after
            && now_secs > not_after.saturating_add(CERT_EXPIRY_SKEW_SECS)
        {
            return Err(VerifyError::Expired {
                not_after,
                now: now_secs,
            });
        }
        self.user_public_key.verify(
            Domain::AgentCertificate,
            &self.signed_bytes(),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AgentKeypair;
    use crate::identity::test_seed as seed;

    #[test]
    fn certificate_binds_user_and_agent() {
        let user = UserKeypair::from_seed(seed(9));
        let agent = AgentKeypair::from_seed(seed(10)).agent_id();
        let cert = AgentCertificate::issue(&user, agent, 1_000, Some(2_000));
        assert_eq!(cert.user_id(), user.user_id());
        cert.verify(&agent, 1_500).unwrap();
        // Skew tolerated on both ends.
        cert.verify(&agent, 2_000 + CERT_EXPIRY_SKEW_SECS).unwrap();
        assert!(matches!(
            cert.verify(&agent, 2_001 + CERT_EXPIRY_SKEW_SECS),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            cert.verify(&agent, 1_000 - CERT_EXPIRY_SKEW_SECS - 1),
            Err(VerifyError::IssuedInFuture { .. })
        ));
        let other = AgentKeypair::from_seed(seed(11)).agent_id();
        assert_eq!(cert.verify(&other, 1_500), Err(VerifyError::WrongAgent));
        // A certificate whose fields were changed after signing fails.
        let mut forged = cert.clone();
        forged.not_after = None;
        assert_eq!(forged.verify(&agent, 1_500), Err(VerifyError::BadSignature));
        // Someone else's user key cannot stand in.
        let mut stolen = cert.clone();
        stolen.user_public_key = UserKeypair::from_seed(seed(12)).public_key().clone();
        assert_eq!(stolen.verify(&agent, 1_500), Err(VerifyError::BadSignature));
    }

    #[test]
    fn certificate_serde_round_trip() {
        let user = UserKeypair::from_seed(seed(13));
        let agent = AgentKeypair::from_seed(seed(14)).agent_id();
        let cert = AgentCertificate::issue(&user, agent, 5, None);
        let bytes = postcard::to_allocvec(&cert).unwrap();
        let back: AgentCertificate = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, cert);
        back.verify(&agent, 10).unwrap();
    }
}
