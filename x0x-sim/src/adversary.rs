//! Adversaries: nodes that run the real protocol but misbehave, and what they did to the
//! honest ones.
//!
//! A scenario's `[adversary]` section turns some nodes hostile. Every hostile node is a real
//! [`x0x_proto::Node`] — it connects, says `Hello`, answers pings and shuffles, so membership
//! keeps it — and the simulator adds the misbehaviour around it:
//!
//! | role | what it does |
//! |---|---|
//! | black hole | never sends a `Gossip` frame: neither eager pushes nor answers to `GRAFT`. It still sends `IHAVE`s, so it lies about holding messages it will not give. |
//! | forger | relays honestly, and injects forged messages (bad signatures, a key that is not the signer's, no key, a valid signature on the wrong topic) and replays of genuine frames it relayed. |
//! | Sybil | a fresh identity, one of `sybils` extra nodes that all join through the `target` node in a burst; a black hole. |
//! | eclipser | repeatedly sends `JOIN` to the `target` (reconnecting when dropped) to fill its active view; a black hole. |
//!
//! Honest-node figures only count honest nodes: the report's `delivery_ratio` is over honest
//! subscribers, and [`AdversaryReport`] adds what the adversaries did, every refusal the
//! honest nodes counted by reason, and the largest size each bounded table reached on any
//! honest node next to its cap.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[adversary]` section of a scenario. Every key has a default (no adversary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdversarySpec {
    /// Fraction of the nodes that are black holes (never the fixed publisher nor the target).
    /// Default 0.
    #[serde(deserialize_with = "crate::scenario::num")]
    pub blackhole_fraction: f64,
    /// Number of forging nodes. Default 0.
    pub forgers: usize,
    /// Forged messages each forger injects per second (spread over its connections).
    /// Default 0.
    #[serde(deserialize_with = "crate::scenario::num")]
    pub forge_per_sec: f64,
    /// Replayed genuine frames each forger injects per second. Default 0.
    #[serde(deserialize_with = "crate::scenario::num")]
    pub replay_per_sec: f64,
    /// Replays use frames captured at least this long ago (and at most 10 s more): old
    /// enough that a flood pushed their ids out of a count-bounded dedup window, young enough
    /// to pass the age check. The forgers then keep one capture per tick, up to 4 096.
    /// Default 0: replay any of the last 64 frames relayed.
    pub replay_age_ms: u64,
    /// Extra Sybil identities (added to `nodes`) that join through `target`. Default 0.
    pub sybils: usize,
    /// When the Sybils start joining, after the warm-up. Default 0.
    pub sybil_start_ms: u64,
    /// The Sybils' joins are spread over this window. Default 10 000 ms.
    pub sybil_window_ms: u64,
    /// Number of eclipse attackers. Default 0.
    pub eclipsers: usize,
    /// Interval between an eclipser's JOINs to the target. Default 500 ms.
    pub eclipse_interval_ms: u64,
    /// The node the Sybils join through and the eclipsers attack. Default 1.
    pub target: usize,
    /// Interval of the adversary clock: injections and measurements. Default 100 ms.
    pub tick_ms: u64,
}

impl Default for AdversarySpec {
    fn default() -> Self {
        Self {
            blackhole_fraction: 0.0,
            forgers: 0,
            forge_per_sec: 0.0,
            replay_per_sec: 0.0,
            replay_age_ms: 0,
            sybils: 0,
            sybil_start_ms: 0,
            sybil_window_ms: 10_000,
            eclipsers: 0,
            eclipse_interval_ms: 500,
            target: 1,
            tick_ms: 100,
        }
    }
}

impl AdversarySpec {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.blackhole_fraction) {
            return Err("adversary.blackhole_fraction must be in [0, 1]".into());
        }
        if self.forge_per_sec < 0.0 || self.replay_per_sec < 0.0 {
            return Err("adversary rates must be >= 0".into());
        }
        if self.tick_ms == 0 || self.eclipse_interval_ms == 0 {
            return Err("adversary intervals must be > 0".into());
        }
        Ok(())
    }
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the protocol as written.
    Honest,
    /// Withholds every gossip payload.
    BlackHole,
    /// Injects forged and replayed messages.
    Forger,
    /// A Sybil identity (withholds gossip).
    Sybil,
    /// Repeatedly joins the target (withholds gossip).
    Eclipser,
}

impl Role {
    /// Whether this role swallows the `Gossip` frames its node sends.
    pub fn withholds_gossip(self) -> bool {
        matches!(self, Self::BlackHole | Self::Sybil | Self::Eclipser)
    }

    /// The counter name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Honest => "honest",
            Self::BlackHole => "black_hole",
            Self::Forger => "forger",
            Self::Sybil => "sybil",
            Self::Eclipser => "eclipser",
        }
    }
}

/// The largest size a bounded table reached on any honest node, next to its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bound {
    /// Largest size seen (sampled every adversary tick and at the end).
    pub max: u64,
    /// The configured cap.
    pub cap: u64,
}

