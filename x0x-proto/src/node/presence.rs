//! Presence at the node: beacons out on a timer and on every new connection, beacons and
//! FOAF frames in, the online set filtered by trust, and the presence events.

use std::net::SocketAddr;
use std::time::Duration;

use rand_core::Rng;

use super::{Event, Node, Timer};
use crate::identity::{AgentId, Domain, MachineId, PublicKey};
use crate::membership::DownReason;
use crate::presence::{Ctx, OfflineReason, OnlineAgent, Out, PresenceQueryId, QuerySpec};
use crate::time::Time;
use crate::trust::TrustLevel;
use crate::wire::{self, PresenceRecord, Signed};

/// Whose presence a caller wants to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Visibility {
    /// Every agent but blocked ones (x0x's `network` view).
    #[default]
    Network,
    /// Known and trusted contacts only (x0x's `social` view).
    Social,
}

/// Why a FOAF query could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceQueryError {
    /// `max_pending_queries` of this node's queries are under way.
    #[error("too many presence queries in flight")]
    TooMany,
    /// Presence is turned off in the configuration.
    #[error("presence is disabled")]
    Disabled,
}

impl Node {
    // ----- commands -----

    /// Browses friends of friends: asks `foaf_fanout` connected peers, which forward with
    /// `ttl − 1`; ends with [`Event::PresenceQueryFinished`] after `timeout` or enough
    /// answers. A TTL above `foaf_max_ttl` is clamped.
    pub fn discover_agents_foaf(
        &mut self,
        now: Time,
        ttl: u8,
        timeout: Duration,
    ) -> Result<PresenceQueryId, PresenceQueryError> {
        let fanout = self.config.presence.foaf_fanout;
        let to = self.pick_peers(fanout, None);
        self.presence_query(now, None, ttl, timeout, &to)
    }

    /// Looks for one agent's live record among friends of friends: asks every connected
    /// peer (a find fans out wider than browsing), ends at the first record of it, or after
    /// `timeout`.
    pub fn discover_agent_by_id(
        &mut self,
        now: Time,
        agent: AgentId,
        ttl: u8,
        timeout: Duration,
    ) -> Result<PresenceQueryId, PresenceQueryError> {
        let to = self.hello_peers();
        self.presence_query(now, Some(agent), ttl, timeout, &to)
    }

    fn presence_query(
        &mut self,
        now: Time,
        target: Option<AgentId>,
        ttl: u8,
        timeout: Duration,
        to: &[MachineId],
    ) -> Result<PresenceQueryId, PresenceQueryError> {
        self.start(now);
        if !self.config.presence.enabled {
            return Err(PresenceQueryError::Disabled);
        }
        let id = self.rng.next_u64();
        let peers = self.hello_peers();
        let ctx = Ctx::new(&peers, &self.discovery, now);
        let r = self
            .presence
            .start_query(
                now,
                QuerySpec {
                    id,
                    target,
                    ttl,
                    timeout,
                },
                to,
                &ctx,
            )
            .map_err(|()| PresenceQueryError::TooMany);
        self.drain_presence(now);
        r
    }

    // ----- queries -----

    /// The agents online here (their beacons reached this node and they have not gone
    /// offline since), seen through `visibility`, in agent order.
    pub fn online_agents(&self, now: Time, visibility: Visibility) -> Vec<OnlineAgent> {
        let peers = self.hello_peers();
        let ctx = Ctx::new(&peers, &self.discovery, now);
        self.presence
            .online(&ctx)
            .into_iter()
            .filter(|a| self.is_visible(&a.agent_id, visibility))
            .collect()
    }

    /// One agent's live presence record held here (online or not), unless it is blocked.
    pub fn presence_status(&self, now: Time, agent: &AgentId) -> Option<OnlineAgent> {
        if self.trust.is_blocked(agent) {
            return None;
        }
        let peers = self.hello_peers();
        let ctx = Ctx::new(&peers, &self.discovery, now);
        self.presence.status(now, agent, &ctx)
    }

