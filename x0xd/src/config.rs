//! The daemon's TOML configuration: x0x's keys, read leniently, resolved per instance.
//!
//! A file may carry keys of x0x's daemon that this one does not implement (update checks,
//! named-group directories, …): they are accepted and each is named in a warning, so a config
//! written for x0x works unchanged. A malformed file (bad TOML, a wrong type) is an error that
//! names the line and the key.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The API address of the default instance (x0x's).
pub const DEFAULT_API_ADDRESS: &str = "127.0.0.1:12700";
/// The QUIC address of the default instance (x0x's port 5483, every interface).
pub const DEFAULT_BIND_ADDRESS: &str = "[::]:5483";

/// x0x's top-level keys that this daemon accepts but does not act on.
const X0X_UNIMPLEMENTED: &[&str] = &[
    "presence_event_poll_interval_secs",
    "presence_offline_timeout_secs",
    "directory_digest_interval_secs",
    "group_card_republish_interval_secs",
    "directory_resubscribe_jitter_ms",
    "update",
    "gossip.dispatch_workers",
];

/// The configuration file, as written. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConfigFile {
    /// A named instance (`--name` on the command line wins).
    pub instance_name: Option<String>,
    /// Where the daemon keeps its files. Default: the OS data dir + `x0x` (`x0x-<name>`).
    pub data_dir: Option<PathBuf>,
    /// The QUIC address. Default `[::]:5483`; a named instance `[::]:0`.
    pub bind_address: Option<SocketAddr>,
    /// The HTTP API address. Default `127.0.0.1:12700`; a named instance `127.0.0.1:0`.
    pub api_address: Option<SocketAddr>,
    /// Peers dialled to join. Default: none (x0x-rs has no public fleet).
    pub bootstrap_peers: Vec<SocketAddr>,
    /// `trace`, `debug`, `info`, `warn` or `error`; anything else is `info`. Default `info`.
    pub log_level: Option<String>,
    /// `json` for JSON lines; anything else is text. Default `text`.
    pub log_format: Option<String>,
    /// Identity re-announcement period, seconds. Default 300 (x0x's).
    pub heartbeat_interval_secs: Option<u64>,
    /// Discovery entries older than this are hidden from `/agents/discovered`, seconds.
    /// Default 900 (x0x's).
    pub identity_ttl_secs: Option<u64>,
    /// A user key to load (never generated). Default: `~/.x0x/user.key` if it exists.
    pub user_key_path: Option<PathBuf>,
    /// Advertise a rendezvous record for this agent. Default true.
    pub rendezvous_enabled: Option<bool>,
    /// Validity of the rendezvous record, milliseconds. Default 3 600 000 (one hour).
    pub rendezvous_validity_ms: Option<u64>,
    /// Find peers on the local link by mDNS and announce this node there. Default true
    /// (x0x daemons find each other on a LAN with no bootstrap list).
    pub lan_discovery: Option<bool>,
    /// Most addresses kept in the peer cache. Default 64.
    pub peer_cache_capacity: Option<usize>,
    /// Presence beacon period, seconds. Default 30 (x0x's).
    pub presence_beacon_interval_secs: Option<u64>,
    /// Gossip settings (partial tables allowed).
    pub gossip: GossipSection,
}

/// `[gossip]`: x0x's names for the membership settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GossipSection {
    /// Active view size (HyParView). Default: the core's.
    pub active_view_size: Option<usize>,
    /// Passive view size (HyParView). Default: the core's.
    pub passive_view_size: Option<usize>,
    /// Active random walk length (HyParView ARWL). Default: the core's.
    pub arwl: Option<u8>,
    /// Passive random walk length (HyParView PRWL). Default: the core's.
    pub prwl: Option<u8>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key has the wrong type. The message names the line,
    /// the column and the key.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account, with line and key.
        message: String,
    },
    /// An instance name that is not 1–64 ASCII letters, digits or `-` starting with an
    /// alphanumeric.
    #[error(
        "invalid instance name {0:?}: use 1-64 ASCII letters, digits or '-', starting with a letter or digit"
    )]
    InstanceName(String),
}

/// A key the daemon read but does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Dotted path of the key.
    pub key: String,
    /// True when it is one of x0x's keys (known, not implemented here); false when neither
    /// daemon knows it.
    pub x0x_key: bool,
}

impl ConfigFile {
    /// Parses `text`; returns the config and the keys it ignored.
    pub fn parse(text: &str, path: &Path) -> Result<(Self, Vec<IgnoredKey>), ConfigError> {
        let mut ignored = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let config: Self = serde_ignored::deserialize(de, |p| {
            let key = p.to_string();
            let x0x_key = X0X_UNIMPLEMENTED
                .iter()
                .any(|k| key == *k || key.starts_with(&format!("{k}.")));
            ignored.push(IgnoredKey { key, x0x_key });
        })
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        // A whole table is reported once, not key by key.
        ignored.dedup_by(|b, a| b.key.starts_with(&format!("{}.", a.key)));
        Ok((config, ignored))
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<(Self, Vec<IgnoredKey>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

/// Checks an instance name (x0x's rule).
pub fn validate_instance_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InstanceName(name.to_string()))
    }
}

