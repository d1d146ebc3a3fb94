//! Presence: who is online, friends of friends, and a failure detector that works.
//!
//! * **Beacons.** Every [`PresenceConfig::beacon_interval`] a node signs a
//!   [`crate::wire::PresenceRecord`] with its machine key — its agent, the
//!   addresses others can reach, `since` (its start), `expires` (three periods on) and a
//!   monotonic `seq` — and sends it to each connected peer, point to point (never flooded);
//!   a new connection gets one at once. A receiver keeps a beacon only from the connection
//!   its signer authenticated, only if its `seq` is higher than the one held (or its `since`
//!   newer: a restart), only within the sender's rate limit (burst 3, refill 0.2/s).
//! * **Failure detection.** Each beaconing peer has a φ accrual detector
//!   (Hayashibara et al., SRDS 2004; see `phi.rs`) over its beacon arrivals; while the peer stays connected and φ
//!   passes the threshold, the agent is [`OfflineReason::Failed`]. SWIM declaring the machine
//!   dead says the same sooner; a neighbour that leaves is [`OfflineReason::Left`]. A record
//!   whose connection closed for any other reason is kept until it expires and then
//!   [`OfflineReason::OutOfView`]: the agent may well be alive, this node just stopped hearing
//!   from it (x0x calls that offline too; we say which it is).
//! * **Friend of a friend.** A query asks up to `foaf_fanout` peers (every connected peer
//!   when looking for one agent) with a TTL; each receiver remembers the query id (dedup, and
//!   the way back), answers along the reverse path with its live records (only the sought
//!   agent's, for a find), and forwards with `ttl − 1` to `foaf_fanout` other peers. The
//!   origin verifies every record and gathers until its timeout, enough answers, or (for a
//!   find) the agent.
//!
//! Everything is bounded: records (`max_records`), the origin's queries
//! (`max_pending_queries`), remembered query ids (`seen_queries`), detector histories
//! (`phi_history`); refusals are counted by reason in [`PresenceStats`].

mod config;
pub(crate) mod phi;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

pub use config::PresenceConfig;
use phi::PhiDetector;

use crate::identity::{AgentId, MachineId};
use crate::time::Time;
use crate::util::counts::counts_by;
use crate::util::fifo::Fifo;
use crate::util::timers::Timers;
use crate::wire::{self, Frame, PresenceRecord, Signed};

/// Why an agent left a node's online set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OfflineReason {
    /// Its beacons stopped while connected (φ over the threshold), or SWIM declared its
    /// machine dead.
    Failed,
    /// It left (a graceful shutdown).
    Left,
    /// Its connection closed and its record expired unrenewed: no longer in this node's view.
    OutOfView,
}

impl OfflineReason {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Left => "left",
            Self::OutOfView => "out_of_view",
        }
    }
}

/// Why a beacon or a record in an answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeaconReject {
    /// Not signed by the machine of the connection it came on (or, in an answer, by the
    /// machine it names).
    #[error("wrong_signer")]
    WrongSigner,
    /// The signature does not verify, or the key is missing.
    #[error("bad_signature")]
    BadSignature,
    /// The body does not decode, or carries too many addresses.
    #[error("malformed")]
    Malformed,
    /// Already expired, or valid for longer than a record may be.
    #[error("stale")]
    Stale,
    /// Not newer than the record held (a replay).
    #[error("replay")]
    Replay,
    /// Over the sender's rate limit.
    #[error("rate_limited")]
    RateLimited,
    /// The agent is known to run on another machine.
    #[error("binding_mismatch")]
    BindingMismatch,
}

counts_by! {
    /// Beacons and answer records refused, by [`BeaconReject`].
    pub struct BeaconRejects(BeaconReject) {
        /// Not signed by the connection's (or named) machine.
        wrong_signer: BeaconReject::WrongSigner,
        /// Bad or unverifiable signature.
        bad_signature: BeaconReject::BadSignature,
        /// Undecodable body.
        malformed: BeaconReject::Malformed,
        /// Expired, or too long a validity.
        stale: BeaconReject::Stale,
        /// Not newer than the record held.
        replay: BeaconReject::Replay,
        /// Over the sender's rate limit.
        rate_limited: BeaconReject::RateLimited,
        /// The agent runs on another machine.
        binding_mismatch: BeaconReject::BindingMismatch,
    }
}