    /// Whether `agent` is in the online set (whatever the visibility).
    pub fn is_online(&self, agent: &AgentId) -> bool {
        self.presence.is_online(agent)
    }

    /// Whether `agent` shows through `visibility`: network hides blocked agents, social shows
    /// known and trusted contacts only.
    pub fn is_visible(&self, agent: &AgentId, visibility: Visibility) -> bool {
        match visibility {
            Visibility::Network => !self.trust.is_blocked(agent),
            Visibility::Social => matches!(
                self.trust.level(agent),
                TrustLevel::Known | TrustLevel::Trusted
            ),
        }
    }

    // ----- internals -----

    /// Connected peers whose `Hello` is done, in id order.
    pub(super) fn hello_peers(&self) -> Vec<MachineId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.hello.is_some() && !p.closing)
            .map(|(m, _)| *m)
            .collect()
    }

    /// Up to `n` connected peers, random, `except` left out.
    fn pick_peers(&mut self, n: usize, except: Option<MachineId>) -> Vec<MachineId> {
        let mut all: Vec<MachineId> = self
            .hello_peers()
            .into_iter()
            .filter(|p| Some(*p) != except)
            .collect();
        // A partial Fisher–Yates shuffle: the first `n` are a uniform choice.
        let n = n.min(all.len());
        for i in 0..n {
            let j = i + (self.rng.next_u64() as usize) % (all.len() - i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    }

    /// Arms the first beacon tick (spread by the machine id, so nodes started together do
    /// not beacon together).
    pub(super) fn start_presence(&mut self, now: Time) {
        if !self.config.presence.enabled {
            return;
        }
        let interval = self.config.presence.beacon_interval;
        let b = self.machine_id();
        let spread = u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        let offset = Duration::from_micros(spread % (interval.as_micros() as u64).max(1));
        self.timers.set(now + offset, Timer::Beacon);
    }

    /// This node's current signed beacon, made afresh (new `seq`).
    fn make_beacon(&mut self, now: Time) -> Signed {
        self.presence_seq += 1;
        let addresses: Vec<SocketAddr> = self
            .told_addrs()
            .into_iter()
            .filter(|a| !a.ip().is_unspecified())
            .collect();
        let record = PresenceRecord {
            agent: self.agent_id(),
            machine: self.machine_id(),
            addresses,
            since: self.started_at.as_secs(),
            expires: (now + self.config.presence.record_lifetime()).as_secs(),
            seq: self.presence_seq,
        };
        let signed = Signed::sign(
            &self.identity.machine,
            Domain::PresenceBeacon,
            &record,
            true,
        );
        self.own_beacon = Some(signed.clone());
        signed
    }

    /// The beacon tick: a fresh beacon to every connected peer.
    pub(super) fn beacon_tick(&mut self, now: Time) {
        let signed = self.make_beacon(now);
        let peers = self.hello_peers();
        if !peers.is_empty() {
            self.presence.note_sent(peers.len() as u64);
            self.send_many(&peers, wire::Beacon { record: signed }.into());
        }
        self.timers
            .set(now + self.config.presence.beacon_interval, Timer::Beacon);
    }

    /// A connection completed its `Hello`: it gets this node's beacon at once.
    pub(super) fn presence_peer_up(&mut self, now: Time, peer: MachineId) {
        if !self.config.presence.enabled {
            return;
        }
        let fresh = self.own_beacon.as_ref().is_some_and(|s| {
            s.decode_body::<PresenceRecord>().is_ok_and(|r| {
                r.expires > now.as_secs() + self.config.presence.beacon_interval.as_secs() * 2
            })
        });
        let signed = match (&self.own_beacon, fresh) {
            (Some(s), true) => s.clone(),
            _ => self.make_beacon(now),
        };
        self.presence.note_sent(1);
        self.send(peer, wire::Beacon { record: signed }.into());
    }

    /// A connection went away.
    pub(super) fn presence_peer_down(&mut self, now: Time, peer: MachineId) {
        self.presence.peer_down(peer);
        self.drain_presence(now);
    }

    /// A neighbour left the active view: dead or gone for good says the agent is offline.
    pub(super) fn presence_neighbor_down(&mut self, now: Time, peer: MachineId, why: DownReason) {
        let reason = match why {
            DownReason::Dead => OfflineReason::Failed,
            DownReason::Left => OfflineReason::Left,
            _ => return,
        };
        self.presence.peer_gone(peer, reason);
        self.drain_presence(now);
    }

    pub(super) fn on_beacon(&mut self, now: Time, peer: MachineId, b: wire::Beacon) {
        if !self.config.presence.enabled {
            return;
        }
        let verified = self.verify_record(&b.record);
        let peers = self.hello_peers();
        let ctx = Ctx::new(&peers, &self.discovery, now);
        self.presence.on_beacon(now, peer, b.record, verified, &ctx);
        self.drain_presence(now);
    }

    /// Verifies a presence record with the key it carries, decoded for this check only.
    ///
    /// Not through the verifier's key cache: a node meets many machines over time, a decoded
    /// key is tens of kilobytes, and one decode per beacon period per peer costs little. The
    /// record keeps the key in its 1952-byte encoding, for the answers that pass it on.
    fn verify_record(&self, signed: &Signed) -> bool {
        let Some(key) = signed
            .signer_key
            .as_ref()
            .and_then(|k| PublicKey::from_bytes(k.as_bytes()).ok())
        else {
            return false;
        };
        self.verifier
            .verify_with(signed, Domain::PresenceBeacon, &key)
            .is_ok()
    }

    pub(super) fn on_presence_query(&mut self, now: Time, peer: MachineId, q: wire::PresenceQuery) {
        if !self.config.presence.enabled {
            return;
        }
        let next = if q.target.is_some() {
            let mut all = self.hello_peers();
            all.retain(|p| *p != peer);
            all
        } else {
            let fanout = self.config.presence.foaf_fanout;
            self.pick_peers(fanout, Some(peer))
        };
        // This node is online too: its own record answers a browse, or a find for it.
        let me = self.agent_id();
        let own = self
            .own_beacon
            .clone()
            .filter(|_| q.target.is_none_or(|t| t == me));
        self.presence.on_query(now, peer, q, &next, own);
        self.drain_presence(now);
    }

    pub(super) fn on_presence_answer(
        &mut self,
        now: Time,
        peer: MachineId,
        a: wire::PresenceAnswer,
    ) {
        if !self.config.presence.enabled {
            return;
        }
        // Only the origin verifies: relays pass answers back unread.
        let checked = if self.presence.is_own_query(a.id) {
            a.records
                .iter()
                .map(|s| (s.clone(), self.verify_record(s)))
                .collect()
        } else {
            Vec::new()
        };
        let peers = self.hello_peers();
        let ctx = Ctx::new(&peers, &self.discovery, now);
        self.presence.on_answer(now, peer, a, checked, &ctx);
        self.drain_presence(now);
    }

    /// Moves what presence produced into the node's queues; events of blocked agents stay
    /// inside (the network view hides them), and so does this node's own record.
    pub(super) fn drain_presence(&mut self, _now: Time) {
        while let Some(out) = self.presence.poll_out() {
            match out {
                Out::Send(to, frame) => self.send(to, frame),
                Out::Online(a) => {
                    if !self.trust.is_blocked(&a.agent_id) {
                        self.emit(Event::AgentOnline {
                            agent_id: a.agent_id,
                            machine_id: a.machine_id,
                            addresses: a.addresses,
                            reachable: a.reachable,
                        });
                    }
                }
                Out::Offline(agent, reason) => {
                    if !self.trust.is_blocked(&agent) {
                        self.emit(Event::AgentOffline {
                            agent_id: agent,
                            reason,
                        });
                    }
                }
                Out::QueryDone(query, agents) => {
                    // Peers answer with what they hold, this node's own record included.
                    let me = self.agent_id();
                    let agents = agents
                        .into_iter()
                        .filter(|a| a.agent_id != me && !self.trust.is_blocked(&a.agent_id))
                        .collect();
                    self.emit(Event::PresenceQueryFinished { query, agents });
                }
            }
        }
    }
}
