//! The user-facing API: [`Agent`], its builder, subscriptions and discovery results.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use x0x_proto::broadcast::BroadcastStats;
use x0x_proto::direct::{DirectMessage, DirectOptions, DirectReceipt};
use x0x_proto::identity::{
    AgentCertificate, AgentKeypair, GenerateError, MachineKeypair, UserId, UserKeypair,
};
use x0x_proto::node::{Delivery, NodeStats};
use x0x_proto::wire::{MessageId, TopicId};
use x0x_proto::{AgentId, Config, Identity, MachineId, Node};

use super::clock::Clock;
use super::driver::{self, Command, DiscoveryCommand, DriverParts, PublishItem, SubId};
use super::error::{Error, Result};
use super::keys;
use super::network::NetworkConfig;
use super::runtime::{Reply, Runtime, oneshot};
use super::tls;

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
        // Sign through aws-lc-rs (0.1 ms instead of 0.7 ms per signature; hedged signatures
        // that every verifier accepts alike).
        #[cfg(feature = "aws-lc-rs")]
        let (machine, agent, user) = (
            machine.with_fast_signing(),
            agent.with_fast_signing(),
            user.map(|u| u.with_fast_signing()),
        );
        let clock = Clock::new();
        let user = user.map(|u| {
            let cert = AgentCertificate::issue(&u, agent.agent_id(), clock.now().as_secs(), None);
            (u, cert)
        });
        let (agent_id, machine_id) = (agent.agent_id(), machine.machine_id());
        let user_id = user.as_ref().map(|(u, _)| u.user_id());

        let net = self.network;
        let bind = net.bind_addr_or_default();
        let bind_err = |source| Error::Bind { addr: bind, source };
        let socket = std::net::UdpSocket::bind(bind).map_err(bind_err)?;
        let runtime = Arc::new(self.runtime);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(tls::server_config(&machine, &net)?),
            socket,
            runtime.quinn_runtime(),
        )
        .map_err(bind_err)?;
        let bound = endpoint.local_addr().map_err(bind_err)?;
        let client_config = tls::client_config(&machine, &net)?;

        let mut config = Config::default();
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
        let node = Node::new(identity, config, seed)?;
        let (direct_tx, direct_rx) = async_channel::bounded(DIRECT_QUEUE);
        let (commands, publishes) = driver::spawn(DriverParts {
            direct_tx,
            node,
            endpoint,
            client_config,
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
        })
    }
}

/// A handle to a running agent: one driver task owns the protocol [`Node`] and the QUIC
/// endpoint; every method sends it a request and awaits the answer.
///
/// Cheap to clone; all clones drive the same agent. When the last clone is dropped the driver
/// shuts down by itself; [`Agent::shutdown`] does it explicitly and waits for it.
#[derive(Debug)]
pub struct Agent<R: Runtime> {
    commands: async_channel::Sender<Command>,
    /// The publish queue ([`driver::PUBLISH_QUEUE`] slots).
    publishes: async_channel::Sender<PublishItem>,
    max_payload_len: usize,
    direct_rx: async_channel::Receiver<DirectMessage>,
    runtime: Arc<R>,
    bound: SocketAddr,
    agent_id: AgentId,
    machine_id: MachineId,
    user_id: Option<UserId>,
    heartbeat: Option<Duration>,
}

impl<R: Runtime> Clone for Agent<R> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            publishes: self.publishes.clone(),
            max_payload_len: self.max_payload_len,
            direct_rx: self.direct_rx.clone(),
            runtime: self.runtime.clone(),
            bound: self.bound,
            agent_id: self.agent_id,
            machine_id: self.machine_id,
            user_id: self.user_id,
            heartbeat: self.heartbeat,
        }
    }
}

impl<R: Runtime + Default> Agent<R> {
    /// A builder on the default instance of runtime `R`.
    pub fn builder() -> AgentBuilder<R> {
        AgentBuilder::with_runtime(R::default())
    }
}

