//! Scenarios: what a run simulates, read from TOML files under `x0x-sim/scenarios/`.
//!
//! Every key has a default, so a scenario file only names what differs. Times are in
//! milliseconds; script times (`at_ms`, `start_ms`) count from the end of the warm-up.
//! See `scenarios/broadcast-single.toml` for a commented example of the top-level keys,
//! `[network]` and `[workload]`; every section is documented on its type below.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// A number written as an integer or a float in TOML.
pub(crate) fn num<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        F(f64),
    }
    Ok(match N::deserialize(d)? {
        N::I(i) => i as f64,
        N::F(f) => f,
    })
}

/// Which keys the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CryptoMode {
    /// Real ML-DSA-65 for runs of at most [`AUTO_REAL_CRYPTO_MAX_NODES`] nodes, stand-ins above.
    #[default]
    Auto,
    /// Real ML-DSA-65 keys and signatures.
    Real,
    /// Cheap simulation stand-in keys (`x0x_proto::identity::stand_in`).
    StandIn,
}

/// Largest node count for which [`CryptoMode::Auto`] uses real crypto.
pub const AUTO_REAL_CRYPTO_MAX_NODES: usize = 1000;

impl CryptoMode {
    /// Whether a run of `nodes` nodes uses real crypto.
    pub fn is_real(self, nodes: usize) -> bool {
        match self {
            Self::Auto => nodes <= AUTO_REAL_CRYPTO_MAX_NODES,
            Self::Real => true,
            Self::StandIn => false,
        }
    }
}

/// What packet loss does to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossModel {
    /// Frames ride QUIC streams, which are reliable: a lost packet is sent again after a
    /// probe timeout (here 1.5 round trips of the link, again with the same probability), and
    /// the frames behind it on the stream wait (head-of-line blocking, with `fifo`). Nothing
    /// is lost; loss becomes delay. The default, because it is what the drivers do.
    #[default]
    Retransmit,
    /// The frame is dropped, as on an unreliable datagram link. Harsher than QUIC can be:
    /// even handshake-completing and membership frames vanish.
    Drop,
}

/// The distribution of a link's base (one-way) latency, fixed once per ordered node pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Latency {
    /// Every link has the same latency.
    Fixed {
        /// Milliseconds.
        #[serde(deserialize_with = "num")]
        ms: f64,
    },
    /// Uniform in `[min_ms, max_ms]`.
    Uniform {
        /// Lower bound, milliseconds.
        #[serde(deserialize_with = "num")]
        min_ms: f64,
        /// Upper bound, milliseconds.
        #[serde(deserialize_with = "num")]
        max_ms: f64,
    },
    /// Log-normal with the given median and shape, clamped to `[min_ms, max_ms]`.
    LogNormal {
        /// Median, milliseconds.
        #[serde(deserialize_with = "num")]
        median_ms: f64,
        /// Standard deviation of the underlying normal.
        #[serde(deserialize_with = "num")]
        sigma: f64,
        /// Lower clamp, milliseconds.
        #[serde(deserialize_with = "num")]
        min_ms: f64,
        /// Upper clamp, milliseconds.
        #[serde(deserialize_with = "num")]
        max_ms: f64,
    },
}

impl Default for Latency {
    /// Uniform 10–50 ms, the setting of iroh-gossip's simulator.
    fn default() -> Self {
        Self::Uniform {
            min_ms: 10.0,
            max_ms: 50.0,
        }
    }
}

