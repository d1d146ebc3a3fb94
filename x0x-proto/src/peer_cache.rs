//! The peer cache: addresses worth dialling to (re)join, scored by how well they worked.
//!
//! Fed by the node — a completed handshake on a connection it dialled is a success (with the
//! handshake's round trip), a failed dial a failure, and a verified announcement or presence
//! record with a global address a candidate not yet tried — and persisted by the driver, so a
//! restarted node rejoins through the peers that worked rather than only its bootstrap list
//! (x0x's bootstrap cache, §8 of its design).
//!
//! Quality of an entry: its success rate with one success and one failure assumed
//! (`(s + 1) / (s + f + 2)`, so an untried address scores ½), halved per `half_life` since its
//! last success, and lowered by up to a quarter for a slow round trip. Choosing is
//! epsilon-greedy: each pick is, with probability `explore_percent`, an untried address, else
//! the best remaining one. At the cap the lowest-scored entry goes (counted); a candidate
//! that would score no better than every entry held is refused (counted).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use serde::{Deserialize, Serialize};

use crate::identity::MachineId;

/// Peer cache settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PeerCacheConfig {
    /// Most addresses kept (0: no cache). Default 256.
    pub capacity: usize,
    /// Percent of picks that try an untried address (explore) instead of the best (exploit).
    /// Default 10 (x0x's ε = 0.1).
    pub explore_percent: u8,
    /// A success's weight halves over this. Default 7 days (x0x calls entries stale after 7).
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// Cached addresses dialled when the node starts, besides its bootstrap list. Default 4.
    pub dial_at_start: usize,
}

impl Default for PeerCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 256,
            explore_percent: 10,
            half_life: Duration::from_secs(7 * 24 * 3600),
            dial_at_start: 4,
        }
    }
}

/// One cached address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPeer {
    /// Where to dial.
    pub addr: SocketAddr,
    /// The machine found there, when known.
    pub machine_id: Option<MachineId>,
    /// Handshakes completed on dials to it.
    pub successes: u32,
    /// Dials to it that failed.
    pub failures: u32,
    /// Handshake round trip, milliseconds (moving average: 7/8 old, 1/8 new).
    pub rtt_ms: Option<u32>,
    /// Last success, unix seconds.
    pub last_success: Option<u64>,
    /// Last time it was added or heard of, unix seconds.
    pub last_seen: u64,
}

/// A cached address with its current quality.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPeer {
    /// The entry.
    pub peer: CachedPeer,
    /// Its quality now, 0 to 1.
    pub quality: f64,
}

/// What the cache counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeerCacheStats {
    /// Entries held now.
    pub entries: usize,
    /// Entries evicted at the cap.
    pub evictions: u64,
    /// Candidates refused at the cap (every entry held scored at least as well).
    pub refused: u64,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct PeerCache {
    config: PeerCacheConfig,
    peers: BTreeMap<SocketAddr, CachedPeer>,
    stats: PeerCacheStats,
}

