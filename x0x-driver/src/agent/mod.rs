//! The user-facing API: the [`Agent`] handle, its builder, subscriptions, events, what it
//! knows of others and its counters, one file each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use x0x_proto::direct::{DirectMessage, DirectOptions, DirectReceipt};
use x0x_proto::identity::{AgentKeypair, UserId};
use x0x_proto::kem::KemPublicKey;
use x0x_proto::node::{TableSize, TrustApplied, TrustChange};
use x0x_proto::trust::{TrustDecision, TrustState};
use x0x_proto::wire::{MessageId, TopicId};
use x0x_proto::{AgentId, MachineId};

use crate::driver::{Command, DiscoveryCommand, PublishItem};
use crate::error::{Error, Result};
use crate::runtime::{Reply, Runtime, oneshot};

mod builder;
mod collab;
mod connect;
mod event;
mod peers;
mod presence;
mod signing;
mod stats;
mod subscription;

pub use builder::AgentBuilder;
pub use collab::StoreInfo;
pub use connect::ConnectOutcome;
pub use event::{AgentEvent, Events};
pub use peers::{DiscoveredAgent, PeerInfo};
pub use presence::PresenceEvents;
pub use signing::{AppSignature, AppSignatureError};
pub use stats::{AgentStats, DriverStats};
pub use subscription::{Message, Subscription};

/// A handle to a running agent: one driver task owns the protocol [`Node`](x0x_proto::Node) and the QUIC
/// endpoint; every method sends it a request and awaits the answer.
///
/// Cheap to clone; all clones drive the same agent. When the last clone is dropped the driver
/// shuts down by itself; [`Agent::shutdown`] does it explicitly and waits for it.
#[derive(Debug)]
pub struct Agent<R: Runtime> {
    commands: async_channel::Sender<Command>,
    /// The publish queue ([`PUBLISH_QUEUE`](crate::driver::PUBLISH_QUEUE) slots).
    publishes: async_channel::Sender<PublishItem>,
    max_payload_len: usize,
    direct_rx: async_channel::Receiver<DirectMessage>,
    runtime: Arc<R>,
    bound: SocketAddr,
    agent_id: AgentId,
    machine_id: MachineId,
    user_id: Option<UserId>,
    heartbeat: Option<Duration>,
    /// The agent key, for application signatures (the node holds its own copy).
    signer: AgentKeypair,
    kem_public_key: KemPublicKey,
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
            signer: self.signer.clone(),
            kem_public_key: self.kem_public_key.clone(),
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
    /// [`NetworkConfig::join_timeout`](crate::network::NetworkConfig::join_timeout).
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

    /// This agent's ML-KEM-768 public key (1184 bytes), which senders seal direct messages to.
    pub fn kem_public_key(&self) -> &KemPublicKey {
        &self.kem_public_key
    }

    /// Signs `payload` with the agent key under an application `context` string (at most 255
    /// bytes), domain-separated from every protocol signature.
    pub fn sign_application(
        &self,
        context: &str,
        payload: &[u8],
    ) -> std::result::Result<AppSignature, AppSignatureError> {
        signing::sign(&self.signer, context, payload)
    }