/// The network model applied to every link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Base latency of each ordered pair. Default uniform 10–50 ms.
    pub latency: Latency,
    /// Extra per-frame delay, uniform in `[0, jitter_ms]`. Default 0.
    #[serde(deserialize_with = "num")]
    pub jitter_ms: f64,
    /// Probability that a frame's packet is lost. Default 0. What a loss does depends on
    /// [`NetworkConfig::loss_model`].
    #[serde(deserialize_with = "num")]
    pub loss: f64,
    /// What a lost packet does to a frame. Default `retransmit`.
    pub loss_model: LossModel,
    /// Probability that a frame is delivered twice. Default 0.
    #[serde(deserialize_with = "num")]
    pub duplicate: f64,
    /// Probability that a frame gets an extra delay of up to `reorder_max_ms`, overtaking
    /// later frames. Default 0.
    #[serde(deserialize_with = "num")]
    pub reorder: f64,
    /// Largest extra delay of a reordered frame. Default 100 ms.
    #[serde(deserialize_with = "num")]
    pub reorder_max_ms: f64,
    /// Keep frames of one connection in order (a QUIC stream), even with jitter. Default true.
    pub fifo: bool,
    /// Per-link bandwidth in bytes per second; 0 = unlimited. Default 0.
    pub bandwidth_bytes_per_sec: u64,
    /// Bytes a link may hold queued before frames are dropped (with a bandwidth). Default 1 MiB.
    pub queue_bytes: u64,
    /// A dial to a dead, unknown or cut-off address fails after this long. Default 1000 ms.
    pub dial_timeout_ms: u64,
    /// If set, the peers of a crashed node get `handle_disconnected` after this long (a QUIC
    /// idle timeout). Default unset: a crash is silent and the protocol must detect it.
    pub crash_idle_timeout_ms: Option<u64>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            latency: Latency::default(),
            jitter_ms: 0.0,
            loss: 0.0,
            loss_model: LossModel::Retransmit,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_max_ms: 100.0,
            fifo: true,
            bandwidth_bytes_per_sec: 0,
            queue_bytes: 1 << 20,
            dial_timeout_ms: 1000,
            crash_idle_timeout_ms: None,
        }
    }
}

/// Who publishes in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Publishers {
    /// One fixed node (`publisher`).
    #[default]
    Fixed,
    /// A uniformly random live subscriber each round.
    Random,
    /// Every live subscriber publishes once per round.
    All,
}

/// The broadcast workload measured after the warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Who publishes. Default fixed.
    pub publishers: Publishers,
    /// The node index of the fixed publisher. Default 0.
    pub publisher: usize,
    /// Number of rounds. Default 30.
    pub rounds: usize,
    /// When the first round starts, after the warm-up. Default 0.
    pub start_ms: u64,
    /// A round ends when every eligible node delivered, or after this long. Default 5000 ms.
    pub round_timeout_ms: u64,
    /// Pause between the end of a round and the next. Default 1000 ms.
    pub round_gap_ms: u64,
    /// Number of topics. Default 1.
    pub topics: usize,
    /// Subscribers per topic, drawn at random; unset = every node subscribes to every topic.
    pub subscribers_per_topic: Option<usize>,
    /// Payload size in bytes. Default 1024.
    pub payload_bytes: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            publishers: Publishers::Fixed,
            publisher: 0,
            rounds: 30,
            start_ms: 0,
            round_timeout_ms: 5000,
            round_gap_ms: 1000,
            topics: 1,
            subscribers_per_topic: None,
            payload_bytes: 1024,
        }
    }
}

/// Which path the direct-message workload asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectPathChoice {
    /// Connected when possible (dialling), sealed as the fallback.
    #[default]
    Auto,
    /// Only the connected path.
    Connected,
    /// Only the sealed path (through the inbox topic).
    Sealed,
}

/// Direct messages between random pairs of live nodes, sent after the warm-up. Each sender
/// imports the recipient's agent card (its signed identity and KEM announcements) just before
/// sending, as an application that got the card out of band: the run measures direct
/// messaging, not discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectWorkload {
    /// Number of messages. Default 0 (no direct workload).
    pub messages: usize,
    /// Messages per second over the whole network. Default 200.
    #[serde(deserialize_with = "num")]
    pub per_sec: f64,
    /// When the first message goes, after the warm-up. Default 0.
    pub start_ms: u64,
    /// Payload size in bytes (at least 8). Default 256.
    pub payload_bytes: usize,
    /// Path preference. Default auto.
    pub path: DirectPathChoice,
    /// Envelope lifetime, milliseconds; unset = the protocol default (120 s).
    pub lifetime_ms: Option<u64>,
}

