//! Frames for reaching machines behind NATs: [`Observed`] (the address the other end of a
//! connection is seen at), and [`PunchRequest`] / [`PunchNotify`] (a simultaneous dial
//! coordinated through a peer both machines are connected to).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::PeerAddr;
use crate::identity::MachineId;

/// Sent once, right after `Hello`: "I see you at `addr`". Behind a NAT this is the mapped
/// public address, which the receiver cannot learn by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The remote address of this connection as the sender sees it.
    pub addr: SocketAddr,
}

/// To a connected peer: "tell `target` (which you are connected to) to dial me now".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchRequest {
    /// The machine the sender wants a direct connection to.
    pub target: MachineId,
}

/// From a peer both machines are connected to: "`peer` is dialling you; dial it now", so the
/// two dials cross and open both NATs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PunchNotify {
    /// The machine that asked, at the address the notifier sees it at first, then the
    /// addresses it claims.
    pub peer: PeerAddr,
}
