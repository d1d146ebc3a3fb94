//! Discovery: bounded caches of announced agents, machines, users and rendezvous records, and
//! the explicit query that finds an agent no cache here holds.
//!
//! Merge rules (each refusal is counted by [`crate::announce::RejectReason`]):
//! * a newer-or-equal `announced_at` **replaces** the address list (no union: a roaming agent
//!   must not accumulate dead endpoints); an older one is refused (`not_newer`);
//! * a known user id is never cleared by a later announcement without one (a heartbeat sent
//!   before consent was latched cannot retract a disclosure);
//! * announcements stamped beyond the clock-skew allowance in the future are refused, and
//!   ones older than the TTL are refused as stale (a replay cannot resurrect a gone agent);
//! * an expired rendezvous record is never stored and never returned.
//!
//! Every cache has a cap and evicts the entry with the oldest announcement (or soonest expiry)
//! first, counting the eviction.
//!
//! `find_agent` asks instead of waiting (x0x waits 5 s hoping for a re-announcement): a
//! [`crate::wire::Query`] spreads over the overlay in expanding rings (2 and 8 hops by
//! default); any node that has the agent cached answers with the signed records, which travel
//! back along the query's path and are verified by the asker like any announcement.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::Serialize;

use crate::announce::{
    AnnounceConfig, IdentityAnnouncement, MachineAnnouncement, NatHints, RejectReason,
    RendezvousRecord, UserAnnouncement,
};
use crate::identity::{AgentId, MachineId, PublicKey, UserId};
use crate::kem::KemPublicKey;
use crate::node::TableSize;
use crate::time::Time;
use crate::util::counts::counts_by;
use crate::util::fifo::Fifo;
use crate::wire::{QueryTarget, Record, RecordKind, Signed};

/// An agent as discovery knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// The machine it runs on.
    pub machine_id: MachineId,
    /// Its user, if disclosed with a valid certificate.
    pub user_id: Option<UserId>,
    /// Where it can be reached (from its newest announcement).
    pub addresses: Vec<SocketAddr>,
    /// Its newest announcement's timestamp, unix seconds.
    pub announced_at: u64,
    /// When this node last received an announcement from it.
    pub last_seen: Time,
    /// The agent's public key.
    pub agent_public_key: PublicKey,
    /// The machine's public key, once the machine announced itself.
    pub machine_public_key: Option<PublicKey>,
    /// Reachability hints.
    pub nat: Option<NatHints>,
    /// The agent's ML-KEM-768 key for sealed direct messages, once it announced one.
    pub kem_public_key: Option<KemPublicKey>,
}

/// A live rendezvous record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RendezvousInfo {
    /// The agent.
    pub agent_id: AgentId,
    /// Its machine.
    pub machine_id: MachineId,
    /// Where it can be reached.
    pub addresses: Vec<SocketAddr>,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: u64,
}

/// Counters of the discovery layer. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DiscoveryStats {
    /// Records accepted into a cache (new or fresher), by kind.
    pub accepted: RecordCounts,
    /// Records refused, by reason.
    pub rejected: RejectCounts,
    /// Cache evictions to stay under a cap, by cache.
    pub evicted: CacheCounts,
    /// Queries this node started.
    pub queries_started: u64,
    /// Queries this node answered from its cache.
    pub queries_answered: u64,
    /// Queries this node forwarded.
    pub queries_forwarded: u64,
    /// Queries of ours that found their target.
    pub queries_succeeded: u64,
    /// Queries of ours that ended without an answer.
    pub queries_failed: u64,
    /// Catch-up syncs served to neighbours.
    pub syncs_served: u64,
}

/// Records accepted into the discovery caches, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RecordCounts {
    /// Identity announcements (agent-signed).
    pub identity: u64,
    /// Machine announcements.
    pub machine: u64,
    /// User announcements.
    pub user: u64,
    /// Rendezvous records.
    pub rendezvous: u64,
    /// KEM key announcements.
    pub kem: u64,
}