impl Default for DirectWorkload {
    fn default() -> Self {
        Self {
            messages: 0,
            per_sec: 200.0,
            start_ms: 0,
            payload_bytes: 256,
            path: DirectPathChoice::Auto,
            lifetime_ms: None,
        }
    }
}

/// Crash a fraction of the nodes at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashSpec {
    /// When, after the warm-up. Default 0.
    #[serde(default)]
    pub at_ms: u64,
    /// Fraction of the nodes (never the fixed publisher).
    #[serde(deserialize_with = "num")]
    pub fraction: f64,
    /// If set, every crashed node restarts (same identity, fresh state) this long after.
    #[serde(default)]
    pub restart_after_ms: Option<u64>,
}

/// Split the nodes into two groups that cannot reach each other for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// When the cut starts, after the warm-up. Default 0.
    #[serde(default)]
    pub at_ms: u64,
    /// How long it lasts.
    pub duration_ms: u64,
    /// Fraction of the nodes in the first group (drawn at random). Default 0.5.
    #[serde(default = "half", deserialize_with = "num")]
    pub fraction: f64,
}

fn half() -> f64 {
    0.5
}

/// Nodes leave and (re)join as Poisson processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSpec {
    /// When churn starts, after the warm-up. Default 0.
    #[serde(default)]
    pub start_ms: u64,
    /// How long it lasts.
    pub duration_ms: u64,
    /// Leaves per second over the whole network.
    #[serde(deserialize_with = "num")]
    pub leave_per_sec: f64,
    /// Joins per second over the whole network (a join restarts a departed node).
    #[serde(deserialize_with = "num")]
    pub join_per_sec: f64,
    /// Fraction of leaves that are graceful (`Node::shutdown`), the rest are crashes.
    /// Default 0.
    #[serde(default, deserialize_with = "num")]
    pub graceful_fraction: f64,
}

/// Optional overrides of the nodes' [`x0x_proto::Config`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeOverrides {
    /// `Config::max_connections`. Default: the protocol's.
    pub max_connections: Option<usize>,
    /// `Config::keepalive_interval`, milliseconds. Default: the protocol's.
    pub keepalive_ms: Option<u64>,
    /// `Config::hello_timeout`, milliseconds. Default: the protocol's.
    pub hello_timeout_ms: Option<u64>,
    /// `[node.broadcast]`: the broadcast layer's settings; keys left out keep the protocol's
    /// defaults (durations as `"150ms"`, `"2s"`). Default: the protocol's.
    pub broadcast: Option<x0x_proto::broadcast::BroadcastConfig>,
    /// `[node.membership]`: HyParView and SWIM settings, as `[node.broadcast]`.
    pub membership: Option<x0x_proto::membership::MembershipConfig>,
    /// `[node.announce]`: announcement and discovery settings, as `[node.broadcast]` (a
    /// `[discovery]` section's own settings are applied after these).
    pub announce: Option<x0x_proto::announce::AnnounceConfig>,
    /// `[node.direct]`: direct-message settings, as `[node.broadcast]`.
    pub direct: Option<x0x_proto::direct::DirectConfig>,
    /// `[node.presence]`: presence settings, as `[node.broadcast]`. Presence is off in a
    /// scenario that has neither this nor a `[presence]` section.
    pub presence: Option<x0x_proto::presence::PresenceConfig>,
}

