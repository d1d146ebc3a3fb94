//! [`AgentBuilder`]: where the keys come from, the network configuration, and `build`, which
//! binds the socket and starts the driver task.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use x0x_proto::identity::{
    AgentCertificate, AgentKeypair, GenerateError, MachineKeypair, UserKeypair,
};
use x0x_proto::trust::TrustState;
use x0x_proto::{Config, Identity, Node};

use super::{Agent, DIRECT_QUEUE};
use crate::clock::Clock;
use crate::driver::{self, DriverParts};
use crate::error::{Error, Result};
use crate::keys;
use crate::network::NetworkConfig;
use crate::runtime::Runtime;
use crate::tls;

/// Where a key comes from.
#[derive(Debug, Clone, Default)]
enum KeySource<K> {
    /// A fresh key held in memory only.
    #[default]
    Generate,
    /// Loaded from, or created at, a file.
    Path(PathBuf),
    /// Given by the caller.
    Given(K),
}

impl<K: keys::KeyFile> KeySource<K> {
    fn resolve(self) -> Result<K> {
        match self {
            Self::Generate => Ok(K::generate_new()?),
            Self::Path(p) => keys::load_or_create(&p),
            Self::Given(k) => Ok(k),
        }
    }
}

/// Configures and builds an [`Agent`]. Obtained from `Agent::builder()`.
#[derive(Debug)]
pub struct AgentBuilder<R: Runtime> {
    runtime: R,
    machine: KeySource<MachineKeypair>,
    agent: KeySource<AgentKeypair>,
    user: Option<KeySource<UserKeypair>>,
    network: NetworkConfig,
    heartbeat: Option<Duration>,
    protocol: Config,
    contacts: Option<TrustState>,
    peer_cache: Vec<x0x_proto::peer_cache::CachedPeer>,
}

impl<R: Runtime> AgentBuilder<R> {
    /// A builder that runs the agent on `runtime`.
    pub fn with_runtime(runtime: R) -> Self {
        Self {
            runtime,
            machine: KeySource::Generate,
            agent: KeySource::Generate,
            user: None,
            network: NetworkConfig::default(),
            heartbeat: None,
            protocol: Config::default(),
            contacts: None,
            peer_cache: Vec::new(),
        }
    }