/// Discovery cache entries evicted to stay under a cap, by cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheCounts {
    /// The agent cache (`max_agents`).
    pub agents: u64,
    /// The machine cache (`max_machines`).
    pub machines: u64,
    /// The user cache (`max_users`).
    pub users: u64,
    /// The rendezvous record cache (`max_rendezvous`).
    pub rendezvous: u64,
    /// Query routes (`max_tracked_queries`).
    pub query_routes: u64,
}

/// How full the discovery tables are ([`crate::Node::discovery_cache_sizes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DiscoveryCacheSizes {
    /// Agents cached (`max_agents`).
    pub agents: usize,
    /// Machines cached (`max_machines`).
    pub machines: usize,
    /// Users cached (`max_users`).
    pub users: usize,
    /// Rendezvous records cached (`max_rendezvous`).
    pub rendezvous: usize,
    /// Query routes remembered (`max_tracked_queries`).
    pub query_routes: usize,
}

counts_by! {
    /// Announcements, records and pub/sub messages refused, by [`RejectReason`].
    pub struct RejectCounts(RejectReason) {
        /// No key attached and none cached.
        unknown_key: RejectReason::UnknownKey,
        /// The attached key does not hash to the signer id.
        key_mismatch: RejectReason::KeyMismatch,
        /// The signature does not verify.
        bad_signature: RejectReason::BadSignature,
        /// The signed body does not decode.
        malformed: RejectReason::Malformed,
        /// Signed by the wrong role for its kind.
        wrong_signer: RejectReason::WrongSigner,
        /// Stamped too far in the future.
        future_timestamp: RejectReason::FutureTimestamp,
        /// Older than the TTL or past its expiry.
        stale: RejectReason::Stale,
        /// A user id claimed without a valid certificate.
        bad_certificate: RejectReason::BadCertificate,
        /// More addresses than allowed.
        too_many_addresses: RejectReason::TooManyAddresses,
        /// Not newer than what is cached.
        not_newer: RejectReason::NotNewer,
        /// A blocked agent's announcement.
        blocked: RejectReason::Blocked,
        /// A pinned agent announced from an unpinned machine.
        machine_mismatch: RejectReason::MachineMismatch,
    }
}

#[derive(Debug, Clone)]
struct AgentEntry {
    ann: IdentityAnnouncement,
    signed: Signed,
    key: PublicKey,
    user_id: Option<UserId>,
    last_seen: Time,
    /// The newest KEM announcement: (key, announced_at, signed record).
    kem: Option<(KemPublicKey, u64, Signed)>,
}

#[derive(Debug, Clone)]
struct MachineEntry {
    ann: MachineAnnouncement,
    signed: Signed,
    key: PublicKey,
}

#[derive(Debug, Clone)]
struct UserEntry {
    ann: UserAnnouncement,
    signed: Signed,
}

#[derive(Debug, Clone)]
struct RendezvousEntry {
    rec: RendezvousRecord,
    signed: Signed,
}

/// A cache with a cap that evicts the entry with the smallest order key first (the oldest
/// announcement, the soonest expiry).
#[derive(Debug)]
struct Bounded<K: Ord + Copy, V> {
    map: BTreeMap<K, (u64, V)>,
    order: BTreeSet<(u64, K)>,
    cap: usize,
}

impl<K: Ord + Copy, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: BTreeSet::new(),
            cap,
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(_, v)| v)
    }

    /// Inserts with `order` as the eviction key; evicts the smallest if at the cap. Returns
    /// whether an entry was evicted.
    #[must_use]
    fn insert(&mut self, k: K, order: u64, v: V) -> bool {
        if let Some((old, _)) = self.map.remove(&k) {
            self.order.remove(&(old, k));
        }
        let mut evicted = false;
        if self.map.len() >= self.cap
            && let Some((_, victim)) = self.order.pop_first()
        {
            self.map.remove(&victim);
            evicted = true;
        }
        self.map.insert(k, (order, v));
        self.order.insert((order, k));
        evicted
    }

    /// `Err(NotNewer)` when the cached entry for `k` is stamped later than `stamp` (an equal
    /// stamp replaces it).
    fn check_newer(
        &self,
        k: &K,
        stamp: u64,
        stamp_of: impl Fn(&V) -> u64,
    ) -> Result<(), RejectReason> {
        match self.get(k) {
            Some(prev) if stamp_of(prev) > stamp => Err(RejectReason::NotNewer),
            _ => Ok(()),
        }
    }

    fn remove(&mut self, k: &K) {
        if let Some((o, _)) = self.map.remove(k) {
            self.order.remove(&(o, *k));
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|(_, v)| v)
    }
}