impl<R: Runtime> Agent<R> {
    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| Error::Shutdown)?;
        answer.recv().await.map_err(|_| Error::Shutdown)
    }

    async fn discovery<T>(
        &self,
        make: impl FnOnce(Reply<Result<T>>) -> DiscoveryCommand,
    ) -> Result<T> {
        self.request(|reply| Command::Discovery(make(reply)))
            .await?
    }

    /// Starts the protocol and dials the bootstrap peers. Returns once a first neighbour is up
    /// (at once without bootstrap peers), or [`Error::JoinTimeout`] after
    /// [`NetworkConfig::join_timeout`].
    pub async fn join_network(&self) -> Result<()> {
        self.request(Command::Join).await?
    }

    /// The local UDP address the agent is bound to.
    pub async fn bound_addr(&self) -> Option<SocketAddr> {
        Some(self.bound)
    }

    /// This agent's id.
    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    /// This host's machine id (the TLS identity).
    pub fn machine_id(&self) -> MachineId {
        self.machine_id
    }

    /// The user this agent is certified for, if any.
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }

    /// The identity heartbeat interval set on the builder.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Subscribes to `topic`. Messages published on it from then on arrive on the returned
    /// [`Subscription`]. Dropping the subscription unsubscribes.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        let topic_id = TopicId::from_name(topic);
        let (id, rx) = self
            .request(|reply| Command::Subscribe {
                topic: topic_id,
                reply,
            })
            .await?;
        Ok(Subscription {
            topic: topic.to_owned(),
            topic_id,
            id,
            rx,
            commands: self.commands.downgrade(),
        })
    }

    /// Publishes `payload` on `topic`, signed by the agent key. Returns once the message is
    /// queued for the driver (waiting while the queue is full or a peer's send queue is
    /// congested), so a publisher can run ahead of the signer: the messages that queue up
    /// meanwhile are signed together, one signature per batch ([`Node::publish_batch`]).
    /// Publishes keep their order, and those queued before [`Agent::shutdown`] still go out.
    ///
    /// Fails with [`Error::Publish`] for a payload over the node's maximum, and with
    /// [`Error::Shutdown`] once the agent stopped.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.check_payload(payload.len())?;
        self.publishes
            .send(PublishItem {
                topic: TopicId::from_name(topic),
                payload: Bytes::from(payload),
                reply: None,
            })
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// Publishes `payload` on `topic` and waits for the message id (the message is then
    /// signed and handed to the transport).
    pub async fn publish_bytes(&self, topic: &str, payload: Bytes) -> Result<MessageId> {
        self.check_payload(payload.len())?;
        let (reply, answer) = oneshot();
        self.publishes
            .send(PublishItem {
                topic: TopicId::from_name(topic),
                payload,
                reply: Some(reply),
            })
            .await
            .map_err(|_| Error::Shutdown)?;
        answer.recv().await.map_err(|_| Error::Shutdown)?
    }

    fn check_payload(&self, len: usize) -> Result<()> {
        if len > self.max_payload_len {
            return Err(Error::Publish(
                x0x_proto::node::PublishError::PayloadTooLarge {
                    len,
                    max: self.max_payload_len,
                },
            ));
        }
        Ok(())
    }

    /// The machines with a live connection that completed its `Hello`.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.request(Command::Peers).await
    }

    /// A stream of connection and neighbour events from now on.
    pub async fn events(&self) -> Result<Events> {
        let rx = self.request(Command::Watch).await?;
        Ok(Events { rx })
    }

    /// Counters of the node and the driver.
    pub async fn stats(&self) -> Result<AgentStats> {
        self.request(Command::Stats).await
    }

    /// Closes every connection, stops the endpoint and waits until every task has ended.
    /// Calling it again, or after the agent stopped, is a no-op.
    pub async fn shutdown(&self) -> Result<()> {
        match self.request(Command::Shutdown).await {
            Ok(()) | Err(Error::Shutdown) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ----- direct messages -----

    /// Sends `payload` to agent `to` and waits for its receipt: over the connection to its
    /// machine when possible (dialling it if needed), else sealed to its ML-KEM key through
    /// the mesh. Retries use the same request id; the recipient delivers it once. Fails with
    /// [`Error::DirectSend`] at once (unknown recipient, payload too large…) or
    /// [`Error::DirectFailed`] later (expired, rejected by the recipient).
    pub async fn send_direct(&self, to: AgentId, payload: Vec<u8>) -> Result<DirectReceipt> {
        self.send_direct_with(to, Bytes::from(payload), DirectOptions::default())
            .await
    }

    /// [`Agent::send_direct`] with options: path preference and lifetime.
    pub async fn send_direct_with(
        &self,
        to: AgentId,
        payload: Bytes,
        options: DirectOptions,
    ) -> Result<DirectReceipt> {
        self.request(|reply| Command::SendDirect {
            to,
            payload,
            options,
            reply,
        })
        .await?
    }

    /// The next direct message for this agent (verified sender, delivered once), or `None`
    /// once the agent shut down. All clones of the agent share one queue: each message goes
    /// to one caller. If nobody reads, the queue holds 1024 messages; more are dropped and
    /// counted in [`DriverStats::direct_dropped`].
    pub async fn recv_direct(&self) -> Option<DirectMessage> {
        self.direct_rx.recv().await.ok()
    }

    // ----- discovery -----

    /// Announces this agent's identity now and arms the heartbeat. With `include_user` the
    /// announcement discloses the user id (with its certificate); that needs `human_consent`
    /// and a user key, else [`Error::Announce`]. `join_network` already announces without
    /// the user.
    pub async fn announce_identity(&self, include_user: bool, human_consent: bool) -> Result<()> {
        self.discovery(|reply| DiscoveryCommand::Announce {
            include_user,
            human_consent,
            reply,
        })
        .await
    }

    /// Live agents discovered through announcements (within the TTL), sorted by agent id.
    pub async fn discovered_agents(&self) -> Result<Vec<DiscoveredAgent>> {
        self.discovery(DiscoveryCommand::Discovered).await
    }

    /// Looks up an agent's addresses: from the cache at once, else by querying the overlay
    /// in expanding rings, else through rendezvous records. `None` if nothing live was found.
    pub async fn find_agent(&self, agent: AgentId) -> Result<Option<Vec<SocketAddr>>> {
        self.discovery(|reply| DiscoveryCommand::FindAgent { agent, reply })
            .await
    }

    /// Live agents that disclosed `user` with a valid certificate, from the cache.
    pub async fn find_agents_by_user(&self, user: UserId) -> Result<Vec<DiscoveredAgent>> {
        self.discovery(|reply| DiscoveryCommand::FindByUser { user, reply })
            .await
    }

    /// Publishes a signed rendezvous record valid for `validity_ms` milliseconds.
    pub async fn advertise_identity(&self, validity_ms: u64) -> Result<()> {
        self.discovery(|reply| DiscoveryCommand::Advertise { validity_ms, reply })
            .await
    }

    /// Looks an agent up through rendezvous records, waiting up to `timeout_secs` for one to
    /// arrive. An expired record is never returned.
    pub async fn find_agent_rendezvous(
        &self,
        agent: AgentId,
        timeout_secs: u64,
    ) -> Result<Option<Vec<SocketAddr>>> {
        let timeout = Duration::from_secs(timeout_secs);
        self.discovery(|reply| DiscoveryCommand::Rendezvous {
            agent,
            timeout,
            reply,
        })
        .await
    }
}

/// A live subscription to one topic.
pub struct Subscription {
    topic: String,
    topic_id: TopicId,
    id: SubId,
    rx: async_channel::Receiver<Delivery>,
    commands: async_channel::WeakSender<Command>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message, or `None` once the agent shut down or this subscriber was dropped
    /// for falling [`NetworkConfig::subscription_buffer`] messages behind.
    pub async fn recv(&mut self) -> Option<Message> {
        let d = self.rx.recv().await.ok()?;
        Some(Message {
            topic: self.topic.clone(),
            payload: d.payload.to_vec(),
            sender: d.author,
            id: d.id,
            via: d.via,
            hops: d.hops,
            published_at_ms: d.published_at_ms,
        })
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.upgrade() {
            let _ = commands.try_send(Command::Unsubscribe {
                topic: self.topic_id,
                id: self.id,
            });
        }
    }
}

/// A pub/sub message delivered to a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic name it was subscribed under.
    pub topic: String,
    /// The application payload.
    pub payload: Vec<u8>,
    /// The publishing agent, proven by its signature.
    pub sender: AgentId,
    /// The message id.
    pub id: MessageId,
    /// The machine it arrived from (the last hop).
    pub via: MachineId,
    /// Hops travelled (1 = straight from the publisher).
    pub hops: u8,
    /// The publisher's clock at publish time, unix milliseconds.
    pub published_at_ms: u64,
}