/// The directory holding instance directories: the OS data dir (`~/.local/share` on Linux),
/// or `/var/lib` where the OS has none.
pub fn data_base() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from("/var/lib"))
}

/// The data directory of an instance: `<data_base>/x0x` or `<data_base>/x0x-<name>`.
pub fn instance_dir(name: Option<&str>) -> PathBuf {
    data_base().join(match name {
        Some(n) => format!("x0x-{n}"),
        None => "x0x".to_string(),
    })
}

/// Where x0x looks for a config file when none is given.
pub fn default_config_path(name: Option<&str>) -> PathBuf {
    let base = dirs::config_dir().unwrap_or_else(|| PathBuf::from("/etc"));
    base.join(match name {
        Some(n) => format!("x0x-{n}"),
        None => "x0x".to_string(),
    })
    .join("config.toml")
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The settings the daemon runs with: the file, the flags and the instance rules applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The instance name, if any.
    pub instance_name: Option<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The QUIC address.
    pub bind_address: SocketAddr,
    /// The HTTP API address.
    pub api_address: SocketAddr,
    /// Peers dialled to join (the config's; no built-in list).
    pub bootstrap_peers: Vec<SocketAddr>,
    /// The tracing filter directive.
    pub log_level: String,
    /// The log format.
    pub log_format: LogFormat,
    /// Identity re-announcement period, seconds.
    pub heartbeat_interval_secs: u64,
    /// Discovery staleness cutoff, seconds.
    pub identity_ttl_secs: u64,
    /// The user key file, if one is to be loaded.
    pub user_key_path: Option<PathBuf>,
    /// Advertise a rendezvous record.
    pub rendezvous_enabled: bool,
    /// Rendezvous validity, milliseconds.
    pub rendezvous_validity_ms: u64,
    /// mDNS discovery on the local link.
    pub lan_discovery: bool,
    /// Peer cache capacity.
    pub peer_cache_capacity: usize,
    /// Presence beacon period, seconds (`None`: the core's default).
    pub presence_beacon_interval_secs: Option<u64>,
    /// `[gossip]` overrides.
    pub gossip: GossipSection,
}

