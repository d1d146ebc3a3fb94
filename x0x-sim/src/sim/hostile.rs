//! The simulator side of [`crate::adversary`]: assigning roles, injecting forgeries, replays
//! and eclipse joins, and measuring what they did. The event loop only carries a few hooks.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use x0x_proto::broadcast::PubSubBody;
use x0x_proto::identity::{AgentKeypair, Domain, SignerId};
use x0x_proto::wire::{self, Frame, FrameKind, Signed, TopicId};
use x0x_proto::{AgentId, MachineId, Node};

use super::world::IdMap;
use super::{Ev, Sim, TraceTag, World, derive, ms};
use crate::adversary::{AGED_CAPTURE_CAP, Adversary, CAPTURE_CAP, Role, TargetView};
use crate::net::addr_of;
use crate::report::named_counts;
use crate::scenario::{Publishers, Scenario};
use crate::stats::Bitset;

/// Roles of the `honest + sybils` nodes, drawn from their own RNG so a scenario without an
/// adversary runs exactly as before.
pub(super) fn assign_roles(sc: &Scenario, seed: u64) -> Vec<Role> {
    let Some(a) = &sc.adversary else {
        return Vec::new();
    };
    let n = sc.nodes;
    let mut roles = vec![Role::Honest; n + a.sybils];
    let mut rng = ChaCha8Rng::from_seed(derive("x0x-sim adversary roles v1", seed, 0, 0));
    let publisher = (sc.workload.publishers == Publishers::Fixed)
        .then(|| sc.workload.publisher.min(n.saturating_sub(1)));
    let target = (a.sybils > 0 || a.eclipsers > 0).then_some(a.target.min(n.saturating_sub(1)));
    let mut pool: Vec<usize> = (0..n)
        .filter(|&i| Some(i) != publisher && Some(i) != target)
        .collect();
    let mut take = |k: usize, role: Role, roles: &mut Vec<Role>| {
        for _ in 0..k.min(pool.len()) {
            let j = rng.random_range(0..pool.len());
            roles[pool.swap_remove(j)] = role;
        }
    };
    let holes = (n as f64 * a.blackhole_fraction).round() as usize;
    take(holes, Role::BlackHole, &mut roles);
    take(a.forgers, Role::Forger, &mut roles);
    take(a.eclipsers, Role::Eclipser, &mut roles);
    for r in roles.iter_mut().skip(n) {
        *r = Role::Sybil;
    }
    roles
}

/// Start time and bootstrap of a Sybil (index `i >= sc.nodes`).
pub(super) fn sybil_start(sc: &Scenario, warmup_end: u64, i: usize) -> Option<(u64, u32)> {
    let a = sc.adversary.as_ref()?;
    let k = i.checked_sub(sc.nodes)?;
    let at = warmup_end
        + ms(a.sybil_start_ms)
        + ms(a.sybil_window_ms) * k as u64 / a.sybils.max(1) as u64;
    Some((at, a.target.min(sc.nodes.saturating_sub(1)) as u32))
}

/// Removes the non-honest nodes from the measured subscriber sets, keeping the real ones for
/// subscribing: delivery is measured over honest receivers only.
pub(super) fn mask_subscribers(adv: &mut Adversary, subs: &mut [Bitset], n: usize) {
    if adv.roles.is_empty() {
        return;
    }
    adv.subscribed = Some(subs.to_vec());
    for s in subs.iter_mut() {
        let mut m = Bitset::new(n);
        for i in 0..n {
            if s.get(i) && adv.honest(i as u32) {
                m.set(i);
            }
        }
        *s = m;
    }
}

