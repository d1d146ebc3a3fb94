//! Requests from `Agent` handles and how the driver answers them: most are one node call.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tracing::warn;
use x0x_proto::direct::{DirectOptions, DirectReceipt};
use x0x_proto::identity::{PublicKey, UserId};
use x0x_proto::node::{ConnectStart, Delivery, Direction, TableSize, TrustApplied, TrustChange};
use x0x_proto::trust::{TrustDecision, TrustState};
use x0x_proto::wire::{self, Frame, TopicId};
use x0x_proto::{AgentId, MachineId};

use super::{ConnectWaiter, Driver, MAX_CONNECT_WAITERS};
use crate::agent::{AgentEvent, AgentStats, ConnectOutcome, DiscoveredAgent, PeerInfo};
use crate::error::CardError;
use crate::error::{Error, Result};
use crate::runtime::Reply;

/// Capacity of an event watcher's queue.
const WATCHER_QUEUE: usize = 256;

/// Identifies one subscription of a topic.
pub(crate) type SubId = u64;

/// A request from an `Agent` handle.
#[derive(Debug)]
pub(crate) enum Command {
    Join(Reply<Result<()>>),
    Subscribe {
        topic: TopicId,
        reply: Reply<(SubId, async_channel::Receiver<Delivery>)>,
    },
    Unsubscribe {
        topic: TopicId,
        id: SubId,
    },
    Peers(Reply<Vec<PeerInfo>>),
    Watch(Reply<async_channel::Receiver<AgentEvent>>),
    Stats(Reply<AgentStats>),
    TableSizes(Reply<Vec<TableSize>>),
    Discovery(DiscoveryCommand),
    SendDirect {
        to: AgentId,
        payload: Bytes,
        options: DirectOptions,
        reply: Reply<Result<DirectReceipt>>,
    },
    ConnectAgent {
        agent: AgentId,
        reply: Reply<ConnectOutcome>,
    },
    ConnectMachine {
        machine: MachineId,
        addrs: Vec<SocketAddr>,
        reply: Reply<()>,
    },
    AgentCard(Reply<Bytes>),
    ChangeTrust {
        change: TrustChange,
        reply: Reply<Result<TrustApplied>>,
    },
    TrustState(Reply<TrustState>),
    EvaluateTrust {
        agent: AgentId,
        machine: MachineId,
        reply: Reply<TrustDecision>,
    },
    ImportCard {
        card: Bytes,
        reply: Reply<Result<AgentId>>,
    },
    Presence(super::PresenceCommand),
    AdvertisedAddrs(Reply<Vec<SocketAddr>>),
    PeerCache(Reply<Vec<x0x_proto::peer_cache::ScoredPeer>>),
    /// A call on the node (the replicated stores' requests): it answers through the reply
    /// it captured.
    WithNode(NodeCall),
    Shutdown(Reply<()>),
}

/// What a [`NodeCall`] runs.
type NodeFn = Box<dyn FnOnce(&mut x0x_proto::Node, x0x_proto::Time) + Send>;

/// A call run on the node by the driver's task.
pub(crate) struct NodeCall(pub(crate) NodeFn);

impl std::fmt::Debug for NodeCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCall")
    }
}

/// Discovery requests: each is one node call; the two queries keep their reply until the
/// node's `QueryFinished` event answers it.
#[derive(Debug)]
pub(crate) enum DiscoveryCommand {
    Announce {
        include_user: bool,
        human_consent: bool,
        reply: Reply<Result<()>>,
    },
    Discovered(Reply<Result<Vec<DiscoveredAgent>>>),
    /// Blocked agents too.
    DiscoveredAll(Reply<Result<Vec<DiscoveredAgent>>>),
    FindAgent {
        agent: AgentId,
        reply: Reply<Result<Option<Vec<SocketAddr>>>>,
    },
    FindByUser {
        user: UserId,
        reply: Reply<Result<Vec<DiscoveredAgent>>>,
    },
    Advertise {
        validity_ms: u64,
        reply: Reply<Result<()>>,
    },
    Rendezvous {
        agent: AgentId,
        timeout: Duration,
        reply: Reply<Result<Option<Vec<SocketAddr>>>>,
    },
    /// A discovered agent's public key (for application signatures).
    AgentKey {
        agent: AgentId,
        reply: Reply<Result<Option<PublicKey>>>,
    },
}

