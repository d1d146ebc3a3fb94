//! Direct-message frames: [`Direct`] on the connected path and its [`DirectAck`].

use serde::{Deserialize, Serialize};

use super::Signed;
use crate::identity::AgentId;

/// A direct message on the connected path ([`crate::direct`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct {
    /// The envelope.
    pub envelope: crate::direct::DirectEnvelope,
    /// The sender's signed identity announcement, attached until the receiver has
    /// acknowledged a message from this connection, so it can bind the sender agent to the
    /// TLS-proven machine without a lookup.
    pub binding: Option<Signed>,
}

/// The acknowledgement of a direct message: over the connection it came on (connected path)
/// or as the payload of a pub/sub message signed by the recipient (sealed path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectAck {
    /// The acknowledged request.
    pub request_id: crate::direct::RequestId,
    /// The original sender (the ack's addressee).
    pub sender: AgentId,
    /// The recipient (who acknowledges).
    pub recipient: AgentId,
    /// The attempt number being answered (RTT sampling).
    pub attempt: u8,
    /// What the recipient did.
    pub outcome: crate::direct::DirectOutcome,
}