impl World {
    /// Whether node `i`'s frame of `kind` is swallowed by its adversary (counted); also
    /// captures genuine gossip that forgers relay, for their replays.
    pub(super) fn adversary_filter(&mut self, i: u32, kind: FrameKind, frame: &Bytes) -> bool {
        if kind != FrameKind::Gossip || self.adv.roles.is_empty() {
            return false;
        }
        let role = self.adv.role(i);
        if role.withholds_gossip() {
            self.adv.report.gossip_withheld += 1;
            return true;
        }
        // Only frames the forger's node relayed are genuine; its own injections are not.
        if role == Role::Forger && !self.adv.injecting {
            let aged = self.adv.replay_age_us > 0;
            if aged && self.adv.last_capture_tick == Some(self.adv.ticks) {
                return false;
            }
            let cap = if aged { AGED_CAPTURE_CAP } else { CAPTURE_CAP };
            if self.adv.captured.len() >= cap {
                self.adv.captured.pop_front();
            }
            self.adv.captured.push_back((self.now, frame.clone()));
            self.adv.last_capture_tick = Some(self.adv.ticks);
        }
        false
    }

    /// A delivery of a message id the workload never published, at node `j`.
    pub(crate) fn adversary_unknown_delivery(&mut self, j: u32) {
        if !self.adv.roles.is_empty() && self.adv.honest(j) {
            self.adv.report.forged_deliveries += 1;
        }
    }

    /// A second delivery of a workload message at node `j`.
    pub(crate) fn adversary_redelivery(&mut self, j: u32) {
        if !self.adv.roles.is_empty() && self.adv.honest(j) {
            self.adv.report.replayed_redeliveries += 1;
        }
    }

    /// A random honest node `i` has a connection with.
    fn honest_conn_peer(&mut self, i: u32) -> Option<u32> {
        let peers: Vec<u32> = self.slots[i as usize]
            .conns
            .iter()
            .map(|c| c.peer)
            .filter(|&p| self.adv.honest(p))
            .collect();
        (!peers.is_empty()).then(|| peers[self.adv_rng_pick(peers.len())])
    }

    fn adv_rng_pick(&mut self, len: usize) -> usize {
        self.script_rng.random_range(0..len)
    }

    /// Sends an injected frame from node `from` to node `to`.
    fn send_to(&mut self, from: u32, to: u32, kind: FrameKind, bytes: Bytes) {
        let id = self.ids[to as usize];
        self.route(from, id, kind, bytes);
    }
}