/// An agent learned from an identity announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// The machine it runs on.
    pub machine_id: MachineId,
    /// Its user, when it announced one with consent.
    pub user_id: Option<UserId>,
    /// When it announced, unix seconds.
    pub announced_at: u64,
    /// The machine's ML-DSA-65 public key (1952 bytes).
    pub machine_public_key: Vec<u8>,
    /// Where it can be reached.
    pub addresses: Vec<SocketAddr>,
    /// Its ML-KEM-768 key for sealed direct messages (1184 bytes), once announced.
    pub kem_public_key: Option<Vec<u8>>,
}

impl DiscoveredAgent {
    pub(crate) fn from_proto(a: &x0x_proto::discovery::DiscoveredAgent) -> Self {
        Self {
            agent_id: a.agent_id,
            machine_id: a.machine_id,
            user_id: a.user_id,
            announced_at: a.announced_at,
            machine_public_key: a
                .machine_public_key
                .as_ref()
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
            addresses: a.addresses.clone(),
            kem_public_key: a.kem_public_key.as_ref().map(|k| k.as_bytes().to_vec()),
        }
    }
}

/// A connected peer, as returned by [`Agent::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer machine (proven by the TLS handshake).
    pub machine_id: MachineId,
    /// The agent it said it runs in its `Hello`.
    pub agent_id: Option<AgentId>,
    /// The connection's remote address.
    pub addr: Option<SocketAddr>,
    /// Whether we dialled (`Some(true)`) or it did.
    pub outbound: Option<bool>,
}