/// The target node's active view over the run (Sybil and eclipse scenarios).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetView {
    /// Samples taken.
    pub samples: u64,
    /// Smallest number of honest neighbours in its active view over the samples after the
    /// attack started.
    pub min_honest_neighbors: u64,
    /// Mean fraction of its active view held by adversaries over those samples.
    pub mean_adversary_share: f64,
    /// Largest fraction of its active view held by adversaries.
    pub max_adversary_share: f64,
    /// Samples in which every neighbour was an adversary (an eclipse).
    pub eclipsed_samples: u64,
    /// Samples in which fewer than two honest neighbours were left (empty views included).
    #[serde(default)]
    pub samples_under_two_honest: u64,
    /// Its open connections at the end, and at most over the run.
    pub connections_end: u64,
    /// Most open connections over the run.
    pub connections_max: u64,
}

/// What the adversaries did and what it cost the honest nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AdversaryReport {
    /// Nodes per role.
    pub roles: BTreeMap<String, u64>,
    /// `Gossip` frames the black holes (and Sybils, eclipsers) withheld.
    pub gossip_withheld: u64,
    /// Forged messages injected, by forgery.
    pub forged_injected: BTreeMap<String, u64>,
    /// Genuine frames replayed.
    pub replays_injected: u64,
    /// `JOIN`s the eclipsers sent to the target.
    pub eclipse_joins: u64,
    /// Deliveries to honest applications of a message the workload never published (a
    /// forgery or a replay that got through). Must be 0.
    pub forged_deliveries: u64,
    /// Deliveries to honest applications of a workload message they had already delivered
    /// (a replay that got through dedup).
    pub replayed_redeliveries: u64,
    /// Every refusal the honest nodes counted, by layer and reason
    /// (`message/bad_signature`, `frame/malformed`, `close/too_many_connections`, …).
    pub rejections: BTreeMap<String, u64>,
    /// Largest size of each bounded table on any honest node, with its cap.
    pub memory: BTreeMap<String, Bound>,
    /// Honest nodes whose `check_invariants` failed at a sample. Must be 0.
    pub invariant_violations: u64,
    /// Over all honest nodes at the end: mean fraction of active-view slots held by
    /// adversaries.
    pub honest_view_adversary_share: f64,
    /// Honest nodes whose whole (non-empty) active view was adversarial at the end.
    pub honest_nodes_eclipsed: u64,
    /// Honest nodes with an empty active view at the end.
    pub honest_nodes_isolated: u64,
    /// The target, when there is a Sybil or eclipse attack.
    pub target: Option<TargetView>,
}

/// The running state of the adversaries in a simulation.
#[derive(Debug, Default)]
pub(crate) struct Adversary {
    pub(crate) roles: Vec<Role>,
    /// Genuine `Gossip` frames forgers relayed, with when, for replays (bounded ring).
    pub(crate) captured: std::collections::VecDeque<(u64, bytes::Bytes)>,
    /// `replay_age_ms` in µs (0: replay the most recent frames).
    pub(crate) replay_age_us: u64,
    /// The adversary tick of the last capture (with `replay_age_ms`, one per tick).
    pub(crate) last_capture_tick: Option<u64>,
    pub(crate) report: AdversaryReport,
    /// Sum of the adversary shares over the target samples (for the mean).
    pub(crate) share_sum: f64,
    /// Fractional injection budget carried between ticks, per kind (forge, replay).
    pub(crate) carry: (f64, f64),
    /// Counter that rotates the forgery kinds.
    pub(crate) forge_counter: u64,
    /// Ticks until the next eclipse round.
    pub(crate) next_eclipse: u64,
    /// Set while the adversary itself injects frames (they are not captured for replays).
    pub(crate) injecting: bool,
    /// Adversary ticks so far.
    pub(crate) ticks: u64,
    /// The real subscriber sets (the measured ones leave the adversaries out).
    pub(crate) subscribed: Option<Vec<crate::stats::Bitset>>,
    /// Forgers' agent keys, derived once.
    pub(crate) keys: BTreeMap<u32, x0x_proto::identity::AgentKeypair>,
}

/// How many captured frames the forgers keep for replays.
pub(crate) const CAPTURE_CAP: usize = 64;

/// How many they keep when replays must be old (`replay_age_ms`).
pub(crate) const AGED_CAPTURE_CAP: usize = 4096;

/// How much older than `replay_age_ms` a replayed frame may be.
pub(crate) const REPLAY_AGE_SPAN_US: u64 = 10_000_000;

impl Adversary {
    /// The role of node `i` (honest when there is no adversary).
    pub(crate) fn role(&self, i: u32) -> Role {
        self.roles.get(i as usize).copied().unwrap_or(Role::Honest)
    }

    /// Whether node `i` is honest.
    pub(crate) fn honest(&self, i: u32) -> bool {
        self.role(i) == Role::Honest
    }

    pub(crate) fn bump(map: &mut BTreeMap<String, u64>, k: &str, by: u64) {
        if by > 0 {
            *map.entry(k.to_string()).or_default() += by;
        }
    }

    pub(crate) fn bound(&mut self, name: &str, size: usize, cap: usize) {
        let b = self.report.memory.entry(name.to_string()).or_default();
        b.max = b.max.max(size as u64);
        b.cap = cap as u64;
    }
}