impl Sim<'_> {
    /// The first adversary tick, at the end of the warm-up.
    pub(super) fn schedule_adversary(&mut self) {
        if self.sc.adversary.is_some() {
            self.w.push(self.w.warmup_end, Ev::Adversary);
        }
    }

    fn forger_key(&mut self, f: u32) -> AgentKeypair {
        if let Some(k) = self.w.adv.keys.get(&f) {
            return k.clone();
        }
        let k = super::identity(self.real, self.seed, f).agent;
        self.w.adv.keys.insert(f, k.clone());
        k
    }

    /// One forged `Gossip` frame from forger `f`, rotating over the kinds of forgery.
    fn forge(&mut self, f: u32) -> Option<(&'static str, Bytes)> {
        let topic = *self.w.topics.first()?;
        let key = self.forger_key(f);
        self.w.adv.forge_counter += 1;
        let c = self.w.adv.forge_counter;
        let body = PubSubBody {
            topic,
            nonce: c,
            published_at_ms: self.w.now / 1000,
            payload: Bytes::from(format!("forged {f} {c}")),
        };
        let (what, message) = match c % 4 {
            0 => ("bad_signature", self.altered(&key, &body, c)),
            1 => {
                // Claims another agent wrote it, with the forger's own key attached.
                let mut m = Signed::sign(&key, Domain::PubSubMessage, &body, true);
                m.signer = SignerId::Agent(self.forged_agent(c, 0));
                ("key_mismatch", m)
            }
            2 => {
                // An unknown signer and no key to check it with.
                let mut m = Signed::sign(&key, Domain::PubSubMessage, &body, false);
                m.signer = SignerId::Agent(self.forged_agent(c, 1));
                ("unknown_key", m)
            }
            _ => {
                // Validly signed, but for another topic than the frame says.
                let other = PubSubBody {
                    topic: TopicId::from_name("x0x-sim/forged"),
                    ..body
                };
                (
                    "wrong_topic",
                    Signed::sign(&key, Domain::PubSubMessage, &other, true),
                )
            }
        };
        let frame: Frame = wire::Gossip {
            topic,
            hops: 1,
            root: 0,
            depth: wire::NO_DEPTH,
            message,
        }
        .into();
        frame.encode().ok().map(|b| (what, b))
    }

    /// A message whose signature does not match: the last captured genuine message with its
    /// body altered, or (none captured yet) `body` signed over other bytes.
    fn altered(&self, key: &AgentKeypair, body: &PubSubBody, c: u64) -> Signed {
        let captured = self.w.adv.captured.back().map(|(_, b)| b.clone());
        match captured.and_then(|b| Frame::decode(&b).ok()) {
            Some(Frame::Gossip(g)) => {
                let mut m = g.message;
                let mut b = m.body.to_vec();
                b.extend_from_slice(&c.to_le_bytes());
                m.body = Bytes::from(b);
                m
            }
            _ => {
                let mut m = Signed::sign(key, Domain::PubSubMessage, body, true);
                m.signature = key.sign(Domain::PubSubMessage, b"something else");
                m
            }
        }
    }

    /// A made-up agent id for forgery `c` (`k` tells the kinds apart).
    fn forged_agent(&self, c: u64, k: u64) -> AgentId {
        AgentId::from_bytes(derive("x0x-sim forged agent v1", self.seed, c, k))
    }

    /// The adversary clock: injections, eclipse joins, measurements; re-arms itself until the
    /// run's script ends.
    pub(super) fn adversary_tick(&mut self) {
        let Some(a) = self.sc.adversary.clone() else {
            return;
        };
        let tick_s = a.tick_ms as f64 / 1000.0;
        let now = self.w.now;
        // Forgeries and replays, the same number from every forger this tick.
        self.w.adv.carry.0 += a.forge_per_sec * tick_s;
        self.w.adv.carry.1 += a.replay_per_sec * tick_s;
        let forges = self.w.adv.carry.0.floor();
        let replays = self.w.adv.carry.1.floor();
        self.w.adv.carry.0 -= forges;
        self.w.adv.carry.1 -= replays;
        if self.w.adv.replay_age_us > 0 {
            let oldest = self.w.adv.replay_age_us + crate::adversary::REPLAY_AGE_SPAN_US;
            while self
                .w
                .adv
                .captured
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > oldest)
            {
                self.w.adv.captured.pop_front();
            }
        }
        self.inject(forges as u64, replays as u64);
        let target = a.target.min(self.sc.nodes.saturating_sub(1)) as u32;
        if a.eclipsers > 0 {
            if self.w.adv.next_eclipse == 0 {
                self.w.adv.next_eclipse = (a.eclipse_interval_ms / a.tick_ms).max(1);
                self.eclipse(target);
            }
            self.w.adv.next_eclipse -= 1;
        }
        // Measurements: the target's view every tick, the honest nodes' tables every second.
        if a.sybils > 0 || a.eclipsers > 0 {
            let attack_start = self.w.warmup_end + ms(a.sybil_start_ms);
            if now >= attack_start {
                self.sample_target(target);
            }
        }
        let every = (1000 / a.tick_ms).max(1);
        self.w.adv.ticks += 1;
        if self.w.adv.ticks.is_multiple_of(every) {
            self.sample_memory();
        }
        // The End event stops the loop; the clock runs until then.
        self.w.push(now + ms(a.tick_ms), Ev::Adversary);
    }

    /// The live nodes of `role`.
    fn live_with_role(&self, role: Role) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|&i| self.w.adv.role(i) == role && self.w.slots[i as usize].alive)
            .collect()
    }

    /// Every live forger sends `forges` forgeries and `replays` replays, each to a random
    /// honest node it is connected with.
    fn inject(&mut self, forges: u64, replays: u64) {
        let now = self.w.now;
        self.w.adv.injecting = true;
        for f in self.live_with_role(Role::Forger) {
            for _ in 0..forges {
                let Some(to) = self.w.honest_conn_peer(f) else {
                    break;
                };
                if let Some((what, bytes)) = self.forge(f) {
                    Adversary::bump(&mut self.w.adv.report.forged_injected, what, 1);
                    self.w.trace.rec(now, TraceTag::Forgery, f, u64::from(to));
                    self.w.send_to(f, to, FrameKind::Gossip, bytes);
                }
            }
            for _ in 0..replays {
                // Old enough frames are a prefix of the ring (captured in time order).
                let age = self.w.adv.replay_age_us;
                let n = self
                    .w
                    .adv
                    .captured
                    .partition_point(|(at, _)| now.saturating_sub(*at) >= age);
                if n == 0 {
                    break;
                }
                let Some(to) = self.w.honest_conn_peer(f) else {
                    break;
                };
                let k = self.w.adv_rng_pick(n);
                let bytes = self.w.adv.captured[k].1.clone();
                self.w.adv.report.replays_injected += 1;
                self.w.trace.rec(now, TraceTag::Replay, f, u64::from(to));
                self.w.send_to(f, to, FrameKind::Gossip, bytes);
            }
        }
        self.w.adv.injecting = false;
    }

    /// Every live eclipser JOINs `target` again, or reconnects to it.
    fn eclipse(&mut self, target: u32) {
        let now = self.w.now;
        for e in self.live_with_role(Role::Eclipser) {
            let connected = self.w.slots[e as usize]
                .conns
                .iter()
                .any(|c| c.peer == target);
            if !connected {
                self.w.dial(e, addr_of(target));
                continue;
            }
            let join: Frame = wire::Join {
                addrs: vec![addr_of(e)],
            }
            .into();
            if let Ok(bytes) = join.encode() {
                self.w.adv.report.eclipse_joins += 1;
                self.w
                    .trace
                    .rec(now, TraceTag::EclipseJoin, e, u64::from(target));
                self.w.send_to(e, target, FrameKind::Join, bytes);
            }
        }
    }

    fn sample_target(&mut self, target: u32) {
        let Some(node) = self.nodes[target as usize].as_ref() else {
            return;
        };
        let view = node.active_view();
        let conns = node.connected_peers().len() as u64;
        let adversarial = adversaries_in(&view, &self.w.by_id, &self.w.adv);
        let honest = (view.len() - adversarial) as u64;
        let share = if view.is_empty() {
            0.0
        } else {
            adversarial as f64 / view.len() as f64
        };
        let t = self.w.adv.report.target.get_or_insert(TargetView {
            min_honest_neighbors: u64::MAX,
            ..TargetView::default()
        });
        t.samples += 1;
        t.min_honest_neighbors = t.min_honest_neighbors.min(honest);
        t.max_adversary_share = t.max_adversary_share.max(share);
        if !view.is_empty() && honest == 0 {
            t.eclipsed_samples += 1;
        }
        if honest < 2 {
            t.samples_under_two_honest += 1;
        }
        t.connections_end = conns;
        t.connections_max = t.connections_max.max(conns);
        self.w.adv.share_sum += share;
    }

    /// Records the size of every bounded table on every live honest node.
    pub(super) fn sample_memory(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.w.adv.honest(i as u32) {
                continue;
            }
            let Some(node) = self.nodes[i].as_ref() else {
                continue;
            };
            sample_node(&mut self.w.adv, node);
        }
    }

    /// Fills the adversary report at the end of the run.
    pub(super) fn adversary_report(&mut self) -> Option<crate::adversary::AdversaryReport> {
        self.sc.adversary.as_ref()?;
        self.sample_memory();
        let adv = &mut self.w.adv;
        for r in &adv.roles {
            Adversary::bump(&mut adv.report.roles, r.name(), 1);
        }
        let (mut share_sum, mut counted) = (0.0, 0u64);
        for (i, slot) in self.nodes.iter().enumerate() {
            if !adv.honest(i as u32) {
                continue;
            }
            let Some(node) = slot.as_ref() else { continue };
            count_rejections(&mut adv.report.rejections, node);
            let view = node.active_view();
            if view.is_empty() {
                adv.report.honest_nodes_isolated += 1;
                continue;
            }
            let bad = adversaries_in(&view, &self.w.by_id, adv);
            if bad == view.len() {
                adv.report.honest_nodes_eclipsed += 1;
            }
            share_sum += bad as f64 / view.len() as f64;
            counted += 1;
        }
        adv.report.honest_view_adversary_share = if counted > 0 {
            share_sum / counted as f64
        } else {
            0.0
        };
        if let Some(t) = adv.report.target.as_mut() {
            if t.samples > 0 {
                t.mean_adversary_share = adv.share_sum / t.samples as f64;
            }
            if t.min_honest_neighbors == u64::MAX {
                t.min_honest_neighbors = 0;
            }
        }
        Some(std::mem::take(&mut adv.report))
    }
}

