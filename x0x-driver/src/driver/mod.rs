//! The driver task: the one owner of the [`Node`] and the QUIC endpoint.
//!
//! It waits on three things — a command from an `Agent` handle, an event from a connection
//! task, the node's next timeout — feeds each into the node with the current `Time`, and
//! after every input drains the node's four outputs: frames go to the per-connection writer
//! queues, dials and closes are carried out, events go to subscribers and watchers. It makes
//! no protocol decision of its own; the only rule it adds is transport hygiene (one tracked
//! connection per machine, frame-length limit, bounded queues that drop and count).
//!
//! This file holds the task's state and its loop; the rest follows the loop's inputs and
//! outputs: `command` (requests from `Agent` handles), `publish` (batched publishes and
//! backpressure), `connection` (accept loop, dials, what connection tasks report), `output`
//! (the node's transmits, actions and events) and `shutdown`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;
use tracing::{Instrument, info, info_span};
use x0x_proto::direct::{DirectMessage, DirectReceipt, RequestId};
use x0x_proto::node::{Delivery, Direction, QueryId};
use x0x_proto::wire::{MessageId, TopicId};
use x0x_proto::{AgentId, MachineId, Node};

use crate::agent::{AgentEvent, DriverStats};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::lan::Lan;
use crate::network::NetworkConfig;
use crate::runtime::{Reply, Runtime, TaskGuard, TaskTracker, spawn_tracked};
use crate::transport::{ConnEvent, ConnId, WriterMsg};

mod command;
mod connection;
mod output;
mod presence;
mod publish;
mod shutdown;

pub(crate) use command::{Command, DiscoveryCommand, NodeCall, SubId};
use connection::accept_loop;
pub(crate) use presence::PresenceCommand;
use publish::queued_batch;
pub(crate) use publish::{PUBLISH_QUEUE, PublishItem};

/// Most `connect_agent` calls waiting for their connection at once; more are answered
/// `Unreachable` at once.
pub(crate) const MAX_CONNECT_WAITERS: usize = 256;

/// A `connect_agent` call waiting for its connection.
#[derive(Debug)]
pub(crate) struct ConnectWaiter {
    deadline: Instant,
    machine: MachineId,
    addr: SocketAddr,
    reply: Reply<crate::agent::ConnectOutcome>,
}

/// Capacity of the command queue from `Agent` handles.
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Capacity of the queue from connection tasks (frames wait here: backpressure to QUIC).
/// With frames of at most `MAX_FRAME_LEN` (256 KiB) this bounds it to 64 MiB in the worst
/// case; real frames are mostly well under 2 KiB.
const CONN_EVENT_QUEUE: usize = 256;

/// Everything the driver task starts with.
#[derive(Debug)]
pub(crate) struct DriverParts {
    pub(crate) node: Node,
    pub(crate) endpoint: quinn::Endpoint,
    /// Makes each connection's TLS configuration.
    pub(crate) tls: crate::tls::ConnectionTls,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) clock: Clock,
    pub(crate) net: NetworkConfig,
    /// Where delivered direct messages go (the agent's `recv_direct` queue).
    pub(crate) direct_tx: async_channel::Sender<DirectMessage>,
}

