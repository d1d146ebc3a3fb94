//! The driver's error types.

use std::io;
use std::path::PathBuf;

use x0x_proto::announce::AnnounceError;
use x0x_proto::direct::{DirectError, DirectFailure};
use x0x_proto::identity::{GenerateError, KeyDecodeError};
use x0x_proto::node::{ConfigError, PublishError};

/// Everything an [`Agent`](crate::Agent) call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFileIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A key file exists but does not hold a key of the expected role (corrupt, truncated,
    /// another format, or e.g. a machine key at the agent-key path). The file is left as is.
    #[error("key file {path} is not a valid key of this role: {source}")]
    KeyFileInvalid {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        #[source]
        source: KeyDecodeError,
    },
    /// The operating system RNG failed.
    #[error(transparent)]
    Rng(#[from] GenerateError),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Building the TLS or QUIC configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] TlsError),
    /// The node refused its configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node refused a publish.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A replicated store refused the call (unknown store, no permission, too large…).
    #[error(transparent)]
    Store(#[from] x0x_proto::collab::CollabError),
    /// The node refused an announcement (e.g. a user disclosure without consent).
    #[error(transparent)]
    Announce(#[from] AnnounceError),
    /// The node refused a direct message at once (unknown recipient, payload too large…).
    #[error(transparent)]
    DirectSend(#[from] DirectError),
    /// A direct message was not delivered (expired, rejected by the recipient…).
    #[error("direct message not delivered: {0}")]
    DirectFailed(DirectFailure),
    /// `join_network` found no neighbour within the join timeout.
    #[error("no bootstrap peer answered within {0:?}")]
    JoinTimeout(std::time::Duration),
    /// The contact store refused a change ([`Agent::change_trust`](crate::Agent::change_trust)).
    #[error(transparent)]
    Trust(#[from] x0x_proto::trust::TrustError),
    /// A saved contact store cannot be used ([`AgentBuilder::with_contacts`](crate::AgentBuilder::with_contacts)).
    #[error("contacts: {0}")]
    Contacts(#[from] x0x_proto::trust::TrustStateError),
    /// A presence query could not start (too many under way, or presence is off).
    #[error(transparent)]
    Presence(#[from] x0x_proto::node::PresenceQueryError),
    /// An agent card could not be imported.
    #[error("agent card: {0}")]
    Card(#[from] CardError),
    /// The agent has shut down (or its driver task ended).
    #[error("the agent has shut down")]
    Shutdown,
}

/// Why an agent card was refused ([`Error::Card`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The bytes are not a frame.
    #[error("undecodable: {0}")]
    Decode(#[from] x0x_proto::wire::DecodeError),
    /// A frame, but not a card's (a `SyncRecords` frame).
    #[error("not an agent card")]
    NotACard,
    /// No identity announcement signed by an agent in it.
    #[error("no agent identity in it")]
    NoIdentity,
    /// A record failed verification (bad signature, expired, …).
    #[error("a record was refused: {0}")]
    Rejected(x0x_proto::announce::RejectReason),
}

/// Why the TLS or QUIC configuration could not be built ([`Error::Tls`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the configuration (e.g. a provider without TLS 1.3).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The configuration offers no cipher suite QUIC can protect its initial packets with.
    #[error(transparent)]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