/// The members of `view` that are adversaries.
fn adversaries_in(view: &[MachineId], by_id: &IdMap<MachineId>, adv: &Adversary) -> usize {
    view.iter()
        .filter(|p| by_id.get(*p).is_some_and(|&j| !adv.honest(j)))
        .count()
}

/// Adds every refusal `node` counted to `rej`, keyed `layer/reason`.
fn count_rejections(rej: &mut BTreeMap<String, u64>, node: &Node) {
    let s = node.stats();
    for (k, v) in named_counts(&s.messages_rejected) {
        Adversary::bump(rej, &format!("message/{k}"), v);
    }
    for (k, v) in named_counts(&s.frames_rejected) {
        Adversary::bump(rej, &format!("frame/{k}"), v);
    }
    for (k, v) in named_counts(&s.closes) {
        Adversary::bump(rej, &format!("close/{k}"), v);
    }
    Adversary::bump(rej, "frame/from_non_neighbor", s.frames_from_non_neighbor);
    Adversary::bump(rej, "frame/unknown_kind", s.frames_unknown_kind);
    Adversary::bump(rej, "queue/transmits_dropped", s.transmits_dropped);
    Adversary::bump(rej, "queue/events_dropped", s.events_dropped);
    for (k, v) in named_counts(&s.discovery.rejected) {
        Adversary::bump(rej, &format!("record/{k}"), v);
    }
    let b = &s.broadcast;
    for (k, v) in named_counts(&b.dropped) {
        Adversary::bump(rej, &format!("broadcast/{k}"), v);
    }
    Adversary::bump(rej, "broadcast/duplicate", b.duplicates);
    Adversary::bump(rej, "broadcast/graft_exhausted", b.graft_exhausted);
    Adversary::bump(rej, "membership/rejected", s.membership.rejected);
    Adversary::bump(rej, "membership/joins_refused", s.membership.joins_refused);
}

