//! HyParView: the active view messages flow through, repaired from the passive view.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use super::{DownReason, Membership, Out, Pending, Timer, pick, sample};
use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{self, Frame, PeerAddr};

impl Membership {
    pub(super) fn on_join(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        addrs: Vec<SocketAddr>,
    ) {
        let addrs = if addrs.is_empty() {
            self.connected.get(&from).cloned().unwrap_or_default()
        } else {
            addrs
        };
        // Within the join budget only (`join_budget` says why); a neighbour joining again
        // costs nothing. The joiner took us into its active view when it sent the JOIN: a
        // DISCONNECT tells it we did not, so it keeps us in its passive view and comes back by
        // NEIGHBOR request (no random walks) instead of keeping a one-sided link. It enters our
        // passive view, which our shuffles spread: without that, joiners refused during a
        // 10 000-node warm-up were known to one node only, and two of them ended up cut off.
        if !self.active.contains_key(&from) && !self.take_join(now) {
            self.out
                .push_back(Out::Send(from, wire::Disconnect { alive: true }.into()));
            self.add_passive(rng, PeerAddr { id: from, addrs });
            return;
        }
        // "Upon reception of a JOIN, a node adds the new node to its active view, even if it
        // has to drop a random node from it. It then sends a FORWARDJOIN to all other nodes in
        // its active view." (§4.2)
        self.add_active(now, rng, from, addrs.clone());
        let joiner = PeerAddr { id: from, addrs };
        let others: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| **p != from)
            .copied()
            .collect();
        for peer in others {
            self.out.push_back(Out::Send(
                peer,
                wire::ForwardJoin {
                    joiner: joiner.clone(),
                    ttl: self.config.active_random_walk_length,
                }
                .into(),
            ));
        }
    }

    pub(super) fn on_forward_join(
        &mut self,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        joiner: PeerAddr,
        ttl: u8,
    ) {
        if joiner.id == self.me {
            return;
        }
        // "If the TTL is zero or the active view has one node, add the new node to the active
        // view" (§4.2). We ask it to be our neighbour (high priority: it is new and needs us).
        if ttl == 0 || self.active.len() <= 1 {
            self.walk_end(joiner);
            return;
        }
        // "If the TTL equals PRWL, add the new node to the passive view."
        if ttl == self.config.passive_random_walk_length {
            self.add_passive(rng, joiner.clone());
        }
        let candidates: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| **p != from && **p != joiner.id)
            .copied()
            .collect();
        match pick(rng, candidates.iter()) {
            Some(next) => self.out.push_back(Out::Send(
                *next,
                wire::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                }
                .into(),
            )),
            None => self.walk_end(joiner),
        }
    }

    /// A join walk ends here: ask the joiner to be our neighbour.
    fn walk_end(&mut self, joiner: PeerAddr) {
        if !self.active.contains_key(&joiner.id) {
            self.request_neighbor(joiner, true);
        }
    }

    /// Takes one JOIN from the budget of the current window; false when it is spent
    /// (counted).
    pub(super) fn take_join(&mut self, now: Time) -> bool {
        let (start, taken) = &mut self.joins_taken;
        if now.saturating_since(*start) >= self.config.join_window {
            (*start, *taken) = (now, 0);
        }
        if *taken >= self.config.join_budget {
            self.stats.joins_refused += 1;
            return false;
        }
        *taken += 1;
        true
    }

    pub(super) fn on_neighbor(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        high_priority: bool,
    ) {
        // "A high priority request is always accepted, even if a node has to be dropped; a low
        // priority one only if there is a free slot" (§4.3).
        // A high-priority request into a full view evicts a neighbour, never a protected one
        // (`add_active`).
        let accept = self.active.contains_key(&from)
            || high_priority
            || self.active.len() < self.config.active_view_capacity;
        if accept {
            let addrs = self.connected.get(&from).cloned().unwrap_or_default();
            self.add_active(now, rng, from, addrs);
        }
        self.out.push_back(Out::Send(
            from,
            wire::NeighborReply { accepted: accept }.into(),
        ));
    }

    pub(super) fn on_neighbor_reply(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        accepted: bool,
    ) {
        self.awaiting_reply.remove(&from);
        if accepted {
            let addrs = self.connected.get(&from).cloned().unwrap_or_default();
            self.add_active(now, rng, from, addrs);
            self.refill_wait = self.config.maintenance_interval;
        } else {
            self.stats.neighbor_refused += 1;
            if self.view_is_thin() {
                // Stays in the passive view; try someone else at once (§4.3).
                self.refill(rng);
            } else {
                // Healthy enough: wait before asking again, longer after each refusal
                // (`refill_backoff_max` says why).
                self.refill_after = now + self.refill_wait;
                self.refill_wait = (self.refill_wait * 2).min(self.config.refill_backoff_max);
            }
        }
    }

    pub(super) fn on_disconnect(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        alive: bool,
    ) {
        if let Some(addrs) = self.active.remove(&from) {
            let reason = if alive {
                DownReason::Disconnected
            } else {
                DownReason::Left
            };
            if alive {
                self.add_passive(
                    rng,
                    PeerAddr {
                        id: from,
                        addrs: addrs.clone(),
                    },
                );
            }
            self.neighbor_down(now, from, addrs, reason);
            self.refill(rng);
        }
    }

    pub(super) fn on_shuffle(&mut self, rng: &mut ChaCha8Rng, from: MachineId, s: &wire::Shuffle) {
        if s.origin.id == self.me {
            return;
        }
        let candidates: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| **p != from && **p != s.origin.id)
            .copied()
            .collect();
        if s.ttl > 0
            && let Some(next) = pick(rng, candidates.iter())
        {
            self.out.push_back(Out::Send(
                *next,
                wire::Shuffle {
                    origin: s.origin.clone(),
                    peers: s.peers.clone(),
                    ttl: s.ttl - 1,
                }
                .into(),
            ));
            return;
        }
        // Accept: answer with as many passive entries as we received, then integrate theirs.
        let passive = self.passive_peers();
        let reply = sample(rng, &passive, s.peers.len().max(1));
        self.send_or_connect(s.origin.clone(), Pending::ShuffleReply(reply));
        let mut incoming = s.peers.clone();
        incoming.push(s.origin.clone());
        self.add_passive_many(rng, &incoming);
    }

    pub(super) fn start_shuffle(&mut self, rng: &mut ChaCha8Rng) {
        let active: Vec<MachineId> = self.active.keys().copied().collect();
        let Some(target) = pick(rng, active.iter()).copied() else {
            return;
        };
        let mut peers: Vec<PeerAddr> = sample(
            rng,
            &active
                .iter()
                .filter(|p| **p != target)
                .map(|p| PeerAddr {
                    id: *p,
                    addrs: self.active[p].clone(),
                })
                .collect::<Vec<_>>(),
            self.config.shuffle_active_count,
        );
        let passive = self.passive_peers();
        peers.extend(sample(rng, &passive, self.config.shuffle_passive_count));
        self.stats.shuffles += 1;
        self.out.push_back(Out::Send(
            target,
            wire::Shuffle {
                origin: self.me_addr(),
                peers,
                ttl: self.config.shuffle_random_walk_length,
            }
            .into(),
        ));
    }

    /// Re-contacts one dead neighbour or bootstrap address, so a healed partition re-merges.
    pub(super) fn recontact(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        let retention = self.config.graveyard_retention;
        self.graveyard
            .retain(|_, (_, died, _)| now - *died < retention);
        // The entry stays until the node is a neighbour again (a partition may last longer
        // than one try); the least recently tried goes first.
        let next = self
            .graveyard
            .iter()
            .filter(|(p, _)| !self.active.contains_key(p) && !self.pending.contains_key(p))
            .min_by_key(|(p, (_, _, tried))| (*tried, **p))
            .map(|(p, (addrs, _, _))| (*p, addrs.clone()));
        if let Some((peer, addrs)) = next {
            if let Some(e) = self.graveyard.get_mut(&peer) {
                e.2 = now;
            }
            self.stats.recontacts += 1;
            self.request_neighbor(PeerAddr { id: peer, addrs }, true);
        } else if self.active.is_empty()
            && let Some(addr) = pick(rng, self.bootstrap.iter()).copied()
            && !self.dialing.contains_key(&addr)
        {
            self.stats.recontacts += 1;
            self.dialing.insert(addr, None);
            self.out.push_back(Out::Dial(addr, None));
        }
    }

    /// With no neighbour: try to get back in — the least recently tried dead neighbour, a
    /// passive peer and a bootstrap address — and schedule the next try after the current
    /// wait less up to a quarter of jitter, then double the wait (at most
    /// `rejoin_backoff_max`). A neighbour resets it.
    pub(super) fn rejoin(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        self.stats.rejoin_attempts += 1;
        let dead = self
            .graveyard
            .iter()
            .filter(|(p, _)| !self.pending.contains_key(p) && !self.connected.contains_key(p))
            .min_by_key(|(p, (_, _, tried))| (*tried, **p))
            .map(|(p, (addrs, _, _))| (*p, addrs.clone()));
        if let Some((peer, addrs)) = dead {
            if let Some(e) = self.graveyard.get_mut(&peer) {
                e.2 = now;
            }
            self.request_neighbor(PeerAddr { id: peer, addrs }, true);
        }
        let passive = pick(rng, self.passive.keys())
            .copied()
            .filter(|p| !self.pending.contains_key(p))
            .map(|p| (p, self.passive[&p].clone()));
        if let Some((peer, addrs)) = passive {
            self.request_neighbor(PeerAddr { id: peer, addrs }, true);
        }
        if let Some(addr) = pick(rng, self.bootstrap.iter()).copied()
            && !self.dialing.contains_key(&addr)
        {
            self.dialing.insert(addr, None);
            self.out.push_back(Out::Dial(addr, None));
        }
        // Up to a quarter less, so nodes cut off together do not retry together, and the wait
        // never exceeds the cap.
        let wait = self.rejoin_wait;
        let jitter = Duration::from_micros(rng.next_u64() % (wait.as_micros() as u64 / 4).max(1));
        self.timers.set(now + (wait - jitter), Timer::Rejoin);
        self.rejoin_armed = true;
        self.rejoin_wait = (wait * 2).min(self.config.rejoin_backoff_max.max(wait));
    }

    pub(super) fn request_neighbor(&mut self, peer: PeerAddr, high_priority: bool) {
        if peer.id == self.me {
            return;
        }
        self.send_or_connect(peer, Pending::Neighbor { high_priority });
    }

    pub(super) fn send_or_connect(&mut self, peer: PeerAddr, what: Pending) {
        if self.connected.contains_key(&peer.id) {
            let frame: Frame = match what {
                Pending::Connect => return,
                Pending::Neighbor { high_priority } => {
                    self.awaiting_reply.insert(peer.id);
                    wire::Neighbor { high_priority }.into()
                }
                Pending::ShuffleReply(peers) => wire::ShuffleReply { peers }.into(),
                Pending::Frame(frame) => *frame,
            };
            self.out.push_back(Out::Send(peer.id, frame));
            return;
        }
        let Some(addr) = peer.addrs.first().copied() else {
            return;
        };
        if self.pending.contains_key(&peer.id) {
            return;
        }
        self.pending.insert(peer.id, what);
        self.dialing.insert(addr, Some(peer.id));
        self.out.push_back(Out::Dial(addr, Some(peer.id)));
    }

    /// The active neighbours a newcomer may evict: all but the `protected_neighbors` that
    /// have been in the view longest (ties broken by id), in id order.
    pub(super) fn evictable(&self) -> Vec<MachineId> {
        let mut by_age: Vec<(Time, MachineId)> = self
            .active
            .keys()
            .map(|p| (self.active_since.get(p).copied().unwrap_or(Time::ZERO), *p))
            .collect();
        by_age.sort();
        let keep = self
            .config
            .protected_neighbors
            .min(self.config.active_view_capacity.saturating_sub(1));
        let mut out: Vec<MachineId> = by_age.into_iter().skip(keep).map(|(_, p)| p).collect();
        out.sort();
        out
    }

    /// Whether the active view is under half full: refused refills are retried at once.
    pub(super) fn view_is_thin(&self) -> bool {
        self.active.len() * 2 < self.config.active_view_capacity
    }

    /// Tops the active view up from the passive view, one request per free slot.
    pub(super) fn refill(&mut self, rng: &mut ChaCha8Rng) {
        let outstanding = self
            .pending
            .values()
            .filter(|p| matches!(p, Pending::Neighbor { .. }))
            .count()
            + self.awaiting_reply.len();
        // A suspected neighbour's slot counts as free: its stand-in is sought now, and takes
        // its place when it comes (`add_active` evicts suspects first).
        let standing = self.standing();
        let free = self
            .config
            .active_view_capacity
            .saturating_sub(standing + outstanding);
        for _ in 0..free {
            let candidates: Vec<MachineId> = self
                .passive
                .keys()
                .filter(|p| {
                    !self.active.contains_key(p)
                        && !self.pending.contains_key(p)
                        && !self.awaiting_reply.contains(p)
                })
                .copied()
                .collect();
            let Some(peer) = pick(rng, candidates.iter()).copied() else {
                return;
            };
            let addrs = self.passive[&peer].clone();
            // "If the active view is empty, the request has high priority" (§4.3); so it is
            // when every neighbour in it is suspected.
            let high = standing == 0;
            self.request_neighbor(PeerAddr { id: peer, addrs }, high);
        }
    }

    pub(super) fn add_active(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        peer: MachineId,
        addrs: Vec<SocketAddr>,
    ) {
        if peer == self.me || self.active.contains_key(&peer) {
            return;
        }
        if !self.connected.contains_key(&peer) {
            // We only keep neighbours we have a connection to.
            return;
        }
        if self.active.len() >= self.config.active_view_capacity {
            // "drop a random node from the active view" and tell it (DISCONNECT) — a
            // suspected one first: the newcomer is its stand-in.
            let suspected: Vec<MachineId> = self
                .active
                .keys()
                .filter(|p| self.suspects.contains_key(p))
                .copied()
                .collect();
            if let Some(victim) = pick(rng, suspected.iter()).copied()
                && let Some(vaddrs) = self.active.remove(&victim)
            {
                // Likely dead: it goes to the graveyard, not the passive view.
                self.neighbor_down(now, victim, vaddrs, DownReason::Replaced);
                self.out.push_back(Out::Close(victim));
            }
        }
        if self.active.len() >= self.config.active_view_capacity {
            // Never one of the longest-standing neighbours (`protected_neighbors`).
            let victims = self.evictable();
            let victim = pick(rng, victims.iter()).copied().unwrap_or(peer);
            if let Some(vaddrs) = self.active.remove(&victim) {
                self.out
                    .push_back(Out::Send(victim, wire::Disconnect { alive: true }.into()));
                // Through `add_passive`, which keeps the passive view at its cap: inserting
                // directly let it grow one past the cap on every eviction into a full view.
                self.add_passive(
                    rng,
                    PeerAddr {
                        id: victim,
                        addrs: vaddrs.clone(),
                    },
                );
                self.neighbor_down(now, victim, vaddrs, DownReason::Evicted);
            }
        }
        self.passive.remove(&peer);
        self.graveyard.remove(&peer);
        self.pending.remove(&peer);
        self.active.insert(peer, addrs);
        self.active_since.insert(peer, now);
        self.stats.neighbor_up += 1;
        self.out.push_back(Out::NeighborUp(peer));
    }

    pub(super) fn neighbor_down(
        &mut self,
        now: Time,
        peer: MachineId,
        addrs: Vec<SocketAddr>,
        reason: DownReason,
    ) {
        self.stats.neighbor_down.count(&reason);
        // A lost neighbour is news: refill without waiting out an earlier backoff.
        self.refill_after = now;
        self.refill_wait = self.config.maintenance_interval;
        self.suspects.remove(&peer);
        self.checks.remove(&peer);
        self.active_since.remove(&peer);
        self.probe_order.retain(|(p, _)| *p != peer);
        if matches!(
            reason,
            DownReason::Dead | DownReason::ConnectionLost | DownReason::Replaced
        ) && !addrs.is_empty()
        {
            if self.graveyard.len() >= self.config.graveyard_capacity
                && let Some(oldest) = self
                    .graveyard
                    .iter()
                    .min_by_key(|(_, (_, t, _))| *t)
                    .map(|(id, _)| *id)
            {
                self.graveyard.remove(&oldest);
            }
            self.graveyard.insert(peer, (addrs, now, now));
        }
        self.out.push_back(Out::NeighborDown(peer, reason));
        // The connection is kept for `linger` in case replies are in flight, then closed.
        if self.connected.contains_key(&peer) {
            self.timers
                .set(now + self.config.linger, Timer::Linger(peer));
        }
    }

    pub(super) fn add_passive(&mut self, rng: &mut ChaCha8Rng, peer: PeerAddr) {
        if peer.id == self.me || self.active.contains_key(&peer.id) || peer.addrs.is_empty() {
            return;
        }
        if !self.passive.contains_key(&peer.id)
            && self.passive.len() >= self.config.passive_view_capacity
        {
            // "remove a random node from the passive view" (§4.4).
            let keys: Vec<MachineId> = self.passive.keys().copied().collect();
            if let Some(victim) = pick(rng, keys.iter()).copied() {
                self.passive.remove(&victim);
                self.stats.passive_evicted += 1;
            }
        }
        self.passive.insert(peer.id, peer.addrs);
    }

    pub(super) fn add_passive_many(&mut self, rng: &mut ChaCha8Rng, peers: &[PeerAddr]) {
        for p in peers {
            self.add_passive(rng, p.clone());
        }
    }

    /// The passive view as peer addresses, in id order.
    fn passive_peers(&self) -> Vec<PeerAddr> {
        self.passive
            .iter()
            .map(|(id, addrs)| PeerAddr {
                id: *id,
                addrs: addrs.clone(),
            })
            .collect()
    }
}