/// A connection or membership change, from [`Agent::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A connection completed its `Hello` exchange.
    PeerUp {
        /// The peer machine.
        machine_id: MachineId,
        /// Its agent.
        agent_id: AgentId,
    },
    /// A connection that had completed its `Hello` went away.
    PeerDown {
        /// The peer machine.
        machine_id: MachineId,
    },
    /// A machine entered the membership active view (messages flow through it).
    NeighborUp {
        /// The neighbour.
        machine_id: MachineId,
    },
    /// A machine left the active view.
    NeighborDown {
        /// The neighbour.
        machine_id: MachineId,
    },
    /// An agent entered the discovery cache for the first time.
    AgentDiscovered {
        /// The agent.
        agent_id: AgentId,
    },
}

/// The stream returned by [`Agent::events`]. A watcher that falls 256 events behind is
/// dropped (its `recv` ends) rather than allowed to stall the agent.
#[derive(Debug)]
pub struct Events {
    rx: async_channel::Receiver<AgentEvent>,
}

impl Events {
    /// The next event, or `None` once the agent shut down (or this watcher was dropped).
    pub async fn recv(&mut self) -> Option<AgentEvent> {
        self.rx.recv().await.ok()
    }
}

/// Counters from [`Agent::stats`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentStats {
    /// The protocol node's counters (its layers' included).
    pub node: NodeStats,
    /// The broadcast layer's counters (publishes, GOSSIP frames, duplicates, repairs).
    pub broadcast: BroadcastStats,
    /// The driver's counters.
    pub driver: DriverStats,
    /// Connections tracked now.
    pub connections: usize,
}

/// What the driver counted. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Incoming connections that completed the handshake.
    pub connections_accepted: u64,
    /// Outgoing connections that completed the handshake.
    pub connections_dialed: u64,
    /// Incoming handshakes that failed.
    pub handshakes_failed: u64,
    /// Dials that failed (unreachable, refused, wrong machine, timeout).
    pub dials_failed: u64,
    /// Second connections to an already-connected machine, closed.
    pub duplicates_closed: u64,
    /// Connections closed for a length prefix above the frame limit.
    pub frames_too_large: u64,
    /// Events from connections no longer tracked (frames after a close), ignored.
    pub stale_conn_events: u64,
    /// Frames dropped because a peer's send queue was full.
    pub send_queue_full_drops: u64,
    /// Publishes whose answer waited for a congested send queue to drain (backpressure).
    pub publishes_held: u64,
    /// Batches of queued publishes handed to the node (one signature each per 256 messages).
    pub publish_batches: u64,
    /// Queued publishes ([`Agent::publish`]) the node refused after they were queued.
    pub publishes_refused: u64,
    /// Frames for a machine with no connection, dropped.
    pub transmits_without_connection: u64,
    /// Subscribers dropped for not keeping up.
    pub subscribers_dropped: u64,
    /// Event watchers dropped for not keeping up.
    pub watchers_dropped: u64,
    /// Direct messages dropped because the `recv_direct` queue was full.
    pub direct_dropped: u64,
}

/// Direct messages queued for `recv_direct` before more are dropped.
const DIRECT_QUEUE: usize = 1024;