/// `Err(TooManyAddresses)` over [`crate::announce::MAX_ANNOUNCED_ADDRS`].
fn check_addrs(addresses: &[SocketAddr]) -> Result<(), RejectReason> {
    if addresses.len() > crate::announce::MAX_ANNOUNCED_ADDRS {
        return Err(RejectReason::TooManyAddresses);
    }
    Ok(())
}

/// A query in progress or remembered for reverse-path routing.
#[derive(Debug, Clone)]
pub(crate) struct QueryRoute {
    /// Where the query came from (`None`: it is ours).
    pub from: Option<MachineId>,
    /// Whether a hit already went back.
    pub answered: bool,
}

/// What a verified record did to the caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merged {
    /// A new agent entered the agent cache.
    NewAgent(AgentId),
    /// Something was updated or added.
    Updated,
}

/// The discovery state.
#[derive(Debug)]
pub(crate) struct Discovery {
    config: AnnounceConfig,
    agents: Bounded<AgentId, AgentEntry>,
    machines: Bounded<MachineId, MachineEntry>,
    users: Bounded<UserId, UserEntry>,
    rendezvous: Bounded<AgentId, RendezvousEntry>,
    /// Query routes by wire query id.
    routes: Fifo<u64, QueryRoute>,
    stats: DiscoveryStats,
}

impl Discovery {
    pub(crate) fn new(config: AnnounceConfig) -> Self {
        Self {
            agents: Bounded::new(config.max_agents),
            machines: Bounded::new(config.max_machines),
            users: Bounded::new(config.max_users),
            rendezvous: Bounded::new(config.max_rendezvous),
            routes: Fifo::new(config.max_tracked_queries),
            stats: DiscoveryStats::default(),
            config,
        }
    }

