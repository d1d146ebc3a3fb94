//! [`ConnectOutcome`]: what `Agent::connect_agent` achieved.

use std::fmt;
use std::net::SocketAddr;

/// The result of connecting to an agent's machine (x0x's outcome names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectOutcome {
    /// A new direct connection that this agent's dial opened, at this address.
    Direct(SocketAddr),
    /// A new direct connection that the other machine opened by dialling back when a common
    /// peer passed on this agent's request (hole punching through NATs), at this address.
    Coordinated(SocketAddr),
    /// A connection was already up, at this address.
    AlreadyConnected(SocketAddr),
    /// The agent is known, but its machine could not be reached.
    Unreachable,
    /// The agent is not known, even after a lookup.
    NotFound,
}

impl ConnectOutcome {
    /// x0x's name: `Direct`, `Coordinated`, `AlreadyConnected`, `Unreachable` or `NotFound`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Direct(_) => "Direct",
            Self::Coordinated(_) => "Coordinated",
            Self::AlreadyConnected(_) => "AlreadyConnected",
            Self::Unreachable => "Unreachable",
            Self::NotFound => "NotFound",
        }
    }

    /// The address connected to, when there is one.
    pub const fn addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Direct(a) | Self::Coordinated(a) | Self::AlreadyConnected(a) => Some(*a),
            _ => None,
        }
    }
}

impl ConnectOutcome {
    /// How traffic reaches the agent when a path exists: `direct` (a connection between the
    /// two machines). `None` when there is no path.
    pub const fn path(&self) -> Option<&'static str> {
        match self {
            Self::Direct(_) | Self::Coordinated(_) | Self::AlreadyConnected(_) => Some("direct"),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