impl Driver {
    pub(super) fn on_command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Join(reply) => {
                self.node.start(now);
                // Joining announces the agent (without its user: that needs consent) and
                // arms the heartbeat, as x0x does.
                if let Err(e) = self.node.announce_identity(now, false, false) {
                    warn!(error = %e, "announcement on join refused");
                }
                self.drain();
                if self.net.bootstrap_nodes.is_empty() || !self.node.active_view().is_empty() {
                    reply.send(Ok(()));
                } else {
                    let deadline = self.rt.now() + self.net.join_timeout;
                    self.join_waiters.push((deadline, reply));
                }
            }
            Command::Subscribe { topic, reply } => {
                let subs = self.subs.entry(topic).or_default();
                if subs.is_empty() {
                    self.node.subscribe(now, topic);
                }
                let (tx, rx) = async_channel::bounded(self.net.subscription_buffer.max(1));
                let id = self.next_sub;
                self.next_sub += 1;
                self.subs.entry(topic).or_default().push((id, tx));
                reply.send((id, rx));
                self.drain();
            }
            Command::Unsubscribe { topic, id } => {
                if let Some(subs) = self.subs.get_mut(&topic) {
                    subs.retain(|(sid, _)| *sid != id);
                    if subs.is_empty() {
                        self.subs.remove(&topic);
                        self.node.unsubscribe(now, topic);
                        self.drain();
                    }
                }
            }
            Command::Peers(reply) => reply.send(self.peers()),
            Command::Watch(reply) => {
                let (tx, rx) = async_channel::bounded(WATCHER_QUEUE);
                self.watchers.push(tx);
                reply.send(rx);
            }
            Command::Stats(reply) => reply.send(AgentStats {
                node: self.node.stats(),
                driver: self.stats.clone(),
                connections: self.conns.len(),
                // Each tracker also counts itself and the driver's own guard.
                tasks: (self.task_guard.alive() + self.writer_guard.alive()).saturating_sub(4),
            }),
            Command::TableSizes(reply) => reply.send(self.node.table_sizes()),
            Command::Discovery(cmd) => self.on_discovery(cmd),
            Command::Presence(cmd) => self.on_presence(cmd),
            Command::AdvertisedAddrs(reply) => reply.send(self.node.advertised_addrs()),
            Command::PeerCache(reply) => reply.send(self.node.peer_cache(now)),
            Command::SendDirect {
                to,
                payload,
                options,
                reply,
            } => {
                match self.node.send_direct_with(now, to, payload, options) {
                    // The receipt or failure event answers it.
                    Ok(id) => {
                        self.direct_waiters.insert(id, reply);
                    }
                    Err(e) => reply.send(Err(e.into())),
                }
                self.drain();
            }
            Command::ConnectAgent { agent, reply } => self.connect_agent(agent, reply),
            Command::ConnectMachine {
                machine,
                addrs,
                reply,
            } => {
                self.node.connect(now, machine, addrs);
                self.drain();
                reply.send(());
            }
            Command::AgentCard(reply) => {
                let records = self.node.agent_card(now);
                let frame: Frame = wire::SyncRecords { records }.into();
                // Two signed records are far under the frame limit.
                reply.send(frame.encode().unwrap_or_default());
            }
            Command::ImportCard { card, reply } => {
                let r = match Frame::decode(&card) {
                    Ok(Frame::SyncRecords(s)) => match s.records.iter().find_map(|r| {
                        (r.kind == wire::RecordKind::Announcement).then_some(r.signed.signer)
                    }) {
                        Some(x0x_proto::identity::SignerId::Agent(agent)) => self
                            .node
                            .import_agent_card(now, &s.records)
                            .map(|()| agent)
                            .map_err(|e| CardError::Rejected(e).into()),
                        _ => Err(CardError::NoIdentity.into()),
                    },
                    Ok(_) => Err(CardError::NotACard.into()),
                    Err(e) => Err(CardError::Decode(e).into()),
                };
                self.drain();
                reply.send(r);
            }
            Command::ChangeTrust { change, reply } => {
                let r = self.node.change_trust(now, change).map_err(Error::from);
                self.drain();
                reply.send(r);
            }
            Command::TrustState(reply) => reply.send(self.node.trust_state()),
            Command::EvaluateTrust {
                agent,
                machine,
                reply,
            } => reply.send(self.node.evaluate_trust(&agent, &machine)),
            Command::WithNode(call) => {
                (call.0)(&mut self.node, now);
                self.drain();
            }
            // Handled by the run loop.
            Command::Shutdown(reply) => reply.send(()),
        }
    }

    fn on_discovery(&mut self, cmd: DiscoveryCommand) {
        let now = self.clock.now();
        match cmd {
            DiscoveryCommand::Announce {
                include_user,
                human_consent,
                reply,
            } => {
                let r = self
                    .node
                    .announce_identity(now, include_user, human_consent)
                    .map_err(Error::from);
                reply.send(r);
            }
            DiscoveryCommand::Discovered(reply) => {
                let agents = self.node.discovered_agents(now);
                reply.send(Ok(agents.iter().map(DiscoveredAgent::from_proto).collect()));
            }
            DiscoveryCommand::DiscoveredAll(reply) => {
                let agents = self.node.all_discovered_agents(now);
                reply.send(Ok(agents.iter().map(DiscoveredAgent::from_proto).collect()));
            }
            DiscoveryCommand::FindAgent { agent, reply } => {
                let q = self.node.find_agent(now, agent);
                self.queries.insert(q, reply);
            }
            DiscoveryCommand::FindByUser { user, reply } => {
                let agents = self.node.find_agents_by_user(now, &user);
                reply.send(Ok(agents.iter().map(DiscoveredAgent::from_proto).collect()));
            }
            DiscoveryCommand::Advertise { validity_ms, reply } => {
                self.node
                    .advertise_identity(now, Duration::from_millis(validity_ms));
                reply.send(Ok(()));
            }
            DiscoveryCommand::Rendezvous {
                agent,
                timeout,
                reply,
            } => {
                let q = self.node.find_agent_rendezvous(now, agent, timeout);
                self.queries.insert(q, reply);
            }
            DiscoveryCommand::AgentKey { agent, reply } => {
                let key = self
                    .node
                    .discovered_agent(now, &agent)
                    .map(|a| a.agent_public_key);
                reply.send(Ok(key));
            }
        }
        self.drain();
    }

    /// Starts a connection to an agent's machine; the reply waits for `PeerUp`, a failed dial
    /// or the dial timeout.
    fn connect_agent(&mut self, agent: AgentId, reply: Reply<ConnectOutcome>) {
        let now = self.clock.now();
        match self.node.connect_agent(now, &agent) {
            ConnectStart::AlreadyConnected { addr, .. } => {
                reply.send(ConnectOutcome::AlreadyConnected(addr));
            }
            ConnectStart::NotFound => reply.send(ConnectOutcome::NotFound),
            ConnectStart::Dialing { machine, addr } => {
                if self.connect_waiters.len() >= MAX_CONNECT_WAITERS {
                    reply.send(ConnectOutcome::Unreachable);
                } else {
                    self.connect_waiters.push(ConnectWaiter {
                        deadline: self.rt.now() + self.net.dial_timeout + Duration::from_secs(1),
                        machine,
                        addr,
                        reply,
                    });
                }
            }
            _ => reply.send(ConnectOutcome::Unreachable),
        }
        self.drain();
    }

    fn peers(&self) -> Vec<PeerInfo> {
        self.node
            .connected_peers()
            .into_iter()
            .map(|machine_id| {
                let conn = self.conns.get(&machine_id);
                PeerInfo {
                    machine_id,
                    agent_id: self.agents.get(&machine_id).copied(),
                    addr: conn.map(|c| c.addr),
                    outbound: conn.map(|c| c.direction == Direction::Outbound),
                    key_exchange: conn.map(|c| c.key_exchange.clone()),
                }
            })
            .collect()
    }
}