    pub(crate) fn stats(&self) -> &DiscoveryStats {
        &self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut DiscoveryStats {
        &mut self.stats
    }

    pub(crate) fn config(&self) -> &AnnounceConfig {
        &self.config
    }

    /// How many entries each table holds.
    pub(crate) fn sizes(&self) -> DiscoveryCacheSizes {
        DiscoveryCacheSizes {
            agents: self.agents.len(),
            machines: self.machines.len(),
            users: self.users.len(),
            rendezvous: self.rendezvous.len(),
            query_routes: self.routes.len(),
        }
    }

    /// Every table, for [`crate::Node::table_sizes`].
    pub(crate) fn table_sizes(&self, out: &mut Vec<TableSize>) {
        let (c, n) = (&self.config, self.sizes());
        out.extend([
            TableSize::new("agent cache", n.agents, c.max_agents),
            TableSize::new("machine cache", n.machines, c.max_machines),
            TableSize::new("user cache", n.users, c.max_users),
            TableSize::new("rendezvous cache", n.rendezvous, c.max_rendezvous),
            TableSize::new("query routes", n.query_routes, c.max_tracked_queries),
        ]);
    }

    fn fresh(&self, now: Time, announced_at: u64) -> Result<(), RejectReason> {
        let now_s = now.as_secs();
        if announced_at > now_s.saturating_add(self.config.max_clock_skew.as_secs()) {
            return Err(RejectReason::FutureTimestamp);
        }
        if announced_at.saturating_add(self.config.identity_ttl.as_secs()) < now_s {
            return Err(RejectReason::Stale);
        }
        Ok(())
    }

    /// Merges a verified identity announcement signed by `agent` with `key`.
    pub(crate) fn merge_identity(
        &mut self,
        now: Time,
        agent: AgentId,
        key: PublicKey,
        signed: Signed,
        ann: IdentityAnnouncement,
    ) -> Result<Merged, RejectReason> {
        self.fresh(now, ann.announced_at)?;
        check_addrs(&ann.addresses)?;
        let user_id = match &ann.user {
            Some(cert) => {
                cert.verify(&agent, now.as_secs())
                    .map_err(|_| RejectReason::BadCertificate)?;
                Some(cert.user_id())
            }
            None => None,
        };
        self.agents
            .check_newer(&agent, ann.announced_at, |e| e.ann.announced_at)?;
        let previous = self.agents.get(&agent);
        let new = previous.is_none();
        // A known user id is never cleared by an announcement without one.
        let user_id = user_id.or(previous.and_then(|p| p.user_id));
        // The KEM key is a separate record; a newer identity announcement keeps it.
        let kem = previous.and_then(|p| p.kem.clone());
        let order = ann.announced_at;
        let entry = AgentEntry {
            ann,
            signed,
            key,
            user_id,
            last_seen: now,
            kem,
        };
        self.stats.evicted.agents += u64::from(self.agents.insert(agent, order, entry));
        self.stats.accepted.identity += 1;
        Ok(if new {
            Merged::NewAgent(agent)
        } else {
            Merged::Updated
        })
    }

    pub(crate) fn merge_machine(
        &mut self,
        now: Time,
        machine: MachineId,
        key: PublicKey,
        signed: Signed,
        ann: MachineAnnouncement,
    ) -> Result<Merged, RejectReason> {
        self.fresh(now, ann.announced_at)?;
        check_addrs(&ann.addresses)?;
        self.machines
            .check_newer(&machine, ann.announced_at, |e| e.ann.announced_at)?;
        let order = ann.announced_at;
        let entry = MachineEntry { ann, signed, key };
        self.stats.evicted.machines += u64::from(self.machines.insert(machine, order, entry));
        self.stats.accepted.machine += 1;
        Ok(Merged::Updated)
    }

    pub(crate) fn merge_user(
        &mut self,
        now: Time,
        user: UserId,
        signed: Signed,
        ann: UserAnnouncement,
    ) -> Result<Merged, RejectReason> {
        self.fresh(now, ann.announced_at)?;
        if ann.agents.len() > 64 {
            return Err(RejectReason::Malformed);
        }
        self.users
            .check_newer(&user, ann.announced_at, |e| e.ann.announced_at)?;
        let order = ann.announced_at;
        let entry = UserEntry { ann, signed };
        self.stats.evicted.users += u64::from(self.users.insert(user, order, entry));
        self.stats.accepted.user += 1;
        Ok(Merged::Updated)
    }

    pub(crate) fn merge_rendezvous(
        &mut self,
        now: Time,
        agent: AgentId,
        signed: Signed,
        rec: RendezvousRecord,
    ) -> Result<Merged, RejectReason> {
        if rec.expires_at_ms <= now.as_millis() {
            return Err(RejectReason::Stale);
        }
        if rec.issued_at_ms > now.as_millis() + self.config.max_clock_skew.as_millis() as u64 {
            return Err(RejectReason::FutureTimestamp);
        }
        check_addrs(&rec.addresses)?;
        self.rendezvous
            .check_newer(&agent, rec.issued_at_ms, |e| e.rec.issued_at_ms)?;
        let order = rec.expires_at_ms;
        let entry = RendezvousEntry { rec, signed };
        self.stats.evicted.rendezvous += u64::from(self.rendezvous.insert(agent, order, entry));
        self.stats.accepted.rendezvous += 1;
        Ok(Merged::Updated)
    }

    fn live(&self, now: Time, e: &AgentEntry) -> bool {
        e.ann
            .announced_at
            .saturating_add(self.config.identity_ttl.as_secs())
            >= now.as_secs()
    }

    fn view(&self, agent: AgentId, e: &AgentEntry) -> DiscoveredAgent {
        DiscoveredAgent {
            agent_id: agent,
            machine_id: e.ann.machine_id,
            user_id: e.user_id,
            addresses: e.ann.addresses.clone(),
            announced_at: e.ann.announced_at,
            last_seen: e.last_seen,
            agent_public_key: e.key.clone(),
            machine_public_key: self
                .machines
                .get(&e.ann.machine_id)
                .filter(|m| m.ann.agent_id == agent)
                .map(|m| m.key.clone()),
            nat: e.ann.nat.clone(),
            kem_public_key: e.kem.as_ref().map(|(k, _, _)| k.clone()),
        }
    }

    /// The public key of a cached agent (to verify records sent without an attached key).
    pub(crate) fn agent_key(&self, agent: &AgentId) -> Option<PublicKey> {
        self.agents.get(agent).map(|e| e.key.clone())
    }

    /// Merges a verified KEM announcement of a cached agent.
    pub(crate) fn merge_kem(
        &mut self,
        now: Time,
        agent: AgentId,
        signed: Signed,
        ann: crate::announce::KemAnnouncement,
    ) -> Result<Merged, RejectReason> {
        self.fresh(now, ann.announced_at)?;
        let Some((order, entry)) = self.agents.map.get_mut(&agent) else {
            return Err(RejectReason::UnknownKey);
        };
        let _ = order;
        if entry
            .kem
            .as_ref()
            .is_some_and(|(_, at, _)| *at > ann.announced_at)
        {
            return Err(RejectReason::NotNewer);
        }
        entry.kem = Some((ann.kem_key, ann.announced_at, signed));
        self.stats.accepted.kem += 1;
        Ok(Merged::Updated)
    }

    /// Live agents (newest announcement within the TTL), sorted by agent id.
    pub(crate) fn agents(&self, now: Time) -> Vec<DiscoveredAgent> {
        self.agents
            .map
            .iter()
            .filter(|(_, (_, e))| self.live(now, e))
            .map(|(id, (_, e))| self.view(*id, e))
            .collect()
    }

    /// A live agent.
    pub(crate) fn agent(&self, now: Time, id: &AgentId) -> Option<DiscoveredAgent> {
        self.agents
            .get(id)
            .filter(|e| self.live(now, e))
            .map(|e| self.view(*id, e))
    }

    /// Live agents that disclosed `user`.
    pub(crate) fn agents_by_user(&self, now: Time, user: &UserId) -> Vec<DiscoveredAgent> {
        self.agents
            .map
            .iter()
            .filter(|(_, (_, e))| e.user_id.as_ref() == Some(user) && self.live(now, e))
            .map(|(id, (_, e))| self.view(*id, e))
            .collect()
    }

    /// A rendezvous record that has not expired.
    pub(crate) fn rendezvous(&self, now: Time, agent: &AgentId) -> Option<RendezvousInfo> {
        self.rendezvous
            .get(agent)
            .filter(|e| e.rec.expires_at_ms > now.as_millis())
            .map(|e| RendezvousInfo {
                agent_id: *agent,
                machine_id: e.rec.machine_id,
                addresses: e.rec.addresses.clone(),
                expires_at_ms: e.rec.expires_at_ms,
            })
    }

    /// Signed records that answer `target`, if we have live ones.
    pub(crate) fn records_for(&self, now: Time, target: &QueryTarget) -> Vec<Record> {
        match target {
            QueryTarget::Agent(a) => {
                let Some(e) = self.agents.get(a).filter(|e| self.live(now, e)) else {
                    return Vec::new();
                };
                let mut v = vec![Record {
                    kind: RecordKind::Announcement,
                    signed: e.signed.clone(),
                }];
                if let Some((_, _, k)) = &e.kem {
                    v.push(Record {
                        kind: RecordKind::KemKey,
                        signed: k.clone(),
                    });
                }
                if let Some(m) = self.machines.get(&e.ann.machine_id) {
                    v.push(Record {
                        kind: RecordKind::Announcement,
                        signed: m.signed.clone(),
                    });
                }
                v
            }
            QueryTarget::Rendezvous(a) => self
                .rendezvous
                .get(a)
                .filter(|e| e.rec.expires_at_ms > now.as_millis())
                .map(|e| {
                    vec![Record {
                        kind: RecordKind::Rendezvous,
                        signed: e.signed.clone(),
                    }]
                })
                .unwrap_or_default(),
        }
    }

    /// Every live record, newest first, at most `max` (for a catching-up neighbour).
    pub(crate) fn sync_records(&self, now: Time, max: usize) -> Vec<Record> {
        let mut out: Vec<(u64, Record)> = Vec::new();
        for e in self.agents.values().filter(|e| self.live(now, e)) {
            out.push((
                e.ann.announced_at,
                Record {
                    kind: RecordKind::Announcement,
                    signed: e.signed.clone(),
                },
            ));
            // Right after its identity announcement (the sort below is stable), so a receiver
            // knows the agent's key when the KEM record, sent without one, arrives.
            if let Some((_, _, k)) = &e.kem {
                out.push((
                    e.ann.announced_at,
                    Record {
                        kind: RecordKind::KemKey,
                        signed: k.clone(),
                    },
                ));
            }
        }
        let ttl = self.config.identity_ttl.as_secs();
        for m in self.machines.values() {
            if m.ann.announced_at + ttl >= now.as_secs() {
                out.push((
                    m.ann.announced_at,
                    Record {
                        kind: RecordKind::Announcement,
                        signed: m.signed.clone(),
                    },
                ));
            }
        }
        for u in self.users.values() {
            if u.ann.announced_at + ttl >= now.as_secs() {
                out.push((
                    u.ann.announced_at,
                    Record {
                        kind: RecordKind::Announcement,
                        signed: u.signed.clone(),
                    },
                ));
            }
        }
        for r in self.rendezvous.values() {
            if r.rec.expires_at_ms > now.as_millis() {
                out.push((
                    r.rec.issued_at_ms / 1000,
                    Record {
                        kind: RecordKind::Rendezvous,
                        signed: r.signed.clone(),
                    },
                ));
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0));
        out.truncate(max);
        out.into_iter().map(|(_, r)| r).collect()
    }

    /// Drops expired rendezvous records and agents past twice the TTL.
    pub(crate) fn reap(&mut self, now: Time) {
        let now_ms = now.as_millis();
        let expired: Vec<AgentId> = self
            .rendezvous
            .map
            .iter()
            .filter(|(_, (_, e))| e.rec.expires_at_ms <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.rendezvous.remove(&k);
        }
        let limit = now
            .as_secs()
            .saturating_sub(2 * self.config.identity_ttl.as_secs());
        while let Some(&(order, id)) = self.agents.order.first() {
            if order >= limit {
                break;
            }
            self.agents.remove(&id);
        }
    }

    // ----- query routing -----

    /// Remembers a query route. Returns false if the id is already known (a duplicate).
    pub(crate) fn track_query(&mut self, id: u64, route: QueryRoute) -> bool {
        if self.routes.contains_key(&id) {
            return false;
        }
        if self.routes.push(id, route).is_some() {
            self.stats.evicted.query_routes += 1;
        }
        true
    }

    pub(crate) fn route(&mut self, id: u64) -> Option<&mut QueryRoute> {
        self.routes.get_mut(&id)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::identity::{PUBLIC_KEY_LEN, SIGNATURE_LEN, Signature, SignerId};

    fn dummy(agent: AgentId) -> (PublicKey, Signed) {
        let key = PublicKey::from_bytes(&[0; PUBLIC_KEY_LEN]).unwrap();
        let signed = Signed {
            signer: SignerId::Agent(agent),
            signer_key: None,
            batch: None,
            body: Bytes::new(),
            signature: Signature::from_bytes(&[0; SIGNATURE_LEN]).unwrap(),
        };
        (key, signed)
    }

    fn ann(at: u64, port: u16) -> IdentityAnnouncement {
        IdentityAnnouncement {
            machine_id: MachineId::from_bytes([9; 32]),
            addresses: vec![SocketAddr::from(([10, 0, 0, 1], port))],
            announced_at: at,
            nat: None,
            user: None,
        }
    }

    #[test]
    fn a_hundred_thousand_announcements_keep_the_cache_at_its_cap() {
        let mut d = Discovery::new(AnnounceConfig::default());
        let now = Time::from_secs(1_000_000);
        for i in 0u32..100_000 {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            let agent = AgentId::from_bytes(b);
            let (key, signed) = dummy(agent);
            // Timestamps within the TTL, spread so eviction order is exercised.
            let at = now.as_secs() - u64::from(i % 800);
            d.merge_identity(now, agent, key, signed, ann(at, 1))
                .unwrap();
            assert!(d.sizes().agents <= 4096);
        }
        assert_eq!(d.sizes().agents, 4096);
        assert_eq!(d.stats().evicted.agents, 100_000 - 4096);
    }

    #[test]
    fn newer_replaces_addresses_and_older_is_refused() {
        let mut d = Discovery::new(AnnounceConfig::default());
        let now = Time::from_secs(1_000_000);
        let agent = AgentId::from_bytes([1; 32]);
        let (key, signed) = dummy(agent);
        d.merge_identity(
            now,
            agent,
            key.clone(),
            signed.clone(),
            ann(now.as_secs() - 10, 1),
        )
        .unwrap();
        d.merge_identity(
            now,
            agent,
            key.clone(),
            signed.clone(),
            ann(now.as_secs() - 5, 2),
        )
        .unwrap();
        let a = d.agent(now, &agent).unwrap();
        assert_eq!(
            a.addresses,
            vec![SocketAddr::from(([10, 0, 0, 1], 2))],
            "replaced, not merged"
        );
        assert_eq!(
            d.merge_identity(
                now,
                agent,
                key.clone(),
                signed.clone(),
                ann(now.as_secs() - 7, 3)
            ),
            Err(RejectReason::NotNewer)
        );
        // Stale (past the TTL) and future announcements are refused.
        let ttl = AnnounceConfig::default().identity_ttl.as_secs();
        let other = AgentId::from_bytes([2; 32]);
        assert_eq!(
            d.merge_identity(
                now,
                other,
                key.clone(),
                signed.clone(),
                ann(now.as_secs() - ttl - 1, 1)
            ),
            Err(RejectReason::Stale)
        );
        assert_eq!(
            d.merge_identity(
                now,
                other,
                key.clone(),
                signed.clone(),
                ann(now.as_secs() + 31, 1)
            ),
            Err(RejectReason::FutureTimestamp)
        );
        // Live listing follows the TTL.
        let later = now + std::time::Duration::from_secs(ttl);
        assert!(d.agent(later, &agent).is_none());
        assert!(d.agents(later).is_empty());
    }

    #[test]
    fn a_known_user_is_never_cleared() {
        use crate::identity::{AgentCertificate, UserKeypair};
        let mut d = Discovery::new(AnnounceConfig::default());
        let now = Time::from_secs(1_000_000);
        let agent = AgentId::from_bytes([1; 32]);
        let user = UserKeypair::from_seed([3; 32]);
        let cert = AgentCertificate::issue(&user, agent, now.as_secs(), None);
        let (key, signed) = dummy(agent);
        let mut with_user = ann(now.as_secs() - 2, 1);
        with_user.user = Some(cert);
        d.merge_identity(now, agent, key.clone(), signed.clone(), with_user)
            .unwrap();
        d.merge_identity(now, agent, key, signed, ann(now.as_secs() - 1, 1))
            .unwrap();
        assert_eq!(d.agent(now, &agent).unwrap().user_id, Some(user.user_id()));
        assert_eq!(d.agents_by_user(now, &user.user_id()).len(), 1);
    }

    #[test]
    fn query_routes_are_bounded_and_deduplicated() {
        let mut d = Discovery::new(AnnounceConfig {
            max_tracked_queries: 4,
            ..AnnounceConfig::default()
        });
        let route = || QueryRoute {
            from: None,
            answered: false,
        };
        assert!(d.track_query(1, route()));
        assert!(!d.track_query(1, route()), "duplicate refused");
        for id in 2..10 {
            assert!(d.track_query(id, route()));
        }
        assert_eq!(d.routes.len(), 4);
        assert!(d.route(1).is_none(), "oldest forgotten");
    }
}
