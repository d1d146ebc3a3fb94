//! Discovery from the node's side: announcing this agent (identity, machine, user, KEM and
//! rendezvous records), verifying and merging the records of others, catch-up syncs, and the
//! queries of `find_agent` and `find_agent_rendezvous`.

use std::net::SocketAddr;
use std::time::Duration;

use rand_core::Rng;

use super::{Event, Node, Timer};
use crate::announce::{
    AnnounceError, IdentityAnnouncement, MachineAnnouncement, QueryRing, RejectReason,
    RendezvousRecord, UserAnnouncement,
};
use crate::discovery::{DiscoveredAgent, DiscoveryCacheSizes, Merged, QueryRoute, RendezvousInfo};
use crate::identity::{
    AgentCertificate, AgentId, Domain, MachineId, SignerId, UserId, UserKeypair,
};
use crate::time::Time;
use crate::wire::{self, QueryTarget, RecordKind};

/// Handle of a discovery query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// How a query found its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FoundVia {
    /// This node's cache.
    Cache,
    /// An identity announcement, from a query answer or from gossip while waiting.
    Query,
    /// A rendezvous record.
    Rendezvous,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The agent.
    pub agent_id: AgentId,
    /// Its machine.
    pub machine_id: MachineId,
    /// Where it can be reached.
    pub addresses: Vec<SocketAddr>,
    /// How it was found.
    pub via: FoundVia,
}

fn found(a: &DiscoveredAgent, via: FoundVia) -> Found {
    Found {
        agent_id: a.agent_id,
        machine_id: a.machine_id,
        addresses: a.addresses.clone(),
        via,
    }
}

fn found_rv(r: &RendezvousInfo) -> Found {
    Found {
        agent_id: r.agent_id,
        machine_id: r.machine_id,
        addresses: r.addresses.clone(),
        via: FoundVia::Rendezvous,
    }
}

#[derive(Debug, Clone)]
pub(super) struct OwnQuery {
    /// What the caller asked for (reported in the result).
    asked: QueryTarget,
    /// What the current stage looks for (a find_agent moves to rendezvous records).
    target: QueryTarget,
    ring: usize,
    deadline: Option<Time>,
    /// A find_agent that will fall back to rendezvous records after its rings.
    fallback: bool,
}

/// This agent's newest signed identity and KEM announcements: the agent ↔ machine binding
/// attached to direct messages, and the agent card.
#[derive(Debug, Clone)]
pub(super) struct OwnBinding {
    /// When they were signed, unix seconds.
    pub(super) announced_at: u64,
    pub(super) identity: wire::Signed,
    pub(super) kem: wire::Signed,
}

impl Node {
    // ----- commands -----

    // ----- announcements and discovery -----

    /// Announces this agent: a signed identity announcement and machine announcement (and a
    /// user announcement when disclosing the user), published on the announcement topic and
    /// repeated every heartbeat. `include_user` needs `human_consent`; once a disclosure was
    /// published, heartbeats keep it (a heartbeat must not silently retract it).
    pub fn announce_identity(
        &mut self,
        now: Time,
        include_user: bool,
        human_consent: bool,
    ) -> Result<(), AnnounceError> {
        self.start(now);
        if include_user {
            if !human_consent {
                return Err(AnnounceError::ConsentRequired);
            }
            if self.identity.user.is_none() {
                return Err(AnnounceError::NoUserIdentity);
            }
            self.user_disclosed = true;
        }
        self.publish_announcements(now);
        if !self.heartbeat_armed {
            self.heartbeat_armed = true;
            self.timers.set(
                now + self.discovery.config().heartbeat_interval,
                Timer::Heartbeat,
            );
        }
        self.drain_layers(now);
        Ok(())
    }

    /// Publishes a rendezvous record valid for `validity` (never returned after it expires).
    pub fn advertise_identity(&mut self, now: Time, validity: Duration) {
        self.start(now);
        let rec = RendezvousRecord {
            machine_id: self.machine_id(),
            addresses: self.announceable_addrs(),
            issued_at_ms: now.as_millis(),
            expires_at_ms: (now + validity).as_millis(),
        };
        let signed = wire::Signed::sign(&self.identity.agent, Domain::RendezvousRecord, &rec, true);
        self.own_rendezvous = Some(wire::Record {
            kind: RecordKind::Rendezvous,
            signed: signed.clone(),
        });
        let _ = self.accept_record(now, RecordKind::Rendezvous, &signed);
        let topic = self.topics.rendezvous;
        self.broadcast.publish(now, topic, signed);
        self.drain_layers(now);
    }

