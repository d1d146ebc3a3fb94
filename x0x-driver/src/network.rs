//! Network configuration of an [`Agent`](crate::Agent).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Bootstrap peers built into this release. Empty: x0x-rs has no public fleet, so an agent
/// joins through the addresses in [`NetworkConfig::bootstrap_nodes`] only.
pub const DEFAULT_BOOTSTRAP_PEERS: &[&str] = &[];

/// Where the agent listens, whom it joins through, and the driver's limits.
///
/// Build it with struct-update syntax: `NetworkConfig { bootstrap_nodes, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The UDP address to bind. `None`: `0.0.0.0:0` (all IPv4 interfaces, an ephemeral port).
    pub bind_addr: Option<SocketAddr>,
    /// Addresses dialled by `join_network` to enter the network.
    pub bootstrap_nodes: Vec<SocketAddr>,
    /// How long `join_network` waits for a first neighbour before it gives up. Default 10 s.
    pub join_timeout: Duration,
    /// How long a dial may take, handshake included, before it counts as failed. Default 10 s.
    pub dial_timeout: Duration,
    /// QUIC idle timeout. Default 30 s: twice the node's 15 s keepalive.
    pub idle_timeout: Duration,
    /// Frames queued per connection for its writer; beyond that frames are dropped and
    /// counted (a peer that does not read cannot stall the node). Default 1024.
    pub send_queue_frames: usize,
    /// Bytes queued per connection for its writer; beyond that frames are dropped and
    /// counted. Default 4 MiB.
    pub send_queue_bytes: usize,
    /// Messages buffered per subscription; a subscriber that falls this far behind is dropped
    /// and counted. Default 1024.
    pub subscription_buffer: usize,
    /// Most handshakes in progress at once (quinn `max_incoming`). Default 256.
    pub max_incoming_handshakes: usize,
    /// Announce this agent on the local link by mDNS and join through agents found there
    /// (the `lan` module). Default false: it sends multicast on every interface, which a
    /// library should not do unasked (the daemon turns it on).
    pub lan_discovery: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bind_addr: None,
            bootstrap_nodes: Vec::new(),
            join_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_queue_frames: 1024,
            send_queue_bytes: 4 << 20,
            subscription_buffer: 1024,
            max_incoming_handshakes: 256,
            lan_discovery: false,
        }
    }
}

impl NetworkConfig {
    /// The address to bind: [`NetworkConfig::bind_addr`] or `0.0.0.0:0`.
    pub fn bind_addr_or_default(&self) -> SocketAddr {
        self.bind_addr
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }
}