impl NodeOverrides {
    /// Applies the overrides to `c`.
    pub fn apply(&self, c: &mut x0x_proto::Config) {
        if let Some(x) = self.max_connections {
            c.max_connections = x;
        }
        if let Some(x) = self.keepalive_ms {
            c.keepalive_interval = std::time::Duration::from_millis(x);
        }
        if let Some(x) = self.hello_timeout_ms {
            c.hello_timeout = std::time::Duration::from_millis(x);
        }
        if let Some(b) = &self.broadcast {
            c.broadcast = b.clone();
        }
        if let Some(m) = &self.membership {
            c.membership = m.clone();
        }
        if let Some(a) = &self.announce {
            c.announce = a.clone();
        }
        if let Some(d) = &self.direct {
            c.direct = d.clone();
        }
        if let Some(p) = &self.presence {
            c.presence = p.clone();
        }
    }
}

/// A complete scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name, reported as `scenario`. Default: the file name.
    pub name: String,
    /// One line on what it measures. Default empty.
    pub description: String,
    /// Node count (`--nodes` overrides). Default 100.
    pub nodes: usize,
    /// Which keys the nodes use. Default auto.
    pub crypto: CryptoMode,
    /// Nodes start staggered over this window. Default 5000 ms.
    pub start_window_ms: u64,
    /// Time from the first start to the end of the warm-up. Default 30000 ms.
    pub warmup_ms: u64,
    /// Node indices every node bootstraps to; empty = one random earlier node. Default empty.
    pub bootstrap_nodes: Vec<usize>,
    /// The overlay (active views) is measured this long after the warm-up. Default: when the
    /// first round starts (`workload.start_ms`).
    pub overlay_at_ms: Option<u64>,
    /// Simulated time after the last round before the run ends. Default 2000 ms.
    pub drain_ms: u64,
    /// The discovery workload ([`crate::workload::discovery`]); nodes announce themselves
    /// only in a scenario that has one. Default none.
    pub discovery: Option<crate::workload::discovery::DiscoverySpec>,
    /// The network model.
    pub network: NetworkConfig,
    /// The broadcast workload.
    pub workload: Workload,
    /// The direct-message workload. Default: none (no messages).
    pub direct: DirectWorkload,
    /// Node configuration overrides. Default none.
    pub node: NodeOverrides,
    /// A mass crash. Default none.
    pub crash: Option<CrashSpec>,
    /// A partition. Default none.
    pub partition: Option<PartitionSpec>,
    /// Churn. Default none.
    pub churn: Option<ChurnSpec>,
    /// Hostile nodes ([`crate::adversary`]). Default none.
    pub adversary: Option<crate::adversary::AdversarySpec>,
    /// A spammer blocked by a share of the nodes ([`crate::workload::spam`]). Default none.
    pub spam: Option<crate::workload::spam::SpamSpec>,
    /// The presence workload ([`crate::workload::presence`]). Default none.
    pub presence: Option<crate::workload::presence::PresenceSpec>,
    /// The replicated-store workload ([`crate::workload::collab`]). Default none.
    pub collab: Option<crate::workload::collab::CollabSpec>,
    /// Publishers at a fixed rate on topic 0 ([`crate::workload::flood`]). Default none.
    pub flood: Option<crate::workload::flood::FloodSpec>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            description: String::new(),
            nodes: 100,
            crypto: CryptoMode::Auto,
            start_window_ms: 5000,
            warmup_ms: 30_000,
            bootstrap_nodes: Vec::new(),
            overlay_at_ms: None,
            drain_ms: 2000,
            discovery: None,
            network: NetworkConfig::default(),
            workload: Workload::default(),
            direct: DirectWorkload::default(),
            node: NodeOverrides::default(),
            crash: None,
            partition: None,
            churn: None,
            adversary: None,
            spam: None,
            presence: None,
            collab: None,
            flood: None,
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Neither a file nor a built-in scenario of that name.
    #[error("no scenario {0:?} (not a file, not a built-in: {names})", names = BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    NotFound(String),
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The TOML is not a valid scenario.
    #[error("parsing scenario {name}: {source}")]
    Parse {
        /// The scenario name or path.
        name: String,
        /// The error.
        source: Box<toml::de::Error>,
    },
    /// The values are inconsistent.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// The scenario files shipped with the crate, embedded so the binary works from anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("trust-spam", include_str!("../scenarios/trust-spam.toml")),
    ("crash-50", include_str!("../scenarios/crash-50.toml")),
    (
        "replay-flood",
        include_str!("../scenarios/replay-flood.toml"),
    ),
    ("presence", include_str!("../scenarios/presence.toml")),
    (
        "collab-partition",
        include_str!("../scenarios/collab-partition.toml"),
    ),
    (
        "presence-crash",
        include_str!("../scenarios/presence-crash.toml"),
    ),
    (
        "broadcast-single",
        include_str!("../scenarios/broadcast-single.toml"),
    ),
    (
        "broadcast-random",
        include_str!("../scenarios/broadcast-random.toml"),
    ),
    (
        "broadcast-all",
        include_str!("../scenarios/broadcast-all.toml"),
    ),
    ("crash-20", include_str!("../scenarios/crash-20.toml")),
    (
        "partition-heal",
        include_str!("../scenarios/partition-heal.toml"),
    ),
    ("churn", include_str!("../scenarios/churn.toml")),
    ("lossy-5", include_str!("../scenarios/lossy-5.toml")),
    ("static-50", include_str!("../scenarios/static-50.toml")),
    (
        "topic-sparse",
        include_str!("../scenarios/topic-sparse.toml"),
    ),
    ("discovery", include_str!("../scenarios/discovery.toml")),
    ("direct", include_str!("../scenarios/direct.toml")),
    (
        "direct-sealed",
        include_str!("../scenarios/direct-sealed.toml"),
    ),
    (
        "blackhole-10",
        include_str!("../scenarios/blackhole-10.toml"),
    ),
    ("forgery", include_str!("../scenarios/forgery.toml")),
    ("sybil-flood", include_str!("../scenarios/sybil-flood.toml")),
    ("eclipse", include_str!("../scenarios/eclipse.toml")),
];