    /// Finds an agent: from the cache at once, else by asking the overlay in expanding rings,
    /// else through rendezvous records. The answer comes as [`Event::QueryFinished`] (already
    /// queued when the cache answers).
    pub fn find_agent(&mut self, now: Time, agent: AgentId) -> QueryId {
        self.start(now);
        let id = self.next_query_id();
        if let Some(a) = self.discovery.agent(now, &agent) {
            self.finish_query(
                id,
                QueryTarget::Agent(agent),
                Some(found(&a, FoundVia::Cache)),
            );
            return id;
        }
        self.start_query(now, id, QueryTarget::Agent(agent), None, true);
        self.drain_layers(now);
        id
    }

    /// Finds an agent's rendezvous record, waiting at most `timeout`. Never returns an expired
    /// record.
    pub fn find_agent_rendezvous(
        &mut self,
        now: Time,
        agent: AgentId,
        timeout: Duration,
    ) -> QueryId {
        self.start(now);
        let id = self.next_query_id();
        if let Some(r) = self.discovery.rendezvous(now, &agent) {
            self.finish_query(id, QueryTarget::Rendezvous(agent), Some(found_rv(&r)));
            return id;
        }
        self.start_query(
            now,
            id,
            QueryTarget::Rendezvous(agent),
            Some(now + timeout),
            false,
        );
        self.drain_layers(now);
        id
    }

    // ----- queries -----

    /// Live discovered agents (newest announcement within the TTL), sorted by agent id; blocked
    /// agents are left out ([`Node::all_discovered_agents`] lists them too).
    pub fn discovered_agents(&self, now: Time) -> Vec<DiscoveredAgent> {
        let mut list = self.discovery.agents(now);
        // Blocked agents are hidden; `all_discovered_agents` lists them too.
        list.retain(|a| !self.trust.is_blocked(&a.agent_id));
        list
    }

    /// One live discovered agent from the cache.
    pub fn discovered_agent(&self, now: Time, agent: &AgentId) -> Option<DiscoveredAgent> {
        self.discovery.agent(now, agent)
    }

    /// Live agents that disclosed `user` (with a valid certificate), from the cache.
    pub fn find_agents_by_user(&self, now: Time, user: &UserId) -> Vec<DiscoveredAgent> {
        self.discovery.agents_by_user(now, user)
    }

    /// A live rendezvous record from the cache.
    pub fn cached_rendezvous(&self, now: Time, agent: &AgentId) -> Option<RendezvousInfo> {
        self.discovery.rendezvous(now, agent)
    }

    /// How full the discovery tables are.
    pub fn discovery_cache_sizes(&self) -> DiscoveryCacheSizes {
        self.discovery.sizes()
    }

    // ----- announcements -----

    /// The addresses this agent announces.
    pub(super) fn announceable_addrs(&self) -> Vec<SocketAddr> {
        crate::announce::announceable_addrs(&self.told_addrs(), &self.config.bootstrap)
    }

    /// The user key and certificate, once the user's disclosure was consented to.
    pub(super) fn disclosed_user(&self) -> Option<&(UserKeypair, AgentCertificate)> {
        self.identity.user.as_ref().filter(|_| self.user_disclosed)
    }

    /// This agent's identity announcement: its machine, `addresses`, and the user certificate
    /// once disclosed.
    pub(super) fn identity_announcement(
        &self,
        announced_at: u64,
        addresses: Vec<SocketAddr>,
    ) -> IdentityAnnouncement {
        IdentityAnnouncement {
            machine_id: self.machine_id(),
            addresses,
            announced_at,
            nat: None,
            user: self.disclosed_user().map(|(_, c)| c.clone()),
        }
    }