/// Starts the driver and the accept loop; returns the command and publish senders.
pub(crate) fn spawn(
    parts: DriverParts,
) -> (
    async_channel::Sender<Command>,
    async_channel::Sender<PublishItem>,
) {
    let (cmd_tx, cmd_rx) = async_channel::bounded(COMMAND_QUEUE);
    let (pub_tx, pub_rx) = async_channel::bounded(PUBLISH_QUEUE);
    let (ev_tx, ev_rx) = async_channel::bounded(CONN_EVENT_QUEUE);
    let all = TaskTracker::new();
    let writers = TaskTracker::new();
    let rt = parts.runtime.clone();
    let span = info_span!("x0x", machine = %parts.node.machine_id());

    spawn_tracked(
        &*rt,
        all.guard(),
        accept_loop(
            rt.clone(),
            parts.endpoint.clone(),
            ev_tx.clone(),
            all.guard(),
            parts.tls.clone(),
        )
        .instrument(span.clone()),
    );
    let lan = parts
        .net
        .lan_discovery
        .then(|| {
            let bound = parts.endpoint.local_addr().ok()?;
            Lan::start(
                &*rt,
                all.guard(),
                parts.node.machine_id(),
                bound,
                ev_tx.clone(),
            )
        })
        .flatten();
    let driver = Driver {
        lan,
        node: parts.node,
        rt: rt.clone(),
        clock: parts.clock,
        net: parts.net,
        endpoint: parts.endpoint,
        tls: parts.tls,
        events_tx: ev_tx,
        task_guard: all.guard(),
        writer_guard: writers.guard(),
        conns: HashMap::new(),
        next_conn: 0,
        fresh: None,
        agents: HashMap::new(),
        subs: HashMap::new(),
        next_sub: 0,
        watchers: Vec::new(),
        join_waiters: Vec::new(),
        connect_waiters: Vec::new(),
        queries: HashMap::new(),
        held_publishes: Vec::new(),
        direct_tx: parts.direct_tx,
        direct_waiters: HashMap::new(),
        presence_queries: HashMap::new(),
        stats: DriverStats::default(),
    };
    // The driver task itself is not tracked: it is the one that waits for the others.
    rt.spawn(Box::pin(
        driver
            .run(cmd_rx, pub_rx, ev_rx, all, writers)
            .instrument(span),
    ));
    (cmd_tx, pub_tx)
}
/// A connection the node tracks.
#[derive(Debug)]
struct ConnEntry {
    id: ConnId,
    conn: quinn::Connection,
    queue: async_channel::Sender<WriterMsg>,
    /// Bytes of frames in `queue` (shared with the writer).
    queued: Arc<AtomicUsize>,
    /// Set while a publish waits for this writer to drain (see [`DrainWatch`]).
    drain_wanted: Arc<AtomicBool>,
    addr: SocketAddr,
    direction: Direction,
    /// The key-exchange group its handshake used (`X25519MLKEM768`).
    key_exchange: String,
}

enum Wake {
    Command(Option<Command>),
    Publish(Option<PublishItem>),
    Conn(Option<ConnEvent>),
    Timer,
}

struct Driver {
    node: Node,
    /// LAN discovery, when on and available.
    lan: Option<Lan>,
    rt: Arc<dyn Runtime>,
    clock: Clock,
    net: NetworkConfig,
    endpoint: quinn::Endpoint,
    tls: crate::tls::ConnectionTls,
    events_tx: async_channel::Sender<ConnEvent>,
    task_guard: TaskGuard,
    writer_guard: TaskGuard,
    /// At most one connection per machine: the one the node tracks.
    conns: HashMap<MachineId, ConnEntry>,
    next_conn: ConnId,
    /// A second connection to an already-connected machine, while the node decides on it.
    fresh: Option<(MachineId, quinn::Connection)>,
    /// Agent ids from `PeerUp`, for [`PeerInfo`].
    agents: HashMap<MachineId, AgentId>,
    subs: HashMap<TopicId, Vec<(SubId, async_channel::Sender<Delivery>)>>,
    next_sub: SubId,
    watchers: Vec<async_channel::Sender<AgentEvent>>,
    join_waiters: Vec<(Instant, Reply<Result<()>>)>,
    connect_waiters: Vec<ConnectWaiter>,
    /// Discovery queries waiting for the node's `QueryFinished` (the node ends every query:
    /// its rings and rendezvous wait have deadlines).
    queries: HashMap<QueryId, Reply<Result<Option<Vec<SocketAddr>>>>>,
    /// Publishes answered once the congested send queues drain (backpressure).
    held_publishes: Vec<(Reply<Result<MessageId>>, Result<MessageId>)>,
    direct_tx: async_channel::Sender<DirectMessage>,
    /// `send_direct` calls waiting for their receipt (bounded by the node's
    /// `max_outstanding`: every entry ends with a receipt or a failure event).
    direct_waiters: HashMap<RequestId, Reply<Result<DirectReceipt>>>,
    /// FOAF queries waiting for the node's `PresenceQueryFinished` (bounded by the node's
    /// `max_pending_queries`).
    presence_queries: HashMap<x0x_proto::presence::PresenceQueryId, presence::PresenceWaiter>,
    stats: DriverStats,
}