/// What presence counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PresenceStats {
    /// Beacons sent.
    pub beacons_sent: u64,
    /// Beacons accepted.
    pub beacons_accepted: u64,
    /// Beacons and answer records refused, by reason.
    pub rejected: BeaconRejects,
    /// Records dropped at the cap.
    pub records_evicted: u64,
    /// Agents that came online here.
    pub online_events: u64,
    /// Agents declared offline, by reason.
    pub offline_failed: u64,
    /// Agents that left.
    pub offline_left: u64,
    /// Agents whose record expired out of view.
    pub offline_out_of_view: u64,
    /// FOAF queries started here.
    pub queries_started: u64,
    /// Queries refused at `max_pending_queries`.
    pub queries_refused: u64,
    /// Queries from others answered.
    pub queries_answered: u64,
    /// Queries from others forwarded.
    pub queries_forwarded: u64,
    /// Query copies seen before (dropped).
    pub queries_duplicate: u64,
    /// Query TTLs above `foaf_max_ttl`, clamped.
    pub ttl_clamped: u64,
    /// Query ids forgotten at the `seen_queries` cap.
    pub seen_evicted: u64,
    /// Answers for queries unknown or over (dropped).
    pub answers_unmatched: u64,
}

/// An agent in the online set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// Its machine.
    pub machine_id: MachineId,
    /// Where it says it can be reached.
    pub addresses: Vec<SocketAddr>,
    /// Whether this node has a connection to it now.
    pub reachable: bool,
    /// When its record stops holding, unix seconds.
    pub expires: u64,
    /// When it started, unix seconds.
    pub since: u64,
}

/// Handle of a FOAF query started here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PresenceQueryId(pub u64);

/// What presence asks the node to do.
#[derive(Debug)]
pub(crate) enum Out {
    Send(MachineId, Frame),
    Online(OnlineAgent),
    Offline(AgentId, OfflineReason),
    QueryDone(PresenceQueryId, Vec<OnlineAgent>),
}

/// A held record.
#[derive(Debug, Clone)]
struct Held {
    record: PresenceRecord,
    signed: Signed,
    /// The machine it came from directly (a beacon), if any.
    via: Option<MachineId>,
}

/// A connected peer that beacons.
#[derive(Debug)]
struct Monitor {
    agent: AgentId,
    phi: PhiDetector,
    /// When φ passes the threshold (its armed timer).
    deadline: Time,
    /// Rate limit tokens, and when they were last refilled.
    tokens: u32,
    refilled: Time,
}

/// A query of this node's.
#[derive(Debug)]
struct OwnQuery {
    deadline: Time,
    target: Option<AgentId>,
    answers: usize,
    found: BTreeMap<AgentId, OnlineAgent>,
}

/// A query this node starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuerySpec {
    /// Random id.
    pub(crate) id: u64,
    /// One agent sought, or a browse.
    pub(crate) target: Option<AgentId>,
    /// Hops (clamped to `foaf_max_ttl`).
    pub(crate) ttl: u8,
    /// How long it gathers.
    pub(crate) timeout: Duration,
}

/// Where a query came from (none: it is ours).
#[derive(Debug, Clone, Copy)]
struct Route {
    from: Option<MachineId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Phi(MachineId),
    Expire(AgentId),
    Query(u64),
}

/// The presence state machine of one node.
#[derive(Debug)]
pub(crate) struct Presence {
    config: PresenceConfig,
    records: BTreeMap<AgentId, Held>,
    /// Agents this node reported online (and not offline since).
    online: BTreeSet<AgentId>,
    monitors: BTreeMap<MachineId, Monitor>,
    queries: BTreeMap<u64, OwnQuery>,
    routes: Fifo<u64, Route>,
    timers: Timers<Timer>,
    out: VecDeque<Out>,
    stats: PresenceStats,
}

/// What the node knows that presence needs, passed to the calls that need it.
pub(crate) struct Ctx<'a> {
    /// Connected peers (hello done), in id order.
    pub(crate) peers: &'a [MachineId],
    discovery: &'a crate::discovery::Discovery,
    now: Time,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        peers: &'a [MachineId],
        discovery: &'a crate::discovery::Discovery,
        now: Time,
    ) -> Self {
        Self {
            peers,
            discovery,
            now,
        }
    }

    /// The machine an agent is announced on, if known.
    fn bound(&self, agent: &AgentId) -> Option<MachineId> {
        self.discovery.agent(self.now, agent).map(|a| a.machine_id)
    }
}