    /// Loads the machine key from `path`, creating it (mode 0600) if the file does not exist.
    /// Without this, a fresh machine key is generated in memory.
    pub fn with_machine_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.machine = KeySource::Path(path.into());
        self
    }

    /// Uses `key` as the machine key.
    pub fn with_machine_keypair(mut self, key: MachineKeypair) -> Self {
        self.machine = KeySource::Given(key);
        self
    }

    /// Loads the agent key from `path`, creating it (mode 0600) if the file does not exist.
    /// Without this, a fresh agent key is generated in memory.
    pub fn with_agent_key_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent = KeySource::Path(path.into());
        self
    }

    /// Uses `key` as the agent key.
    pub fn with_agent_keypair(mut self, key: AgentKeypair) -> Self {
        self.agent = KeySource::Given(key);
        self
    }

    /// Binds the agent to a user: `build` issues an [`AgentCertificate`] signed by `key`.
    pub fn with_user_key(mut self, key: UserKeypair) -> Self {
        self.user = Some(KeySource::Given(key));
        self
    }

    /// Like [`Self::with_user_key`], with the user key loaded from (or created at) `path`.
    pub fn with_user_key_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.user = Some(KeySource::Path(path.into()));
        self
    }

    /// Sets the network configuration (bind address, bootstrap peers, limits).
    pub fn with_network_config(mut self, config: NetworkConfig) -> Self {
        self.network = config;
        self
    }

    /// Sets the protocol node's settings (membership, broadcast, discovery, direct messages;
    /// default: [`Config::default`]). The network configuration's bootstrap peers, the bound
    /// address and [`Self::with_heartbeat_interval`] are applied on top; `build` refuses
    /// settings the node refuses ([`Error::Config`]).
    pub fn with_protocol_config(mut self, config: Config) -> Self {
        self.protocol = config;
        self
    }

    /// Starts with a saved contact store (e.g. a daemon's `contacts.json`); `build` refuses one
    /// over the configured caps or inconsistent ([`Error::Contacts`]).
    pub fn with_contacts(mut self, state: TrustState) -> Self {
        self.contacts = Some(state);
        self
    }

    /// Starts with saved peer-cache entries (from [`Agent::peer_cache`]): joining dials the
    /// best of them besides the bootstrap peers.
    pub fn with_peer_cache(mut self, saved: Vec<x0x_proto::peer_cache::CachedPeer>) -> Self {
        self.peer_cache = saved;
        self
    }

    /// Sets the interval of identity heartbeats, in seconds (default: the protocol's
    /// [`AnnounceConfig::heartbeat_interval`](x0x_proto::announce::AnnounceConfig), 300 s).
    /// Zero is refused by `build` as a configuration error.
    pub fn with_heartbeat_interval(mut self, secs: u64) -> Self {
        self.heartbeat = Some(Duration::from_secs(secs));
        self
    }

    /// Loads or creates the keys, binds the UDP socket, and starts the driver task. The agent
    /// accepts connections from then on; [`Agent::join_network`] dials the bootstrap peers.
    pub async fn build(self) -> Result<Agent<R>> {
        let machine = self.machine.resolve()?;
        let agent = self.agent.resolve()?;
        let user = self.user.map(KeySource::resolve).transpose()?;
        // Sign through aws-lc-rs: several times faster, and its hedged signatures verify
        // everywhere alike.
        #[cfg(feature = "aws-lc-rs")]
        let (machine, agent, user) = (
            machine.with_fast_signing(),
            agent.with_fast_signing(),
            user.map(|u| u.with_fast_signing()),
        );
        let runtime = Arc::new(self.runtime);
        let clock = Clock::new(runtime.clone());
        let user = user.map(|u| {
            let cert = AgentCertificate::issue(&u, agent.agent_id(), clock.now().as_secs(), None);
            (u, cert)
        });
        let (agent_id, machine_id) = (agent.agent_id(), machine.machine_id());
        let signer = agent.clone();
        let kem_public_key = agent.kem_keypair().public_key().clone();
        let user_id = user.as_ref().map(|(u, _)| u.user_id());

        let net = self.network;
        let bind = net.bind_addr_or_default();
        let bind_err = |source| Error::Bind { addr: bind, source };
        let tls = tls::ConnectionTls::new(&machine, &net);
        let socket = std::net::UdpSocket::bind(bind).map_err(bind_err)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(tls::server_config(&machine, &net)?),
            socket,
            runtime.quinn_runtime(),
        )
        .map_err(bind_err)?;
        let bound = endpoint.local_addr().map_err(bind_err)?;

        let mut config = self.protocol;
        config.bootstrap = net.bootstrap_nodes.clone();
        if let Some(h) = self.heartbeat {
            config.announce.heartbeat_interval = h;
        }
        // An unspecified address is no use to peers; they then use the address they see.
        config.listen_addrs = if bound.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![bound]
        };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| GenerateError::Rng(e.to_string()))?;
        let identity = Identity {
            machine,
            agent,
            user,
        };
        let max_payload_len = config.max_payload_len;
        let mut node = Node::new(identity, config, seed)?;
        if let Some(state) = self.contacts {
            node = node.with_contacts(state)?;
        }
        if !self.peer_cache.is_empty() {
            node.restore_peer_cache(clock.now(), self.peer_cache);
        }
        let (direct_tx, direct_rx) = async_channel::bounded(DIRECT_QUEUE);
        let (commands, publishes) = driver::spawn(DriverParts {
            direct_tx,
            node,
            endpoint,
            tls,
            runtime: runtime.clone(),
            clock,
            net,
        });
        Ok(Agent {
            commands,
            publishes,
            max_payload_len,
            direct_rx,
            runtime,
            bound,
            agent_id,
            machine_id,
            user_id,
            heartbeat: self.heartbeat,
            signer,
            kem_public_key,
        })
    }
}
