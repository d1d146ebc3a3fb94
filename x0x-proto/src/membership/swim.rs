//! SWIM: one neighbour probed per period, directly then through others, suspected when
//! neither answers and declared dead unless it shows a sign of life in time.

use rand_chacha::ChaCha8Rng;

use super::{DownReason, Membership, Out, Timer, sample};
use crate::identity::MachineId;
use crate::time::Time;
use crate::wire;

#[derive(Debug, Clone)]
pub(super) struct Probe {
    pub(super) target: MachineId,
    pub(super) seq: u64,
    pub(super) acked: bool,
    /// When the direct PING left, for the round-trip time of its ACK.
    sent: Time,
}

impl Membership {
    /// Any frame from `peer` is a sign of life: it refutes a suspicion.
    pub(crate) fn on_heard(&mut self, now: Time, peer: &MachineId) {
        // Called for every frame: the short probe order first, the view's map only for a
        // neighbour not in it yet.
        if let Some(entry) = self.probe_order.iter_mut().find(|(p, _)| p == peer) {
            entry.1 = now;
        } else if self.active.contains_key(peer) {
            self.probe_order.push((*peer, now));
        }
        if self.suspects.remove(peer).is_some() {
            self.stats.refuted += 1;
        }
    }

    /// When `peer` last sent us anything (`None`: never, since it joined the view).
    fn last_heard(&self, peer: &MachineId) -> Option<Time> {
        self.probe_order
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, t)| *t)
            .filter(|t| *t != Time::ZERO)
    }

    /// Active neighbours not suspected.
    pub(super) fn standing(&self) -> usize {
        self.active
            .keys()
            .filter(|p| !self.suspects.contains_key(p))
            .count()
    }

    /// Makes `peer` a suspect. Deviations from SWIM, for crashes that come together (half a
    /// network, a rack, a region): every other neighbour silent since `silent_since` gets a
    /// direct ping at once (`check_timeout` suspects it if it stays silent), and the passive
    /// view is asked for a stand-in now rather than once the suspect is declared dead. So a
    /// node whose whole active view died looks for new neighbours within about one probe
    /// period instead of after one period per neighbour plus the suspicion time.
    fn suspect(&mut self, now: Time, rng: &mut ChaCha8Rng, peer: MachineId, silent_since: Time) {
        self.stats.suspected += 1;
        self.suspects.insert(peer, now);
        self.out.push_back(Out::Suspected(peer));
        self.timers.set(
            now + self.config.suspect_timeout,
            Timer::SuspectTimeout(peer),
        );
        let silent: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| {
                **p != peer
                    && !self.suspects.contains_key(p)
                    && !self.checks.contains_key(p)
                    && self.last_heard(p).is_none_or(|t| t <= silent_since)
            })
            .copied()
            .collect();
        for p in silent {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.stats.checks += 1;
            self.checks.insert(p, now);
            self.out.push_back(Out::Send(p, wire::Ping { seq }.into()));
            self.timers
                .set(now + self.config.probe_timeout, Timer::Check(p));
        }
        self.refill(rng);
    }

    /// A neighbour pinged by `suspect` that stayed silent since is suspected too.
    pub(super) fn check_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng, peer: MachineId) {
        let Some(&sent) = self.checks.get(&peer) else {
            return;
        };
        // A timer left from an earlier check of the same peer (it left the view and came
        // back): the current check's own timer is still to come.
        if now.saturating_since(sent) < self.config.probe_timeout {
            return;
        }
        self.checks.remove(&peer);
        if self.active.contains_key(&peer)
            && !self.suspects.contains_key(&peer)
            && self.last_heard(&peer).is_none_or(|t| t < sent)
        {
            self.suspect(now, rng, peer, sent);
        }
    }

    pub(super) fn on_ack(&mut self, now: Time, from: MachineId, seq: u64) {
        if let Some(p) = &mut self.probe
            && p.seq == seq
            && p.target == from
        {
            if !p.acked {
                p.acked = true;
                self.out
                    .push_back(Out::Rtt(from, now.saturating_since(p.sent)));
                // Answered: its timeout has nothing left to do, so it need not wake the node.
                let deadline = p.sent + self.config.probe_timeout;
                self.timers.cancel(deadline, Timer::ProbeDirectTimeout(seq));
            }
            return;
        }
        if let Some((requester, their_seq, target)) = self.relays.remove(&seq)
            && target == from
        {
            self.out.push_back(Out::Send(
                requester,
                wire::PingReqAck {
                    target,
                    seq: their_seq,
                    alive: true,
                }
                .into(),
            ));
        }
    }

    pub(super) fn on_ping_req(&mut self, from: MachineId, target: MachineId, seq: u64) {
        if !self.connected.contains_key(&target) {
            self.out.push_back(Out::Send(
                from,
                wire::PingReqAck {
                    target,
                    seq,
                    alive: false,
                }
                .into(),
            ));
            return;
        }
        let our = self.next_seq;
        self.next_seq += 1;
        // Bounded: one relay per request; old ones are dropped beyond 256.
        if self.relays.len() >= 256 {
            self.relays.pop_first();
        }
        self.relays.insert(our, (from, seq, target));
        self.out
            .push_back(Out::Send(target, wire::Ping { seq: our }.into()));
    }

    pub(super) fn probe_tick(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        // Close the previous period if the indirect timeout did not (it runs past the period
        // when 2 × probe_timeout exceeds it).
        self.close_probe(now, rng);
        // Probe the neighbour we have heard from least recently; ties go round-robin over a
        // shuffled order. Deviation from SWIM's plain round-robin (§4.3): any frame is a sign
        // of life, so a neighbour that just sent us gossip needs no ping, while one that went
        // silent is the likeliest to have failed. In a busy overlay a crashed neighbour is the
        // stalest of every one of its neighbours at their next period, so one of them probes
        // it within a fraction of a period instead of after about |active| / (k + 1) periods.
        // With no other traffic, acks are the only news and the order stays round-robin: the
        // neighbour probed longest ago is the stalest, so every neighbour is still probed
        // within |active| periods (SWIM's time-bounded completeness).
        self.probe_order
            .retain(|(p, _)| self.active.contains_key(p));
        if self.probe_order.len() < self.active.len() {
            let fresh: Vec<MachineId> = self
                .active
                .keys()
                .filter(|p| !self.probe_order.iter().any(|(q, _)| q == *p))
                .copied()
                .collect();
            let n = fresh.len();
            // Never heard since it joined the view: stalest of all.
            self.probe_order
                .extend(sample(rng, &fresh, n).into_iter().map(|p| (p, Time::ZERO)));
        }
        // The first of the stalest (`min_by_key` keeps the first of equal keys).
        let stalest = self
            .probe_order
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, heard))| *heard)
            .map(|(i, _)| i);
        if let Some(i) = stalest {
            // To the back of the order: among equally stale neighbours, the next one is next.
            let entry = self.probe_order.remove(i);
            self.probe_order.push(entry);
            let target = entry.0;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.probe = Some(Probe {
                target,
                seq,
                acked: false,
                sent: now,
            });
            self.out
                .push_back(Out::Send(target, wire::Ping { seq }.into()));
            self.timers.set(
                now + self.config.probe_timeout,
                Timer::ProbeDirectTimeout(seq),
            );
        }
        self.timers
            .set(now + self.config.probe_interval, Timer::Probe);
    }

    pub(super) fn probe_direct_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng, seq: u64) {
        let Some(p) = &self.probe else { return };
        if p.seq != seq || p.acked {
            return;
        }
        let target = p.target;
        let helpers: Vec<MachineId> = self
            .active
            .keys()
            .filter(|h| **h != target)
            .copied()
            .collect();
        for h in sample(rng, &helpers, self.config.indirect_probes) {
            self.out
                .push_back(Out::Send(h, wire::PingReq { target, seq }.into()));
        }
        // The indirect probes get another `probe_timeout` (two hops each way, still inside
        // it on every link we model). Deviation from SWIM, which waits for the end of the
        // protocol period (§3.1): the verdict is the same, and it comes that much sooner.
        self.timers.set(
            now + self.config.probe_timeout,
            Timer::ProbeIndirectTimeout(seq),
        );
    }

    /// Ends the current probe: unanswered, directly and indirectly, its target becomes a
    /// suspect.
    pub(super) fn close_probe(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        if let Some(p) = self.probe.take()
            && !p.acked
            && self.active.contains_key(&p.target)
            && !self.suspects.contains_key(&p.target)
        {
            self.suspect(now, rng, p.target, p.sent);
        }
    }

    pub(super) fn suspect_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng, peer: MachineId) {
        let Some(since) = self.suspects.get(&peer).copied() else {
            return;
        };
        if now - since < self.config.suspect_timeout {
            return;
        }
        self.suspects.remove(&peer);
        if let Some(addrs) = self.active.remove(&peer) {
            self.neighbor_down(now, peer, addrs, DownReason::Dead);
            self.out.push_back(Out::Close(peer));
            self.refill(rng);
        }
    }
}
