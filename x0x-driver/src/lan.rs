//! LAN discovery ([`NetworkConfig::lan_discovery`](crate::network::NetworkConfig)): the agent
//! announces itself on the local link by mDNS (DNS-SD, the maintained `mdns-sd` crate) and
//! hands every other agent it sees there to the node ([`Node::handle_local_peer`]), which
//! joins through it when it has no neighbour yet.
//!
//! The service is `_x0x-rs._udp.local.`; its TXT record carries the machine id (`m`) and, when
//! the socket is bound to one address, that address (`a`): an agent bound to `127.0.0.1` is
//! reachable there only, whatever interface the announcement went out on. Otherwise the
//! addresses mDNS resolved, with the announced port, are dialled.
//!
//! [`Node::handle_local_peer`]: x0x_proto::Node::handle_local_peer

use std::net::SocketAddr;

use tracing::{debug, warn};
use x0x_proto::MachineId;

use crate::runtime::{Runtime, TaskGuard, spawn_tracked};
use crate::transport::ConnEvent;

/// The DNS-SD service type.
pub(crate) const SERVICE: &str = "_x0x-rs._udp.local.";

/// A running announcement and browse; [`Lan::stop`] ends both.
pub(crate) struct Lan {
    daemon: mdns_sd::ServiceDaemon,
}

impl std::fmt::Debug for Lan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lan").finish_non_exhaustive()
    }
}

impl Lan {
    /// Announces `machine` at `bound` and reports every other agent found as a
    /// [`ConnEvent::LocalPeer`]. `None` (with a warning) where mDNS cannot run, e.g. no
    /// interface with multicast: the agent then works without it.
    pub(crate) fn start(
        rt: &dyn Runtime,
        guard: TaskGuard,
        machine: MachineId,
        bound: SocketAddr,
        events: async_channel::Sender<ConnEvent>,
    ) -> Option<Self> {
        match Self::try_start(rt, guard, machine, bound, events) {
            Ok(lan) => Some(lan),
            Err(e) => {
                warn!(error = %e, "LAN discovery unavailable; running without it");
                None
            }
        }
    }

    fn try_start(
        rt: &dyn Runtime,
        guard: TaskGuard,
        machine: MachineId,
        bound: SocketAddr,
        events: async_channel::Sender<ConnEvent>,
    ) -> Result<Self, mdns_sd::Error> {
        let daemon = mdns_sd::ServiceDaemon::new()?;
        let id = machine.to_hex();
        let direct = if bound.ip().is_unspecified() {
            String::new()
        } else {
            bound.to_string()
        };
        let props = [("m", id.as_str()), ("a", direct.as_str())];
        let info = mdns_sd::ServiceInfo::new(
            SERVICE,
            &id[..16],
            &format!("x0x-{}.local.", &id[..16]),
            "",
            bound.port(),
            &props[..],
        )?
        .enable_addr_auto();
        daemon.register(info)?;
        let found = daemon.browse(SERVICE)?;
        spawn_tracked(rt, guard, async move {
            while let Ok(ev) = found.recv_async().await {
                let mdns_sd::ServiceEvent::ServiceResolved(s) = ev else {
                    continue;
                };
                let Some(peer) = s
                    .get_property_val_str("m")
                    .and_then(|m| MachineId::from_hex(m).ok())
                else {
                    continue;
                };
                if peer == machine {
                    continue;
                }
                let mut addrs: Vec<SocketAddr> = s
                    .get_property_val_str("a")
                    .and_then(|a| a.parse().ok())
                    .into_iter()
                    .collect();
                if addrs.is_empty() {
                    let mut ips: Vec<_> =
                        s.get_addresses().iter().map(|ip| ip.to_ip_addr()).collect();
                    ips.sort();
                    addrs = ips
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, s.get_port()))
                        .collect();
                }
                debug!(%peer, ?addrs, "agent found on the local link");
                if events
                    .send(ConnEvent::LocalPeer {
                        machine: peer,
                        addrs,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Self { daemon })
    }

    /// Withdraws the announcement and stops browsing (the browse task then ends).
    pub(crate) fn stop(self) {
        let _ = self.daemon.shutdown();
    }
}
