//! NAT traversal at the node: observations sent and received, the addresses announced, and
//! punch requests, forwards and the dials they cause ([`crate::nat`]).

use std::net::SocketAddr;

use super::{Direction, Node};
use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{self, PeerAddr};

impl Node {
    /// The addresses this node tells peers and announces: where peers see it (behind a NAT,
    /// the public ones), then its listen addresses.
    pub fn advertised_addrs(&self) -> Vec<SocketAddr> {
        self.told_addrs()
    }

    /// Right after `Hello` on a new connection: the peer's address as this node sees it.
    pub(super) fn send_observed(&mut self, peer: MachineId, addr: SocketAddr) {
        if self.config.nat.enabled && !addr.ip().is_unspecified() && addr.port() != 0 {
            self.send(peer, wire::Observed { addr }.into());
        }
    }

    /// A peer says where it sees this node. The first report per connection counts; if the
    /// addresses worth announcing change, peers and the network are told.
    pub(super) fn on_observed(&mut self, now: Time, peer: MachineId, o: wire::Observed) {
        if !self.config.nat.enabled {
            return;
        }
        let dialled = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.direction == Direction::Outbound);
        let usable = !o.addr.ip().is_unspecified() && o.addr.port() != 0;
        let before = self.observed.addrs();
        if !usable || !self.observed.report(peer, o.addr, dialled) {
            self.nat_stats.observed_refused += 1;
            return;
        }
        self.nat_stats.observed += 1;
        if self.observed.addrs() != before {
            self.addrs_changed(now);
        }
    }

    /// A connection went away: its report goes with it.
    pub(super) fn nat_peer_down(&mut self, now: Time, peer: MachineId) {
        let before = self.observed.addrs();
        self.observed.forget(&peer);
        if self.observed.addrs() != before {
            self.addrs_changed(now);
        }
    }

    /// The told addresses changed: membership and broadcast learn them, and an agent that has
    /// announced itself announces again, so others dial the address that works.
    fn addrs_changed(&mut self, now: Time) {
        let me = self.peer_addr();
        self.membership.set_addrs(me.addrs.clone());
        self.broadcast.set_me(me);
        if self.heartbeat_armed {
            self.publish_announcements(now);
        }
    }

    /// Asks up to `punch_fanout` connected peers to have `target` dial this node (its own dial
    /// to `target` is under way).
    pub(super) fn request_punch(&mut self, now: Time, target: MachineId) {
        if !self.config.nat.enabled {
            return;
        }
        let me = self.machine_id();
        if !self.punch.allow(now, me, target) {
            return;
        }
        let helpers: Vec<MachineId> = self
            .connected_peers()
            .into_iter()
            .filter(|p| *p != target)
            .take(self.config.nat.punch_fanout)
            .collect();
        for h in helpers {
            self.nat_stats.punch_requests_sent += 1;
            self.send(h, wire::PunchRequest { target }.into());
        }
    }

    /// A peer asks this node to tell `target` to dial it.
    pub(super) fn on_punch_request(&mut self, now: Time, peer: MachineId, r: wire::PunchRequest) {
        if !self.config.nat.enabled
            || r.target == peer
            || !self.hello_done(&r.target)
            || !self.punch.allow(now, peer, r.target)
        {
            self.nat_stats.punch_dropped += 1;
            return;
        }
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        // Where this node sees the asker comes first: behind a NAT it is the address that
        // opens, and the asker cannot know it by itself.
        let mut addrs = vec![p.addr];
        if let Some(h) = &p.hello {
            addrs.extend(h.addrs.iter().copied().filter(|a| *a != p.addr));
        }
        addrs.truncate(wire::MAX_ADDRS_PER_PEER);
        self.nat_stats.punch_forwarded += 1;
        self.send(
            r.target,
            wire::PunchNotify {
                peer: PeerAddr { id: peer, addrs },
            }
            .into(),
        );
    }

    /// A common peer says a machine is dialling this node: dial it back now.
    pub(super) fn on_punch_notify(&mut self, now: Time, from: MachineId, n: wire::PunchNotify) {
        let target = n.peer.id;
        if !self.config.nat.enabled
            || target == self.machine_id()
            || self.peers.contains_key(&target)
            || n.peer.addrs.is_empty()
            || !self.punch.allow(now, from, target)
        {
            self.nat_stats.punch_ignored += 1;
            return;
        }
        self.nat_stats.punch_dials += 1;
        self.membership.connect(n.peer);
    }
}

/// The peer cache at the node: restored and read by the driver, fed by connections,
/// failed dials and announcements ([`crate::peer_cache`]).
impl Node {
    /// Restores saved cache entries (before [`Node::start`], which dials the best of them).
    pub fn restore_peer_cache(&mut self, now: Time, saved: Vec<crate::peer_cache::CachedPeer>) {
        self.peer_cache.restore(saved, now.as_secs());
    }

    /// The cached addresses with their quality, best first: what a driver saves.
    pub fn peer_cache(&self, now: Time) -> Vec<crate::peer_cache::ScoredPeer> {
        self.peer_cache.scored(now.as_secs())
    }

    /// A handshake completed on a connection this node dialled at `addr`.
    pub(super) fn cache_success(
        &mut self,
        now: Time,
        addr: SocketAddr,
        peer: MachineId,
        since: Time,
    ) {
        let rtt_ms = u32::try_from(now.saturating_since(since).as_millis()).unwrap_or(u32::MAX);
        self.peer_cache.success(addr, peer, rtt_ms, now.as_secs());
    }

    /// A dial to `addr` failed.
    pub(super) fn cache_failure(&mut self, now: Time, addr: SocketAddr) {
        self.peer_cache.failure(addr, now.as_secs());
    }

    /// A newly discovered agent: its global addresses are candidates.
    pub(super) fn cache_candidates(&mut self, now: Time, machine: MachineId, addrs: &[SocketAddr]) {
        for a in addrs.iter().filter(|a| crate::announce::is_global(a)) {
            self.peer_cache.candidate(*a, machine, now.as_secs());
        }
    }
}