    pub(super) fn publish_announcements(&mut self, now: Time) {
        let addresses = self.announceable_addrs();
        // Strictly increasing: receivers keep only a newer announcement, and a second one in
        // the same second (new addresses just learned) must replace the first.
        let announced_at = now.as_secs().max(self.last_announced_at + 1);
        self.last_announced_at = announced_at;
        let identity = self.identity_announcement(announced_at, addresses.clone());
        let machine = MachineAnnouncement {
            agent_id: self.agent_id(),
            addresses,
            announced_at,
        };
        let mut records = vec![
            wire::Signed::sign(
                &self.identity.agent,
                Domain::IdentityAnnouncement,
                &identity,
                true,
            ),
            wire::Signed::sign(
                &self.identity.machine,
                Domain::MachineAnnouncement,
                &machine,
                true,
            ),
        ];
        if let Some((u, _)) = self.disclosed_user() {
            let ann = UserAnnouncement {
                agents: vec![self.agent_id()],
                announced_at,
            };
            records.push(wire::Signed::sign(u, Domain::UserAnnouncement, &ann, true));
        }
        let topic = self.topics.announce;
        self.own_announcements = records
            .iter()
            .map(|signed| wire::Record {
                kind: RecordKind::Announcement,
                signed: signed.clone(),
            })
            .collect();
        let identity_record = records[0].clone();
        for signed in records {
            // Our own records go into our caches too, so lookups and catch-up syncs serve them.
            let _ = self.accept_record(now, RecordKind::Announcement, &signed);
            self.broadcast.publish(now, topic, signed);
        }
        // The KEM key goes right after the identity announcement, without the agent key
        // attached (receivers verify it with the key they just cached).
        let kem = self.kem_record(announced_at);
        let _ = self.accept_record(now, RecordKind::KemKey, &kem);
        self.broadcast.publish(now, self.topics.kem, kem.clone());
        self.own_binding = Some(OwnBinding {
            announced_at,
            identity: identity_record,
            kem,
        });
    }

    // ----- records of others -----

    /// Verifies a discovery record and merges it into the caches. Counts refusals.
    pub(super) fn accept_record(
        &mut self,
        now: Time,
        kind: RecordKind,
        signed: &wire::Signed,
    ) -> Result<(), RejectReason> {
        let result = self.accept_record_inner(now, kind, signed);
        match result {
            Ok(Merged::NewAgent(agent)) => {
                self.emit(Event::AgentDiscovered { agent_id: agent });
                if let Some(a) = self.discovery.agent(now, &agent) {
                    let (machine, addrs) = (a.machine_id, a.addresses.clone());
                    self.cache_candidates(now, machine, &addrs);
                }
                self.resolve_queries(now, QueryTarget::Agent(agent));
            }
            Ok(Merged::Updated) => {
                if let (RecordKind::Rendezvous, SignerId::Agent(a)) = (kind, signed.signer) {
                    self.resolve_queries(now, QueryTarget::Rendezvous(a));
                }
                if let (RecordKind::Announcement, SignerId::Agent(a)) = (kind, signed.signer) {
                    self.resolve_queries(now, QueryTarget::Agent(a));
                }
            }
            Err(r) => self.discovery.stats_mut().rejected.count(&r),
        }
        result.map(|_| ())
    }