impl Presence {
    pub(crate) fn new(config: PresenceConfig) -> Self {
        Self {
            routes: Fifo::new(config.seen_queries.max(1)),
            config,
            records: BTreeMap::new(),
            online: BTreeSet::new(),
            monitors: BTreeMap::new(),
            queries: BTreeMap::new(),
            timers: Timers::default(),
            out: VecDeque::new(),
            stats: PresenceStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> PresenceStats {
        self.stats
    }

    pub(crate) fn poll_out(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// Sizes against caps, for invariant checks: (records, queries, remembered query ids,
    /// monitors).
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.records.len(),
            self.queries.len(),
            self.routes.len(),
            self.monitors.len(),
        )
    }

    /// Whether query `id` is one of this node's own (its answers are verified here).
    pub(crate) fn is_own_query(&self, id: u64) -> bool {
        self.queries.contains_key(&id)
    }

    pub(crate) fn note_sent(&mut self, n: u64) {
        self.stats.beacons_sent += n;
    }

    // ----- beacons -----

    /// A beacon from connected `peer` whose signature the node checked (`verified`).
    pub(crate) fn on_beacon(
        &mut self,
        now: Time,
        peer: MachineId,
        signed: Signed,
        verified: bool,
        ctx: &Ctx<'_>,
    ) {
        if signed.signer != crate::identity::SignerId::Machine(peer) {
            return self.reject(BeaconReject::WrongSigner);
        }
        if !verified {
            return self.reject(BeaconReject::BadSignature);
        }
        let record: PresenceRecord = match signed.decode_body() {
            Ok(r) => r,
            Err(_) => return self.reject(BeaconReject::Malformed),
        };
        if record.machine != peer {
            return self.reject(BeaconReject::WrongSigner);
        }
        if !self.take_token(now, peer, record.agent) {
            return self.reject(BeaconReject::RateLimited);
        }
        if let Err(r) = self.admit(now, &record, ctx) {
            return self.reject(r);
        }
        self.stats.beacons_accepted += 1;
        // Monitor the peer: every beacon is an arrival for its detector.
        let interval = self.config.beacon_interval;
        let (history, threshold, min_std) = (
            self.config.phi_history,
            f64::from(self.config.phi_threshold),
            self.config.phi_min_std,
        );
        let m = self.monitors.entry(peer).or_insert_with(|| Monitor {
            agent: record.agent,
            phi: PhiDetector::new(now, interval, history),
            deadline: now,
            tokens: 0,
            refilled: now,
        });
        m.agent = record.agent;
        m.phi.arrival(now);
        let old = m.deadline;
        m.deadline = m.phi.deadline(threshold, min_std);
        let dl = m.deadline;
        self.timers.cancel(old, Timer::Phi(peer));
        self.timers.set(dl, Timer::Phi(peer));
        self.hold(now, record, signed, Some(peer), ctx);
    }

    /// The checks every record passes (beacon or answer): fresh, newer than held, bound.
    fn admit(&self, now: Time, r: &PresenceRecord, ctx: &Ctx<'_>) -> Result<(), BeaconReject> {
        let now_s = now.as_secs();
        let max_life = self.config.record_lifetime().as_secs() + 60;
        if r.expires <= now_s || r.expires > now_s + max_life {
            return Err(BeaconReject::Stale);
        }
        if let Some(m) = ctx.bound(&r.agent)
            && m != r.machine
        {
            return Err(BeaconReject::BindingMismatch);
        }
        if let Some(h) = self.records.get(&r.agent) {
            let newer =
                r.since > h.record.since || (r.since == h.record.since && r.seq > h.record.seq);
            if !newer {
                return Err(BeaconReject::Replay);
            }
        }
        Ok(())
    }

    /// Stores an admitted record and reports the agent online if it was not.
    fn hold(
        &mut self,
        now: Time,
        record: PresenceRecord,
        signed: Signed,
        via: Option<MachineId>,
        ctx: &Ctx<'_>,
    ) {
        let agent = record.agent;
        if !self.records.contains_key(&agent) && self.records.len() >= self.config.max_records {
            // Drop the record that would expire first (not a connected peer's if avoidable).
            let victim = self
                .records
                .iter()
                .min_by_key(|(_, h)| (h.via.is_some(), h.record.expires))
                .map(|(a, _)| *a);
            if let Some(v) = victim {
                self.forget(v, None);
                self.stats.records_evicted += 1;
            }
        }
        if let Some(old) = self.records.get(&agent) {
            self.timers
                .cancel(Time::from_secs(old.record.expires), Timer::Expire(agent));
        }
        self.timers
            .set(Time::from_secs(record.expires), Timer::Expire(agent));
        let info = online_agent(&record, ctx);
        // A record learned from an answer keeps the connection it came on, if any.
        let via = via.or_else(|| self.records.get(&agent).and_then(|h| h.via));
        self.records.insert(
            agent,
            Held {
                record,
                signed,
                via,
            },
        );
        if via.is_some() && self.online.insert(agent) {
            self.stats.online_events += 1;
            self.out.push_back(Out::Online(info));
        }
        let _ = now;
    }

    fn take_token(&mut self, now: Time, peer: MachineId, agent: AgentId) -> bool {
        let (burst, refill) = (self.config.rate_burst.max(1), self.config.rate_refill);
        let Some(m) = self.monitors.get_mut(&peer) else {
            // The first beacon of a peer: a full bucket less this one.
            self.monitors.insert(
                peer,
                Monitor {
                    agent,
                    phi: PhiDetector::new(
                        now,
                        self.config.beacon_interval,
                        self.config.phi_history,
                    ),
                    deadline: now,
                    tokens: burst - 1,
                    refilled: now,
                },
            );
            return true;
        };
        if !refill.is_zero() {
            let gained =
                (now.saturating_since(m.refilled).as_micros() / refill.as_micros().max(1)) as u32;
            if gained > 0 {
                m.tokens = (m.tokens + gained).min(burst);
                m.refilled = m.refilled + refill * gained;
            }
        }
        if m.tokens == 0 {
            return false;
        }
        m.tokens -= 1;
        true
    }

    fn reject(&mut self, r: BeaconReject) {
        self.stats.rejected.count(&r);
    }

    /// Removes an agent's record; reports it offline with `reason` if it was online.
    fn forget(&mut self, agent: AgentId, reason: Option<OfflineReason>) {
        if let Some(h) = self.records.remove(&agent) {
            self.timers
                .cancel(Time::from_secs(h.record.expires), Timer::Expire(agent));
        }
        if self.online.remove(&agent)
            && let Some(r) = reason
        {
            match r {
                OfflineReason::Failed => self.stats.offline_failed += 1,
                OfflineReason::Left => self.stats.offline_left += 1,
                OfflineReason::OutOfView => self.stats.offline_out_of_view += 1,
            }
            self.out.push_back(Out::Offline(agent, r));
        }
    }

    // ----- connections -----

    /// The connection to `peer` closed: its beacons stop. The record is kept until it expires
    /// (then [`OfflineReason::OutOfView`]), since a closed connection says nothing of the
    /// agent itself.
    pub(crate) fn peer_down(&mut self, peer: MachineId) {
        if let Some(m) = self.monitors.remove(&peer) {
            self.timers.cancel(m.deadline, Timer::Phi(peer));
            if let Some(h) = self.records.get_mut(&m.agent)
                && h.via == Some(peer)
            {
                h.via = None;
            }
        }
    }

    /// SWIM declared `peer`'s machine dead, or it left: its agent is offline now.
    pub(crate) fn peer_gone(&mut self, peer: MachineId, reason: OfflineReason) {
        if let Some(m) = self.monitors.remove(&peer) {
            self.timers.cancel(m.deadline, Timer::Phi(peer));
            self.forget(m.agent, Some(reason));
        }
    }

    // ----- queries -----

    /// Starts a query of this node's: sends it to `to` (chosen by the node).
    pub(crate) fn start_query(
        &mut self,
        now: Time,
        spec: QuerySpec,
        to: &[MachineId],
        ctx: &Ctx<'_>,
    ) -> Result<PresenceQueryId, ()> {
        let QuerySpec {
            id,
            target,
            ttl,
            timeout,
        } = spec;
        if self.queries.len() >= self.config.max_pending_queries {
            self.stats.queries_refused += 1;
            return Err(());
        }
        let ttl = self.clamp_ttl(ttl);
        self.stats.queries_started += 1;
        self.remember_route(id, Route { from: None });
        let mut q = OwnQuery {
            deadline: now + timeout,
            target,
            answers: 0,
            found: BTreeMap::new(),
        };
        // What this node holds already counts.
        for a in self.live(now, target) {
            q.found
                .insert(a.agent_id, online_agent(&a.record_of(), ctx));
        }
        let done = target.is_some_and(|t| q.found.contains_key(&t));
        self.queries.insert(id, q);
        if done {
            self.finish_query(id);
        } else {
            for p in to {
                self.out.push_back(Out::Send(
                    *p,
                    wire::PresenceQuery { id, ttl, target }.into(),
                ));
            }
            self.timers.set(now + timeout, Timer::Query(id));
        }
        Ok(PresenceQueryId(id))
    }

    fn clamp_ttl(&mut self, ttl: u8) -> u8 {
        if ttl > self.config.foaf_max_ttl {
            self.stats.ttl_clamped += 1;
            self.config.foaf_max_ttl
        } else {
            ttl
        }
    }

    fn remember_route(&mut self, id: u64, route: Route) {
        if self.routes.len() >= self.config.seen_queries.max(1) && !self.routes.contains_key(&id) {
            self.stats.seen_evicted += 1;
        }
        self.routes.push(id, route);
    }

    /// A query from `from`: answer with the live records (and `own`, this node's record, when
    /// it fits the query), forward to `next` (chosen by the node) with one hop less.
    pub(crate) fn on_query(
        &mut self,
        now: Time,
        from: MachineId,
        q: wire::PresenceQuery,
        next: &[MachineId],
        own: Option<Signed>,
    ) {
        if self.routes.contains_key(&q.id) {
            self.stats.queries_duplicate += 1;
            return;
        }
        let ttl = self.clamp_ttl(q.ttl);
        self.remember_route(q.id, Route { from: Some(from) });
        let records: Vec<Signed> = own
            .into_iter()
            .chain(
                self.live(now, q.target)
                    .into_iter()
                    .map(|h| h.signed.clone()),
            )
            .take(wire::MAX_PRESENCE_RECORDS)
            .collect();
        if !records.is_empty() || q.target.is_none() {
            self.stats.queries_answered += 1;
            self.out.push_back(Out::Send(
                from,
                wire::PresenceAnswer { id: q.id, records }.into(),
            ));
        }
        if ttl > 0 {
            self.stats.queries_forwarded += 1;
            for p in next.iter().filter(|p| **p != from) {
                self.out.push_back(Out::Send(
                    *p,
                    wire::PresenceQuery {
                        id: q.id,
                        ttl: ttl - 1,
                        target: q.target,
                    }
                    .into(),
                ));
            }
        }
    }

    /// An answer: relayed toward the origin, or (ours) its verified records gathered.
    /// `checked` holds each record's verification outcome (the node verifies signatures).
    pub(crate) fn on_answer(
        &mut self,
        now: Time,
        from: MachineId,
        a: wire::PresenceAnswer,
        checked: Vec<(Signed, bool)>,
        ctx: &Ctx<'_>,
    ) {
        let Some(route) = self.routes.get(&a.id).copied() else {
            self.stats.answers_unmatched += 1;
            return;
        };
        if let Some(back) = route.from {
            if back != from {
                self.out.push_back(Out::Send(back, a.into()));
            }
            return;
        }
        let Some(q) = self.queries.get(&a.id) else {
            self.stats.answers_unmatched += 1;
            return;
        };
        let target = q.target;
        let mut got = Vec::new();
        for (signed, verified) in checked {
            let Some(m) = (match signed.signer {
                crate::identity::SignerId::Machine(m) => Some(m),
                _ => None,
            }) else {
                self.reject(BeaconReject::WrongSigner);
                continue;
            };
            if !verified {
                self.reject(BeaconReject::BadSignature);
                continue;
            }
            let Ok(record) = signed.decode_body::<PresenceRecord>() else {
                self.reject(BeaconReject::Malformed);
                continue;
            };
            if record.machine != m {
                self.reject(BeaconReject::WrongSigner);
                continue;
            }
            if target.is_some_and(|t| t != record.agent) {
                continue;
            }
            let now_s = now.as_secs();
            if record.expires <= now_s {
                self.reject(BeaconReject::Stale);
                continue;
            }
            if let Some(b) = ctx.bound(&record.agent)
                && b != record.machine
            {
                self.reject(BeaconReject::BindingMismatch);
                continue;
            }
            got.push(online_agent(&record, ctx));
        }
        let Some(q) = self.queries.get_mut(&a.id) else {
            return;
        };
        q.answers += 1;
        for g in got {
            q.found.insert(g.agent_id, g);
        }
        let done = match target {
            Some(t) => q.found.contains_key(&t),
            None => q.answers >= self.config.foaf_enough_answers,
        };
        if done {
            self.finish_query(a.id);
        }
    }

    fn finish_query(&mut self, id: u64) {
        if let Some(q) = self.queries.remove(&id) {
            self.timers.cancel(q.deadline, Timer::Query(id));
            let agents = match q.target {
                Some(t) => q.found.get(&t).cloned().into_iter().collect(),
                None => q.found.into_values().collect(),
            };
            self.out
                .push_back(Out::QueryDone(PresenceQueryId(id), agents));
        }
    }

    // ----- time -----

    pub(crate) fn handle_timeout(&mut self, now: Time) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Phi(peer) => {
                    let due = self.monitors.get(&peer).map(|m| (m.deadline, m.agent));
                    if let Some((deadline, agent)) = due
                        && deadline <= now
                    {
                        self.monitors.remove(&peer);
                        self.forget(agent, Some(OfflineReason::Failed));
                    }
                }
                Timer::Expire(agent) => {
                    let expired = self
                        .records
                        .get(&agent)
                        .is_some_and(|h| h.record.expires <= now.as_secs());
                    if expired {
                        self.forget(agent, Some(OfflineReason::OutOfView));
                    }
                }
                Timer::Query(id) => {
                    if self.queries.get(&id).is_some_and(|q| q.deadline <= now) {
                        self.finish_query(id);
                    }
                }
            }
        }
    }

    // ----- queries of state -----

    /// Live records (unexpired), one agent's or all, in agent order.
    fn live(&self, now: Time, target: Option<AgentId>) -> Vec<LiveRecord<'_>> {
        let now_s = now.as_secs();
        self.records
            .iter()
            .filter(|(a, h)| h.record.expires > now_s && target.is_none_or(|t| t == **a))
            .map(|(_, h)| LiveRecord {
                agent_id: h.record.agent,
                record: &h.record,
                signed: &h.signed,
            })
            .collect()
    }

    /// The online set: agents reported online and not offline since, with their records.
    pub(crate) fn online(&self, ctx: &Ctx<'_>) -> Vec<OnlineAgent> {
        self.online
            .iter()
            .filter_map(|a| self.records.get(a))
            .map(|h| online_agent(&h.record, ctx))
            .collect()
    }

    /// One agent's record, if held and live.
    pub(crate) fn status(&self, now: Time, agent: &AgentId, ctx: &Ctx<'_>) -> Option<OnlineAgent> {
        self.records
            .get(agent)
            .filter(|h| h.record.expires > now.as_secs())
            .map(|h| online_agent(&h.record, ctx))
    }

    /// Whether `agent` is in the online set.
    pub(crate) fn is_online(&self, agent: &AgentId) -> bool {
        self.online.contains(agent)
    }

    /// Forgets everything (shutdown).
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.online.clear();
        self.monitors.clear();
        self.queries.clear();
        self.timers.clear();
    }
}

struct LiveRecord<'a> {
    agent_id: AgentId,
    record: &'a PresenceRecord,
    signed: &'a Signed,
}

impl LiveRecord<'_> {
    fn record_of(&self) -> PresenceRecord {
        self.record.clone()
    }
}

fn online_agent(r: &PresenceRecord, ctx: &Ctx<'_>) -> OnlineAgent {
    OnlineAgent {
        agent_id: r.agent,
        machine_id: r.machine,
        addresses: r.addresses.clone(),
        reachable: ctx.peers.binary_search(&r.machine).is_ok(),
        expires: r.expires,
        since: r.since,
    }
}