impl Driver {
    async fn run(
        mut self,
        cmd_rx: async_channel::Receiver<Command>,
        pub_rx: async_channel::Receiver<PublishItem>,
        ev_rx: async_channel::Receiver<ConnEvent>,
        all: TaskTracker,
        writers: TaskTracker,
    ) {
        info!(addr = ?self.endpoint.local_addr().ok(), agent = %self.node.agent_id(), "driver started");
        let mut timer = self.rt.quinn_runtime().new_timer(self.next_deadline());
        let reply = loop {
            timer.as_mut().reset(self.next_deadline());
            // Backpressure: while a peer's send queue is more than half full, publishes stay
            // in their queue (the writer's drain notice wakes this loop again).
            let take_publishes = !self.congested();
            let wake = future::race(
                async { Wake::Command(cmd_rx.recv().await.ok()) },
                future::race(
                    async {
                        if take_publishes {
                            Wake::Publish(pub_rx.recv().await.ok())
                        } else {
                            future::pending().await
                        }
                    },
                    future::race(async { Wake::Conn(ev_rx.recv().await.ok()) }, async {
                        future::poll_fn(|cx| match timer.as_mut().poll(cx) {
                            Poll::Ready(()) => Poll::Ready(Wake::Timer),
                            Poll::Pending => Poll::Pending,
                        })
                        .await
                    }),
                ),
            )
            .await;
            match wake {
                Wake::Command(Some(Command::Shutdown(reply))) => break Some(reply),
                Wake::Command(Some(cmd)) => {
                    // Connection events already queued come first: a command (stats, a
                    // lookup) then sees everything that happened before it was sent.
                    while let Ok(ev) = ev_rx.try_recv() {
                        self.on_conn_event(ev);
                    }
                    self.on_command(cmd);
                }
                // Every `Agent` handle is gone: nobody can use this agent any more.
                Wake::Command(None) => break None,
                Wake::Publish(Some(first)) => {
                    // Everything that queued up while the driver was busy goes out under one
                    // signature (`Node::publish_batch`).
                    self.publish(queued_batch(Some(first), &pub_rx));
                }
                Wake::Conn(Some(ev)) => self.on_conn_event(ev),
                Wake::Publish(None) | Wake::Conn(None) | Wake::Timer => {}
            }
            self.on_tick();
        };
        // Publishes queued before the shutdown request still go out (they were accepted).
        pub_rx.close();
        loop {
            let items = queued_batch(None, &pub_rx);
            if items.is_empty() {
                break;
            }
            self.publish(items);
        }
        self.shutdown(cmd_rx, ev_rx, all, writers).await;
        if let Some(reply) = reply {
            reply.send(());
        }
    }

    fn next_deadline(&self) -> Instant {
        let node = self.node.poll_timeout().map(|t| self.clock.instant_of(t));
        let join = self.join_waiters.iter().map(|(d, _)| *d).min();
        let connect = self.connect_waiters.iter().map(|w| w.deadline).min();
        [node, join, connect]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| self.rt.now() + Duration::from_secs(3600))
    }

    /// Fires the node's timers and the join deadlines that are due.
    fn on_tick(&mut self) {
        let now = self.clock.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
            self.drain();
        }
        if !self.join_waiters.is_empty() {
            let at = self.rt.now();
            let timeout = self.net.join_timeout;
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.join_waiters)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= at);
            self.join_waiters = kept;
            for (_, reply) in expired {
                reply.send(Err(Error::JoinTimeout(timeout)));
            }
        }
        if !self.connect_waiters.is_empty() {
            let at = self.rt.now();
            self.resolve_connects(
                |w| w.deadline <= at,
                |_| crate::agent::ConnectOutcome::Unreachable,
            );
        }
    }

    /// Answers the `connect_agent` waiters `which` selects with `outcome`.
    fn resolve_connects(
        &mut self,
        which: impl Fn(&ConnectWaiter) -> bool,
        outcome: impl Fn(&ConnectWaiter) -> crate::agent::ConnectOutcome,
    ) {
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.connect_waiters)
            .into_iter()
            .partition(|w| which(w));
        self.connect_waiters = kept;
        for w in done {
            let o = outcome(&w);
            w.reply.send(o);
        }
    }
}