/// Records the size of each bounded table of `node` against its cap, and whether its
/// invariants hold.
fn sample_node(adv: &mut Adversary, node: &Node) {
    let c = node.config();
    adv.bound(
        "connections",
        node.connected_peers().len(),
        c.max_connections,
    );
    adv.bound(
        "active_view",
        node.active_view().len(),
        c.membership.active_view_capacity,
    );
    adv.bound(
        "passive_view",
        node.passive_view_len(),
        c.membership.passive_view_capacity,
    );
    let b = node.broadcast_cache_sizes();
    adv.bound("broadcast_cache", b.cache, c.broadcast.cache_capacity);
    adv.bound("broadcast_seen", b.seen, c.broadcast.seen_capacity);
    adv.bound("broadcast_missing", b.missing, c.broadcast.max_missing);
    let d = node.discovery_cache_sizes();
    adv.bound("discovery_agents", d.agents, c.announce.max_agents);
    adv.bound("discovery_machines", d.machines, c.announce.max_machines);
    adv.bound("discovery_users", d.users, c.announce.max_users);
    adv.bound(
        "discovery_rendezvous",
        d.rendezvous,
        c.announce.max_rendezvous,
    );
    if node.check_invariants().is_err() {
        adv.report.invariant_violations += 1;
    }
}