/// What the command line says about the instance.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--name`.
    pub name: Option<String>,
    /// `--api-port`.
    pub api_port: Option<u16>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--no-hard-coded-bootstrap`: drops the built-in list only (which is empty); the
    /// config's `bootstrap_peers` stay (x0x drops them too, which its users did not expect).
    pub no_hard_coded_bootstrap: bool,
}

impl Settings {
    /// Applies x0x's instance rules: a named instance gets its own data dir and ephemeral
    /// ports unless the file sets them.
    pub fn resolve(file: ConfigFile, flags: &Overrides) -> Result<Self, ConfigError> {
        let name = flags.name.clone().or(file.instance_name.clone());
        if let Some(n) = &name {
            validate_instance_name(n)?;
        }
        let named = name.is_some();
        let ephemeral_v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
        let bind_default: SocketAddr = DEFAULT_BIND_ADDRESS.parse().expect("valid constant");
        let api_default: SocketAddr = DEFAULT_API_ADDRESS.parse().expect("valid constant");
        let mut api_address = match file.api_address {
            Some(a) => a,
            None if named => SocketAddr::from(([127, 0, 0, 1], 0)),
            None => api_default,
        };
        if let Some(port) = flags.api_port {
            api_address.set_port(port);
        }
        let bind_address = match file.bind_address {
            Some(a) => a,
            None if named => ephemeral_v6,
            None => bind_default,
        };
        let level = flags
            .log_level
            .clone()
            .or(file.log_level.clone())
            .map(|l| l.to_ascii_lowercase())
            .filter(|l| ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()))
            .unwrap_or_else(|| "info".to_string());
        let log_format = match file.log_format.as_deref() {
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let user_key_path = file.user_key_path.clone().or_else(|| {
            let p = dirs::home_dir()?.join(".x0x").join("user.key");
            p.exists().then_some(p)
        });
        Ok(Self {
            data_dir: file
                .data_dir
                .clone()
                .unwrap_or_else(|| instance_dir(name.as_deref())),
            instance_name: name,
            bind_address,
            api_address,
            bootstrap_peers: file.bootstrap_peers,
            log_level: level,
            log_format,
            heartbeat_interval_secs: file.heartbeat_interval_secs.unwrap_or(300).max(1),
            identity_ttl_secs: file.identity_ttl_secs.unwrap_or(900),
            user_key_path,
            rendezvous_enabled: file.rendezvous_enabled.unwrap_or(true),
            rendezvous_validity_ms: file.rendezvous_validity_ms.unwrap_or(3_600_000),
            lan_discovery: file.lan_discovery.unwrap_or(true),
            peer_cache_capacity: file.peer_cache_capacity.unwrap_or(64).max(1),
            presence_beacon_interval_secs: file.presence_beacon_interval_secs.map(|s| s.max(1)),
            gossip: file.gossip,
        })
    }

    /// The settings as a JSON-friendly map, for `--check` and the docs.
    pub fn describe(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("data_dir", self.data_dir.display().to_string());
        m.insert("bind_address", self.bind_address.to_string());
        m.insert("api_address", self.api_address.to_string());
        m.insert(
            "bootstrap_peers",
            format!(
                "[{}]",
                self.bootstrap_peers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        m.insert("log_level", self.log_level.clone());
        m.insert("lan_discovery", self.lan_discovery.to_string());
        m
    }
}

/// Every top-level key the daemon reads (for the docs check).
pub const KEYS: &[&str] = &[
    "instance_name",
    "data_dir",
    "bind_address",
    "api_address",
    "bootstrap_peers",
    "log_level",
    "log_format",
    "heartbeat_interval_secs",
    "identity_ttl_secs",
    "user_key_path",
    "rendezvous_enabled",
    "rendezvous_validity_ms",
    "lan_discovery",
    "peer_cache_capacity",
    "presence_beacon_interval_secs",
    "gossip",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(ConfigFile, Vec<IgnoredKey>), ConfigError> {
        ConfigFile::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn x0x_keys_parse_and_unimplemented_ones_are_named() {
        let (c, ignored) = parse(
            r#"
instance_name = "a"
bind_address = "127.0.0.1:5000"
bootstrap_peers = ["127.0.0.1:5001"]
heartbeat_interval_secs = 10
presence_offline_timeout_secs = 5
colour = "blue"
[update]
enabled = false
repo = "x/y"
[gossip]
active_view_size = 6
dispatch_workers = 4
"#,
        )
        .unwrap();
        assert_eq!(c.instance_name.as_deref(), Some("a"));
        assert_eq!(c.bootstrap_peers.len(), 1);
        assert_eq!(c.gossip.active_view_size, Some(6));
        let keys: Vec<_> = ignored
            .iter()
            .map(|k| (k.key.as_str(), k.x0x_key))
            .collect();
        assert!(
            keys.contains(&("presence_offline_timeout_secs", true)),
            "{keys:?}"
        );
        assert!(keys.contains(&("colour", false)), "{keys:?}");
        assert!(
            keys.contains(&("update", true)) || keys.contains(&("update.enabled", true)),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("gossip.dispatch_workers", true)),
            "{keys:?}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_line_and_the_key() {
        let err = parse("log_level = \"info\"\nheartbeat_interval_secs = \"soon\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("heartbeat_interval_secs"), "{msg}");
    }

    #[test]
    fn bad_toml_is_an_error_with_a_line() {
        let msg = parse("a = [1,\n").unwrap_err().to_string();
        assert!(msg.contains("line"), "{msg}");
    }

    #[test]
    fn a_named_instance_gets_ephemeral_ports_and_its_own_dir() {
        let flags = Overrides {
            name: Some("n1".into()),
            ..Default::default()
        };
        let s = Settings::resolve(ConfigFile::default(), &flags).unwrap();
        assert_eq!(s.api_address.port(), 0);
        assert_eq!(s.bind_address.port(), 0);
        assert!(s.data_dir.ends_with("x0x-n1"));
        let s = Settings::resolve(ConfigFile::default(), &Overrides::default()).unwrap();
        assert_eq!(s.api_address.to_string(), DEFAULT_API_ADDRESS);
        assert!(s.data_dir.ends_with("x0x"));
    }

    #[test]
    fn api_port_flag_replaces_the_port_only() {
        let file = ConfigFile {
            api_address: Some("127.0.0.2:9".parse().unwrap()),
            ..Default::default()
        };
        let flags = Overrides {
            api_port: Some(4000),
            ..Default::default()
        };
        let s = Settings::resolve(file, &flags).unwrap();
        assert_eq!(s.api_address.to_string(), "127.0.0.2:4000");
    }

    #[test]
    fn instance_names_follow_x0x_rule() {
        assert!(validate_instance_name("a-1").is_ok());
        assert!(validate_instance_name("-a").is_err());
        assert!(validate_instance_name("").is_err());
        assert!(validate_instance_name("a b").is_err());
        assert!(validate_instance_name(&"a".repeat(65)).is_err());
    }
}