impl Scenario {
    /// Parses a scenario from TOML text; `name` fills in a missing `name` key.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ScenarioError> {
        let mut s: Self = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            name: name.into(),
            source: Box::new(e),
        })?;
        if s.name == "custom" {
            s.name = name.into();
        }
        s.validate()?;
        Ok(s)
    }

    /// Resolves `name_or_path`: an existing file path, else
    /// `x0x-sim/scenarios/<name>.toml` next to this crate's sources, else the embedded copy.
    pub fn load(name_or_path: &str) -> Result<Self, ScenarioError> {
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
                path: path.into(),
                source,
            })?;
            let stem = path.file_stem().map_or(name_or_path.to_string(), |s| {
                s.to_string_lossy().into_owned()
            });
            return Self::from_toml(&stem, &text);
        }
        let local = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(format!("{name_or_path}.toml"));
        if local.is_file()
            && let Ok(text) = std::fs::read_to_string(&local)
        {
            return Self::from_toml(name_or_path, &text);
        }
        Self::builtin(name_or_path)
    }

    /// The embedded copy of a shipped scenario.
    pub fn builtin(name: &str) -> Result<Self, ScenarioError> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ScenarioError::NotFound(name.into()))
            .and_then(|(n, text)| Self::from_toml(n, text))
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.nodes == 0 {
            return bad("nodes must be at least 1".into());
        }
        if self.nodes > (1 << 24) {
            return bad("at most 2^24 nodes (synthetic addresses are 10.x.y.z)".into());
        }
        let n = &self.network;
        for (k, p) in [
            ("loss", n.loss),
            ("duplicate", n.duplicate),
            ("reorder", n.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("network.{k} must be a probability, got {p}"));
            }
        }
        if n.jitter_ms < 0.0 || n.reorder_max_ms < 0.0 {
            return bad("jitter and reorder delays must be non-negative".into());
        }
        match n.latency {
            Latency::Fixed { ms } if ms < 0.0 => return bad("latency must be >= 0".into()),
            Latency::Uniform { min_ms, max_ms } if min_ms < 0.0 || max_ms < min_ms => {
                return bad("uniform latency needs 0 <= min_ms <= max_ms".into());
            }
            Latency::LogNormal {
                median_ms,
                sigma,
                min_ms,
                max_ms,
            } if median_ms <= 0.0 || sigma < 0.0 || min_ms < 0.0 || max_ms < min_ms => {
                return bad("log-normal latency needs median > 0, sigma >= 0, min <= max".into());
            }
            _ => {}
        }
        if self.direct.messages > 0 && (self.direct.per_sec.is_nan() || self.direct.per_sec <= 0.0)
        {
            return bad("direct.per_sec must be > 0".into());
        }
        if self.workload.topics == 0 || self.workload.topics > u16::MAX as usize {
            return bad("workload.topics must be in 1..=65535".into());
        }
        if let Some(c) = &self.crash
            && !(0.0..=1.0).contains(&c.fraction)
        {
            return bad("crash.fraction must be in [0, 1]".into());
        }
        if let Some(p) = &self.partition
            && !(0.0..=1.0).contains(&p.fraction)
        {
            return bad("partition.fraction must be in [0, 1]".into());
        }
        if let Some(c) = &self.churn
            && (c.leave_per_sec < 0.0
                || c.join_per_sec < 0.0
                || !(0.0..=1.0).contains(&c.graceful_fraction))
        {
            return bad("churn rates must be >= 0 and graceful_fraction in [0, 1]".into());
        }
        if let Some(a) = &self.adversary {
            a.validate().map_err(ScenarioError::Invalid)?;
        }
        if let Some(f) = &self.flood {
            f.validate(self.nodes).map_err(ScenarioError::Invalid)?;
        }
        let mut c = x0x_proto::Config::default();
        self.node.apply(&mut c);
        c.validate()
            .map_err(|e| ScenarioError::Invalid(format!("node settings: {e}")))?;
        Ok(())
    }

    /// Whether this run uses real crypto.
    pub fn real_crypto(&self) -> bool {
        self.crypto.is_real(self.nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_knobs_come_from_the_scenario() {
        let sc = Scenario::from_toml(
            "k",
            "[node.broadcast]\nihave_interval = \"250ms\"\n[node.membership]\nactive_view_capacity = 7\n",
        )
        .unwrap();
        let mut c = x0x_proto::Config::default();
        sc.node.apply(&mut c);
        assert_eq!(
            c.broadcast.ihave_interval,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(c.membership.active_view_capacity, 7);
        // Keys left out keep the protocol's defaults.
        let d = x0x_proto::Config::default();
        assert_eq!(c.broadcast.max_hops, d.broadcast.max_hops);
        assert_eq!(c.direct, d.direct);
        // An unknown knob, or a value the node would refuse, is a scenario error.
        assert!(Scenario::from_toml("k", "[node.broadcast]\nno_such_knob = 1\n").is_err());
        assert!(matches!(
            Scenario::from_toml("k", "[node.broadcast]\ncache_capacity = 0\n"),
            Err(ScenarioError::Invalid(_))
        ));
    }

    #[test]
    fn every_builtin_parses() {
        for (name, _) in BUILTIN {
            let s = Scenario::builtin(name).unwrap();
            assert_eq!(s.name, *name);
        }
    }

    #[test]
    fn defaults_and_numbers() {
        let s = Scenario::from_toml(
            "x",
            "nodes = 7\n[network]\njitter_ms = 3\nlatency = { dist = \"fixed\", ms = 5 }\n",
        )
        .unwrap();
        assert_eq!(s.nodes, 7);
        assert_eq!(s.network.jitter_ms, 3.0);
        assert_eq!(s.network.latency, Latency::Fixed { ms: 5.0 });
        assert_eq!(s.workload.rounds, 30);
        assert!(Scenario::from_toml("x", "bogus = 1").is_err());
        assert!(Scenario::from_toml("x", "[network]\nloss = 2").is_err());
    }
}