    /// Verifies an application signature. The key is `public_key` when given (checked against
    /// `agent` when both are), else the discovered agent's. Returns the signer's agent id;
    /// the outer `Err` only when the agent has shut down.
    pub async fn verify_application(
        &self,
        agent: Option<AgentId>,
        public_key: Option<&[u8]>,
        context: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<std::result::Result<AgentId, AppSignatureError>> {
        let key = match (public_key, agent) {
            (Some(bytes), _) => match signing::parse_key(bytes) {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            },
            (None, Some(a)) if a == self.agent_id => self.signer.public_key().clone(),
            (None, Some(a)) => {
                match self
                    .discovery(|reply| DiscoveryCommand::AgentKey { agent: a, reply })
                    .await?
                {
                    Some(k) => k,
                    None => return Ok(Err(AppSignatureError::UnknownSigner)),
                }
            }
            (None, None) => return Ok(Err(AppSignatureError::UnknownSigner)),
        };
        Ok(signing::verify(agent, &key, context, payload, signature))
    }

    /// Connects to the machine `agent` runs on: from the discovery cache, else after a
    /// lookup ([`Agent::find_agent`]). Waits until the connection is up, or for the dial
    /// timeout.
    pub async fn connect_agent(&self, agent: AgentId) -> Result<ConnectOutcome> {
        let first = self
            .request(|reply| Command::ConnectAgent { agent, reply })
            .await?;
        if first != ConnectOutcome::NotFound {
            return Ok(first);
        }
        if self.find_agent(agent).await?.is_none() {
            return Ok(ConnectOutcome::NotFound);
        }
        self.request(|reply| Command::ConnectAgent { agent, reply })
            .await
    }

    /// Opens a connection to `machine` at the first of `addrs` unless one is up or being
    /// made (e.g. from an agent card). Returns at once.
    pub async fn connect_machine(&self, machine: MachineId, addrs: Vec<SocketAddr>) -> Result<()> {
        self.request(|reply| Command::ConnectMachine {
            machine,
            addrs,
            reply,
        })
        .await
    }

    /// Changes the contact store (add, trust level, identity type, machines, pinning,
    /// revocation). The change is applied at once on every path; save
    /// [`Agent::trust_state`] to keep it (an [`AgentEvent::TrustChanged`] says when).
    pub async fn change_trust(&self, change: TrustChange) -> Result<TrustApplied> {
        self.request(|reply| Command::ChangeTrust { change, reply })
            .await?
    }

    /// The contact store: every contact and revocation.
    pub async fn trust_state(&self) -> Result<TrustState> {
        self.request(Command::TrustState).await
    }

    /// The trust evaluator's decision for something `agent` sends from `machine`.
    pub async fn evaluate_trust(
        &self,
        agent: AgentId,
        machine: MachineId,
    ) -> Result<TrustDecision> {
        self.request(|reply| Command::EvaluateTrust {
            agent,
            machine,
            reply,
        })
        .await
    }

    /// Every live discovered agent, blocked ones included ([`Agent::discovered_agents`] hides
    /// them).
    pub async fn discovered_agents_all(&self) -> Result<Vec<DiscoveredAgent>> {
        self.discovery(DiscoveryCommand::DiscoveredAll).await
    }

    /// This agent's card: its signed identity and KEM announcements as one encoded frame, which
    /// another agent imports with [`Agent::import_agent_card`] to reach it without waiting
    /// for discovery.
    pub async fn agent_card(&self) -> Result<Bytes> {
        self.request(Command::AgentCard).await
    }

    /// Verifies and caches the records of another agent's card, as if they had arrived by
    /// gossip. Returns the agent the card is for.
    pub async fn import_agent_card(&self, card: &[u8]) -> Result<AgentId> {
        let card = Bytes::copy_from_slice(card);
        self.request(|reply| Command::ImportCard { card, reply })
            .await?
    }

    /// The addresses this agent tells peers and announces: where peers see it (behind a NAT,
    /// its public address, once a peer reported it), then its listen address.
    pub async fn advertised_addrs(&self) -> Result<Vec<SocketAddr>> {
        self.request(Command::AdvertisedAddrs).await
    }

    /// The peer cache, best first, with each entry's quality: what to save and give back to
    /// [`AgentBuilder::with_peer_cache`] at the next start.
    pub async fn peer_cache(&self) -> Result<Vec<x0x_proto::peer_cache::ScoredPeer>> {
        self.request(Command::PeerCache).await
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
    /// meanwhile are signed together, one signature per batch ([`Node::publish_batch`](x0x_proto::Node::publish_batch)).
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

    /// Every bounded table and queue of the node with its size and cap
    /// ([`Node::table_sizes`](x0x_proto::Node::table_sizes)).
    pub async fn table_sizes(&self) -> Result<Vec<TableSize>> {
        self.request(Command::TableSizes).await
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

/// Direct messages queued for `recv_direct` before more are dropped.
const DIRECT_QUEUE: usize = 1024;