    pub(super) fn accept_record_inner(
        &mut self,
        now: Time,
        kind: RecordKind,
        signed: &wire::Signed,
    ) -> Result<Merged, RejectReason> {
        let malformed = |_| RejectReason::Malformed;
        match (kind, signed.signer) {
            (RecordKind::Announcement, SignerId::Agent(agent)) => {
                let key = self.verify(signed, Domain::IdentityAnnouncement)?;
                let ann: IdentityAnnouncement = signed.decode_body().map_err(malformed)?;
                // The evaluator gates announcements: a blocked agent, or a pinned one on a
                // machine it is not pinned to, is neither cached nor relayed.
                match self.trust.evaluate(&agent, &ann.machine_id) {
                    crate::trust::TrustDecision::RejectBlocked => {
                        self.trust_refused.announcements_blocked += 1;
                        return Err(RejectReason::Blocked);
                    }
                    crate::trust::TrustDecision::RejectMachineMismatch => {
                        self.trust_refused.announcements_machine_mismatch += 1;
                        return Err(RejectReason::MachineMismatch);
                    }
                    _ => {}
                }
                self.discovery
                    .merge_identity(now, agent, key, signed.clone(), ann)
            }
            (RecordKind::Announcement, SignerId::Machine(machine)) => {
                let key = self.verify(signed, Domain::MachineAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery
                    .merge_machine(now, machine, key, signed.clone(), ann)
            }
            (RecordKind::Announcement, SignerId::User(user)) => {
                self.verify(signed, Domain::UserAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery.merge_user(now, user, signed.clone(), ann)
            }
            (RecordKind::Rendezvous, SignerId::Agent(agent)) => {
                self.verify(signed, Domain::RendezvousRecord)?;
                let rec = signed.decode_body().map_err(malformed)?;
                self.discovery
                    .merge_rendezvous(now, agent, signed.clone(), rec)
            }
            (RecordKind::Rendezvous, _) => Err(RejectReason::WrongSigner),
            (RecordKind::KemKey, SignerId::Agent(agent)) => {
                self.verify(signed, Domain::KemAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery.merge_kem(now, agent, signed.clone(), ann)
            }
            (RecordKind::KemKey, _) => Err(RejectReason::WrongSigner),
        }
    }

    pub(super) fn on_sync_request(&mut self, now: Time, peer: MachineId, max: u32) {
        // One catch-up per neighbour per minute bounds what a peer can make us send.
        if self
            .sync_served
            .get(&peer)
            .is_some_and(|t| now - *t < Duration::from_secs(60))
        {
            self.discovery
                .stats_mut()
                .rejected
                .count(&RejectReason::NotNewer);
            return;
        }
        if self.sync_served.len() >= self.config.max_connections * 4 {
            self.sync_served.pop_first();
        }
        self.sync_served.insert(peer, now);
        self.discovery.stats_mut().syncs_served += 1;
        let max = (max as usize).min(self.discovery.config().sync_max_records);
        let records = self.discovery.sync_records(now, max);
        // Chunk by count and by size so every frame stays under its limit.
        let mut batch = Vec::new();
        let mut size = 0;
        for r in records {
            let len = r.signed.body.len()
                + crate::identity::PUBLIC_KEY_LEN
                + crate::identity::SIGNATURE_LEN
                + 64;
            if !batch.is_empty()
                && (batch.len() == wire::MAX_RECORDS_PER_FRAME
                    || size + len > wire::MAX_FRAME_LEN / 2)
            {
                self.send(
                    peer,
                    wire::SyncRecords {
                        records: std::mem::take(&mut batch),
                    }
                    .into(),
                );
                size = 0;
            }
            size += len;
            batch.push(r);
        }
        if !batch.is_empty() {
            self.send(peer, wire::SyncRecords { records: batch }.into());
        }
    }

    // ----- queries -----

    pub(super) fn next_query_id(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    pub(super) fn start_query(
        &mut self,
        now: Time,
        id: QueryId,
        target: QueryTarget,
        deadline: Option<Time>,
        fallback: bool,
    ) {
        self.discovery.stats_mut().queries_started += 1;
        self.queries.insert(
            id,
            OwnQuery {
                asked: target,
                target,
                ring: 0,
                deadline,
                fallback,
            },
        );
        if let Some(d) = deadline {
            self.timers.set(d, Timer::QueryDeadline(id));
        }
        self.send_ring(now, id);
    }

    /// Sends the current ring of query `id` and arms its timer.
    pub(super) fn send_ring(&mut self, now: Time, id: QueryId) {
        let Some(q) = self.queries.get(&id) else {
            return;
        };
        let rings = &self.discovery.config().query_rings;
        let Some(&QueryRing { ttl, wait }) = rings.get(q.ring.min(rings.len().saturating_sub(1)))
        else {
            return;
        };
        let target = q.target;
        let wire_id = self.rng.next_u64();
        self.discovery.track_query(
            wire_id,
            QueryRoute {
                from: None,
                answered: false,
            },
        );
        for peer in self.membership.active().copied().collect::<Vec<_>>() {
            self.send(
                peer,
                wire::Query {
                    id: wire_id,
                    target,
                    ttl,
                }
                .into(),
            );
        }
        self.timers.set(now + wait, Timer::QueryRing(id));
    }

    pub(super) fn query_ring_timer(&mut self, now: Time, id: QueryId) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        q.ring += 1;
        let rings = self.discovery.config().query_rings.len();
        if q.ring < rings {
            self.send_ring(now, id);
            return;
        }
        match (q.target, q.fallback, q.deadline) {
            // Stage 3 of find_agent: rendezvous records.
            (QueryTarget::Agent(a), true, _) => {
                q.target = QueryTarget::Rendezvous(a);
                q.ring = 0;
                q.fallback = false;
                self.send_ring(now, id);
            }
            // A rendezvous lookup with a deadline keeps its last ring alive until then.
            (_, _, Some(d)) if d > now => {
                q.ring = rings - 1;
                self.send_ring(now, id);
            }
            _ => {
                let asked = q.asked;
                self.queries.remove(&id);
                self.discovery.stats_mut().queries_failed += 1;
                self.finish_query(id, asked, None);
            }
        }
    }

    /// The deadline of a rendezvous lookup passed without an answer.
    pub(super) fn query_deadline(&mut self, id: QueryId) {
        if let Some(q) = self.queries.remove(&id) {
            self.discovery.stats_mut().queries_failed += 1;
            self.finish_query(id, q.asked, None);
        }
    }

    /// Finishes every open query that the caches now answer.
    pub(super) fn resolve_queries(&mut self, now: Time, target: QueryTarget) {
        let open: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| match (q.target, target) {
                (QueryTarget::Agent(a), QueryTarget::Agent(b)) => a == b,
                (QueryTarget::Rendezvous(a), QueryTarget::Rendezvous(b)) => a == b,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            let Some(q) = self.queries.remove(&id) else {
                continue;
            };
            let result = match q.target {
                QueryTarget::Agent(a) => self
                    .discovery
                    .agent(now, &a)
                    .map(|d| found(&d, FoundVia::Query)),
                QueryTarget::Rendezvous(a) => {
                    self.discovery.rendezvous(now, &a).map(|r| found_rv(&r))
                }
            };
            match result {
                Some(f) => {
                    self.discovery.stats_mut().queries_succeeded += 1;
                    self.finish_query(id, q.asked, Some(f));
                }
                None => {
                    self.queries.insert(id, q);
                }
            }
        }
    }

    pub(super) fn finish_query(
        &mut self,
        query: QueryId,
        target: QueryTarget,
        found: Option<Found>,
    ) {
        self.emit(Event::QueryFinished {
            query,
            target,
            found,
        });
    }

    pub(super) fn on_query(&mut self, now: Time, from: MachineId, q: wire::Query) {
        if !self.discovery.track_query(
            q.id,
            QueryRoute {
                from: Some(from),
                answered: false,
            },
        ) {
            return;
        }
        let mut records = self.discovery.records_for(now, &q.target);
        if records.is_empty() {
            records = self.own_records(now, &q.target);
        }
        if !records.is_empty() {
            self.discovery.stats_mut().queries_answered += 1;
            if let Some(r) = self.discovery.route(q.id) {
                r.answered = true;
            }
            let records = records
                .into_iter()
                .take(wire::MAX_RECORDS_PER_HIT)
                .collect();
            self.send(from, wire::QueryHit { id: q.id, records }.into());
            return;
        }
        if q.ttl > 1 {
            self.discovery.stats_mut().queries_forwarded += 1;
            let next: Vec<MachineId> = self
                .membership
                .active()
                .filter(|p| **p != from)
                .copied()
                .collect();
            for peer in next {
                self.send(
                    peer,
                    wire::Query {
                        id: q.id,
                        target: q.target,
                        ttl: q.ttl - 1,
                    }
                    .into(),
                );
            }
        }
    }

    /// This agent's own records for `target`, if it is the one sought (and a rendezvous
    /// record has not expired).
    pub(super) fn own_records(&self, now: Time, target: &QueryTarget) -> Vec<wire::Record> {
        match target {
            QueryTarget::Agent(a) if *a == self.agent_id() => self.own_announcements.clone(),
            QueryTarget::Rendezvous(a) if *a == self.agent_id() => self
                .own_rendezvous
                .iter()
                .filter(|r| {
                    r.signed
                        .decode_body::<RendezvousRecord>()
                        .is_ok_and(|rec| rec.expires_at_ms > now.as_millis())
                })
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(super) fn on_query_hit(&mut self, now: Time, _from: MachineId, hit: wire::QueryHit) {
        let Some(route) = self.discovery.route(hit.id) else {
            return;
        };
        match route.from {
            None => {
                // Ours: verify and merge; merging resolves the query.
                for rec in hit.records {
                    let _ = self.accept_record(now, rec.kind, &rec.signed);
                }
            }
            Some(back) => {
                if !route.answered {
                    route.answered = true;
                    self.send(back, hit.into());
                }
            }
        }
    }
}
