//! Application signatures with the agent key: bytes an application signs under a context
//! string of its own ([`Domain::Application`]), and their verification.

use x0x_proto::AgentId;
use x0x_proto::identity::{
    AgentKeypair, Domain, KeyDecodeError, PublicKey, Signature, VerifyError, application_message,
};

/// A signature made by [`Agent::sign_application`](crate::Agent::sign_application).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSignature {
    /// The ML-DSA-65 signature (3309 bytes).
    pub signature: Vec<u8>,
    /// The agent's public key (1952 bytes), which hashes to its agent id.
    pub public_key: Vec<u8>,
}

/// Why an application signature did not verify, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppSignatureError {
    /// The context string is longer than 255 bytes.
    #[error("context longer than 255 bytes")]
    ContextTooLong,
    /// Neither a key nor a known agent id was given.
    #[error("the signer's key is unknown (give its public key, or discover the agent first)")]
    UnknownSigner,
    /// The public key bytes are not an ML-DSA-65 key.
    #[error("invalid public key: {0}")]
    BadKey(KeyDecodeError),
    /// The public key does not hash to the agent id given.
    #[error("the public key is not the agent's")]
    KeyMismatch,
    /// The signature bytes are not an ML-DSA-65 signature.
    #[error("malformed signature: {0}")]
    MalformedSignature(KeyDecodeError),
    /// The signature does not verify.
    #[error("invalid signature: {0}")]
    BadSignature(VerifyError),
}

pub(super) fn sign(
    key: &AgentKeypair,
    context: &str,
    payload: &[u8],
) -> Result<AppSignature, AppSignatureError> {
    let msg = application_message(context, payload).ok_or(AppSignatureError::ContextTooLong)?;
    Ok(AppSignature {
        signature: key.sign(Domain::Application, &msg).as_bytes().to_vec(),
        public_key: key.public_key().as_bytes().to_vec(),
    })
}

/// Verifies with `key` (already known to belong to the claimed agent, or given by the
/// caller); returns the signer's agent id.
pub(super) fn verify(
    agent: Option<AgentId>,
    key: &PublicKey,
    context: &str,
    payload: &[u8],
    signature: &[u8],
) -> Result<AgentId, AppSignatureError> {
    let id = AgentId::from_public_key(key);
    if agent.is_some_and(|a| a != id) {
        return Err(AppSignatureError::KeyMismatch);
    }
    let msg = application_message(context, payload).ok_or(AppSignatureError::ContextTooLong)?;
    let sig = Signature::from_bytes(signature).map_err(AppSignatureError::MalformedSignature)?;
    key.verify(Domain::Application, &msg, &sig)
        .map_err(AppSignatureError::BadSignature)?;
    Ok(id)
}

/// Parses a caller-supplied public key.
pub(super) fn parse_key(bytes: &[u8]) -> Result<PublicKey, AppSignatureError> {
    PublicKey::from_bytes(bytes).map_err(AppSignatureError::BadKey)
}