impl PeerCache {
    pub(crate) fn new(config: PeerCacheConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            stats: PeerCacheStats::default(),
        }
    }

    /// Replaces the entries with saved ones (the best `capacity` of them).
    pub(crate) fn restore(&mut self, saved: Vec<CachedPeer>, now_s: u64) {
        let mut scored: Vec<(f64, CachedPeer)> = saved
            .into_iter()
            .map(|p| (self.quality(&p, now_s), p))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.addr.cmp(&b.1.addr)));
        scored.truncate(self.config.capacity);
        self.peers = scored.into_iter().map(|(_, p)| (p.addr, p)).collect();
    }

    /// The entries, best first.
    pub(crate) fn scored(&self, now_s: u64) -> Vec<ScoredPeer> {
        let mut v: Vec<ScoredPeer> = self
            .peers
            .values()
            .map(|p| ScoredPeer {
                quality: self.quality(p, now_s),
                peer: p.clone(),
            })
            .collect();
        v.sort_by(|a, b| {
            b.quality
                .total_cmp(&a.quality)
                .then(a.peer.addr.cmp(&b.peer.addr))
        });
        v
    }

    pub(crate) fn stats(&self) -> PeerCacheStats {
        PeerCacheStats {
            entries: self.peers.len(),
            ..self.stats
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// The quality of `p` at `now_s` (see the module doc).
    pub(crate) fn quality(&self, p: &CachedPeer, now_s: u64) -> f64 {
        let rate = f64::from(p.successes + 1) / f64::from(p.successes + p.failures + 2);
        let decay = p.last_success.map_or(1.0, |t| {
            let age = now_s.saturating_sub(t) as f64;
            0.5f64.powf(age / self.config.half_life.as_secs_f64().max(1.0))
        });
        let slow = p.rtt_ms.map_or(0.0, |r| f64::from(r.min(1000)) / 4000.0);
        rate * decay * (1.0 - slow)
    }

    /// A handshake completed on a dial to `addr`, which took `rtt_ms`.
    pub(crate) fn success(
        &mut self,
        addr: SocketAddr,
        machine: MachineId,
        rtt_ms: u32,
        now_s: u64,
    ) {
        if self.config.capacity == 0 {
            return;
        }
        if !self.peers.contains_key(&addr) {
            self.make_room(now_s);
        }
        let p = self.peers.entry(addr).or_insert_with(|| CachedPeer {
            addr,
            machine_id: None,
            successes: 0,
            failures: 0,
            rtt_ms: None,
            last_success: None,
            last_seen: now_s,
        });
        p.machine_id = Some(machine);
        p.successes = p.successes.saturating_add(1);
        p.rtt_ms = Some(
            p.rtt_ms
                .map_or(rtt_ms, |old| (old.saturating_mul(7) + rtt_ms) / 8),
        );
        p.last_success = Some(now_s);
        p.last_seen = now_s;
    }

    /// A dial to `addr` failed (counted only for an address already cached).
    pub(crate) fn failure(&mut self, addr: SocketAddr, now_s: u64) {
        if let Some(p) = self.peers.get_mut(&addr) {
            p.failures = p.failures.saturating_add(1);
            p.last_seen = now_s;
        }
    }

    /// An address heard of (an announcement, a presence record), not yet tried by us.
    pub(crate) fn candidate(&mut self, addr: SocketAddr, machine: MachineId, now_s: u64) {
        if let Some(p) = self.peers.get_mut(&addr) {
            p.last_seen = now_s;
            return;
        }
        if self.config.capacity == 0 {
            return;
        }
        if self.peers.len() >= self.config.capacity {
            let untried = 0.5;
            let worst = self.worst(now_s).map(|(_, q)| q);
            if worst.is_none_or(|q| q >= untried) {
                self.stats.refused += 1;
                return;
            }
            self.make_room(now_s);
        }
        self.peers.insert(
            addr,
            CachedPeer {
                addr,
                machine_id: Some(machine),
                successes: 0,
                failures: 0,
                rtt_ms: None,
                last_success: None,
                last_seen: now_s,
            },
        );
    }

    /// Up to `n` addresses to dial, epsilon-greedy. Draws nothing from `rng` when empty.
    pub(crate) fn choose(&self, rng: &mut ChaCha8Rng, n: usize, now_s: u64) -> Vec<SocketAddr> {
        if self.peers.is_empty() || n == 0 {
            return Vec::new();
        }
        let mut best: Vec<SocketAddr> = self
            .scored(now_s)
            .into_iter()
            .map(|s| s.peer.addr)
            .collect();
        let mut untried: Vec<SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.successes == 0 && p.failures == 0)
            .map(|p| p.addr)
            .collect();
        let mut out = Vec::new();
        while out.len() < n && !best.is_empty() {
            let explore = (rng.next_u64() % 100) < u64::from(self.config.explore_percent);
            let pick = if explore && !untried.is_empty() {
                untried.swap_remove((rng.next_u64() % untried.len() as u64) as usize)
            } else {
                best[0]
            };
            best.retain(|a| *a != pick);
            untried.retain(|a| *a != pick);
            out.push(pick);
        }
        out
    }

    fn worst(&self, now_s: u64) -> Option<(SocketAddr, f64)> {
        self.peers
            .values()
            .map(|p| (p.addr, self.quality(p, now_s), p.last_seen))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)))
            .map(|(a, q, _)| (a, q))
    }

    /// At the cap, evicts the lowest-scored entry (the least recently seen among equals).
    fn make_room(&mut self, now_s: u64) {
        if self.peers.len() < self.config.capacity {
            return;
        }
        if let Some((victim, _)) = self.worst(now_s) {
            self.peers.remove(&victim);
            self.stats.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], port))
    }

    fn m(b: u8) -> MachineId {
        MachineId::from_bytes([b; 32])
    }

    #[test]
    fn successes_rank_first_failures_last_and_age_decays() {
        let mut c = PeerCache::new(PeerCacheConfig::default());
        c.success(a(1), m(1), 20, 1000);
        c.success(a(1), m(1), 20, 1000);
        c.candidate(a(2), m(2), 1000);
        c.success(a(3), m(3), 20, 1000);
        c.failure(a(3), 1000);
        c.failure(a(3), 1000);
        let order: Vec<SocketAddr> = c.scored(1000).iter().map(|s| s.peer.addr).collect();
        assert_eq!(order, vec![a(1), a(2), a(3)]);
        let week = 7 * 24 * 3600;
        let fresh = c.scored(1000)[0].quality;
        let old = c.quality(&c.peers[&a(1)], 1000 + week);
        assert!((old - fresh / 2.0).abs() < 1e-9, "{old} vs {fresh}");
        c.failure(a(9), 1000);
        assert_eq!(c.len(), 3, "a failure of an unknown address adds nothing");
    }

    #[test]
    fn capped_with_the_worst_evicted_and_weak_candidates_refused() {
        let mut c = PeerCache::new(PeerCacheConfig {
            capacity: 2,
            ..PeerCacheConfig::default()
        });
        c.success(a(1), m(1), 10, 5);
        c.success(a(2), m(2), 10, 5);
        c.candidate(a(3), m(3), 5);
        assert_eq!(
            c.stats().refused,
            1,
            "an untried address never pushes out a good one"
        );
        c.failure(a(2), 5);
        c.failure(a(2), 5);
        c.failure(a(2), 5);
        c.candidate(a(3), m(3), 5);
        assert!(c.peers.contains_key(&a(3)) && !c.peers.contains_key(&a(2)));
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn choice_is_mostly_the_best_sometimes_untried_and_draws_nothing_when_empty() {
        let mut c = PeerCache::new(PeerCacheConfig::default());
        let mut rng = ChaCha8Rng::from_seed([7; 32]);
        assert!(c.choose(&mut rng, 4, 0).is_empty());
        assert_eq!(
            ChaCha8Rng::from_seed([7; 32]).next_u64(),
            rng.next_u64(),
            "an empty cache leaves the stream alone"
        );
        c.success(a(1), m(1), 10, 0);
        for p in 2..40 {
            c.candidate(a(p), m(p as u8), 0);
        }
        let mut firsts = BTreeMap::new();
        for _ in 0..1000 {
            *firsts.entry(c.choose(&mut rng, 1, 0)[0]).or_insert(0) += 1;
        }
        let best = firsts[&a(1)];
        assert!(
            (850..=950).contains(&best),
            "ε = 0.1: the best {best} times of 1000"
        );
        let picks = c.choose(&mut rng, 5, 0);
        assert_eq!(picks.len(), 5);
        let mut dedup = picks.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 5, "no address twice");
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut c = PeerCache::new(PeerCacheConfig {
            capacity: 0,
            ..PeerCacheConfig::default()
        });
        c.success(a(1), m(1), 10, 0);
        c.candidate(a(2), m(2), 0);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn restore_keeps_the_best_capacity_entries() {
        let mut c = PeerCache::new(PeerCacheConfig {
            capacity: 1,
            ..PeerCacheConfig::default()
        });
        let mut good = CachedPeer {
            addr: a(1),
            machine_id: None,
            successes: 5,
            failures: 0,
            rtt_ms: Some(10),
            last_success: Some(0),
            last_seen: 0,
        };
        let bad = CachedPeer {
            addr: a(2),
            failures: 5,
            successes: 0,
            ..good.clone()
        };
        c.restore(vec![bad, good.clone()], 0);
        good.last_seen = 0;
        assert_eq!(c.scored(0)[0].peer, good);
        assert_eq!(c.len(), 1);
    }
}
