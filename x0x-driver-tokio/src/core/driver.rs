//! The driver task: the one owner of the [`Node`] and the QUIC endpoint.
//!
//! It waits on three things — a command from an `Agent` handle, an event from a connection
//! task, the node's next timeout — feeds each into the node with the current `Time`, and
//! after every input drains the node's four outputs: frames go to the per-connection writer
//! queues, dials and closes are carried out, events go to subscribers and watchers. It makes
//! no protocol decision of its own; the only rule it adds is transport hygiene (one tracked
//! connection per machine, frame-length limit, bounded queues that drop and count).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use tracing::{Instrument, debug, info, info_span, warn};
use x0x_proto::direct::{DirectMessage, DirectOptions, DirectReceipt, RequestId};
use x0x_proto::node::{Action, CloseReason, Delivery, Direction, Event, QueryId, Transmit};
use x0x_proto::wire::{MessageId, TopicId};
use x0x_proto::{AgentId, MachineId, Node};

use super::agent::{AgentEvent, AgentStats, DiscoveredAgent, DriverStats, PeerInfo};
use super::clock::Clock;
use super::error::{Error, Result};
use super::network::NetworkConfig;
use super::runtime::{Reply, Runtime, TaskGuard, TaskTracker, spawn_tracked, timeout};
use super::tls;
use super::transport::{self, CloseCode, ConnEvent, ConnId, DrainWatch, WriterMsg};
use x0x_proto::identity::UserId;

/// Capacity of the command queue from `Agent` handles.
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Capacity of the publish queue: a publisher that runs this far ahead of the driver waits
/// (backpressure), and what queued up while the driver was busy is signed as one batch.
pub(crate) const PUBLISH_QUEUE: usize = 1024;
/// Capacity of the queue from connection tasks (frames wait here: backpressure to QUIC).
/// With frames of at most `MAX_FRAME_LEN` (256 KiB) this bounds it to 64 MiB in the worst
/// case; real frames are mostly well under 2 KiB.
const CONN_EVENT_QUEUE: usize = 256;
/// Capacity of an event watcher's queue.
const WATCHER_QUEUE: usize = 256;
/// How long shutdown waits for writers to flush, then for every task to end.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
const SHUTDOWN_TASKS: Duration = Duration::from_secs(2);

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
    Discovery(DiscoveryCommand),
    SendDirect {
        to: AgentId,
        payload: Bytes,
        options: DirectOptions,
        reply: Reply<Result<DirectReceipt>>,
    },
    Shutdown(Reply<()>),
}

/// A publish, on its own queue so the driver can take every queued one at once and sign them
/// as one batch, and can stop taking them while a peer's send queue is congested.
#[derive(Debug)]
pub(crate) struct PublishItem {
    pub(crate) topic: TopicId,
    pub(crate) payload: Bytes,
    /// Where the message id goes; `None` for [`crate::core::Agent::publish`], which returns
    /// once the item is queued.
    pub(crate) reply: Option<Reply<Result<MessageId>>>,
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
}

/// Everything the driver task starts with.
#[derive(Debug)]
pub(crate) struct DriverParts {
    pub(crate) node: Node,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) clock: Clock,
    pub(crate) net: NetworkConfig,
    /// Where delivered direct messages go (the agent's `recv_direct` queue).
    pub(crate) direct_tx: async_channel::Sender<DirectMessage>,
}

/// `first` and what is already queued behind it, up to one batch (`wire::MAX_BATCH`).
fn queued_batch(
    first: Option<PublishItem>,
    rx: &async_channel::Receiver<PublishItem>,
) -> Vec<PublishItem> {
    first
        .into_iter()
        .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        .take(x0x_proto::wire::MAX_BATCH)
        .collect()
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
        )
        .instrument(span.clone()),
    );
    let driver = Driver {
        node: parts.node,
        rt: rt.clone(),
        clock: parts.clock,
        net: parts.net,
        endpoint: parts.endpoint,
        client_config: parts.client_config,
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
        queries: HashMap::new(),
        held_publishes: Vec::new(),
        direct_tx: parts.direct_tx,
        direct_waiters: HashMap::new(),
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

/// Accepts incoming connections until the endpoint closes; one handshake task each.
async fn accept_loop(
    rt: Arc<dyn Runtime>,
    endpoint: quinn::Endpoint,
    events: async_channel::Sender<ConnEvent>,
    guard: TaskGuard,
) {
    while let Some(incoming) = endpoint.accept().await {
        let events = events.clone();
        let remote = incoming.remote_address();
        spawn_tracked(&*rt, guard.clone(), async move {
            let ev = match incoming.await {
                Ok(conn) => identified(conn, remote, Direction::Inbound)
                    .unwrap_or_else(|error| ConnEvent::HandshakeFailed { remote, error }),
                Err(e) => ConnEvent::HandshakeFailed {
                    remote,
                    error: e.to_string(),
                },
            };
            let _ = events.send(ev).await;
        });
    }
    debug!("accept loop ended");
}

/// The event for a finished handshake, or why it is unusable.
fn identified(
    conn: quinn::Connection,
    addr: SocketAddr,
    direction: Direction,
) -> Result<ConnEvent, String> {
    match tls::peer_machine_id(&conn) {
        Some(peer) => Ok(ConnEvent::Established {
            conn,
            peer,
            addr,
            direction,
        }),
        None => {
            conn.close(CloseCode::ProtocolViolation.varint(), b"no machine key");
            Err("handshake proved no machine key".into())
        }
    }
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
}

enum Wake {
    Command(Option<Command>),
    Publish(Option<PublishItem>),
    Conn(Option<ConnEvent>),
    Timer,
}

struct Driver {
    node: Node,
    rt: Arc<dyn Runtime>,
    clock: Clock,
    net: NetworkConfig,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
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
    /// Discovery queries waiting for the node's `QueryFinished` (the node ends every query:
    /// its rings and rendezvous wait have deadlines).
    queries: HashMap<QueryId, Reply<Result<Option<Vec<SocketAddr>>>>>,
    /// Publishes answered once the congested send queues drain (backpressure).
    held_publishes: Vec<(Reply<Result<MessageId>>, Result<MessageId>)>,
    direct_tx: async_channel::Sender<DirectMessage>,
    /// `send_direct` calls waiting for their receipt (bounded by the node's
    /// `max_outstanding`: every entry ends with a receipt or a failure event).
    direct_waiters: HashMap<RequestId, Reply<Result<DirectReceipt>>>,
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
        [node, join]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// Fires the node's timers and the join deadlines that are due.
    fn on_tick(&mut self) {
        let now = self.clock.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
            self.drain();
        }
        if !self.join_waiters.is_empty() {
            let at = Instant::now();
            let timeout = self.net.join_timeout;
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.join_waiters)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= at);
            self.join_waiters = kept;
            for (_, reply) in expired {
                reply.send(Err(Error::JoinTimeout(timeout)));
            }
        }
    }

    // ----- commands -----

    fn on_command(&mut self, cmd: Command) {
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
                    let deadline = Instant::now() + self.net.join_timeout;
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
                broadcast: self.node.stats().broadcast,
                driver: self.stats.clone(),
                connections: self.conns.len(),
            }),
            Command::Discovery(cmd) => self.on_discovery(cmd),
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
        }
        self.drain();
    }

    fn send_cap(&self) -> usize {
        self.net
            .send_queue_bytes
            .max(x0x_proto::wire::MAX_FRAME_LEN)
    }

    /// Whether some connection's send queue is over half full; marks each such writer so it
    /// reports when it drained.
    /// Publishes `items` under one signature per batch and answers those that wait for their
    /// message id.
    fn publish(&mut self, items: Vec<PublishItem>) {
        let now = self.clock.now();
        let (work, replies): (Vec<_>, Vec<_>) = items
            .into_iter()
            .map(|i| ((i.topic, i.payload), i.reply))
            .unzip();
        self.stats.publish_batches += 1;
        let results = self.node.publish_batch(now, work);
        self.drain();
        let congested = self.congested();
        for (result, reply) in results.into_iter().zip(replies) {
            let result = result.map_err(Error::from);
            match reply {
                // Backpressure for callers that wait: while a peer's send queue is more than
                // half full, the answer waits for it to drain.
                Some(reply) if result.is_ok() && congested => {
                    self.stats.publishes_held += 1;
                    self.held_publishes.push((reply, result));
                }
                Some(reply) => reply.send(result),
                None => {
                    if let Err(e) = result {
                        // `Agent::publish` checked the size before queueing, so only a
                        // node-side refusal lands here; count it rather than lose it silently.
                        self.stats.publishes_refused += 1;
                        warn!(error = %e, "queued publish refused");
                    }
                }
            }
        }
    }

    fn congested(&self) -> bool {
        let (frames, bytes) = (self.net.send_queue_frames.max(1), self.send_cap());
        let mut any = false;
        for e in self.conns.values() {
            if e.queue.len() > frames / 2 || e.queued.load(Ordering::Relaxed) > bytes / 2 {
                e.drain_wanted.store(true, Ordering::Relaxed);
                any = true;
            }
        }
        any
    }

    /// Answers the held publishes once no queue is congested (or the connection is gone).
    fn release_publishes(&mut self) {
        if !self.held_publishes.is_empty() && !self.congested() {
            for (reply, result) in self.held_publishes.drain(..) {
                reply.send(result);
            }
        }
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
                }
            })
            .collect()
    }

    // ----- connection events -----

    fn on_conn_event(&mut self, ev: ConnEvent) {
        let now = self.clock.now();
        match ev {
            ConnEvent::Established {
                conn,
                peer,
                addr,
                direction,
            } => {
                match direction {
                    Direction::Outbound => self.stats.connections_dialed += 1,
                    Direction::Inbound => self.stats.connections_accepted += 1,
                }
                info!(%peer, %addr, ?direction, "connection up");
                if self.conns.contains_key(&peer) {
                    // One connection per machine: offer the newcomer to the node, which keeps
                    // the one it tracks and asks for this one to be closed.
                    self.fresh = Some((peer, conn));
                    self.node.handle_connected(now, peer, addr, direction);
                    self.drain();
                    if let Some((_, conn)) = self.fresh.take() {
                        self.stats.duplicates_closed += 1;
                        conn.close(CloseCode::Duplicate.varint(), b"duplicate");
                    }
                } else {
                    self.track(conn, peer, addr, direction);
                    self.node.handle_connected(now, peer, addr, direction);
                    self.drain();
                }
            }
            ConnEvent::DialFailed { addr, error } => {
                self.stats.dials_failed += 1;
                info!(%addr, %error, "dial failed");
                self.node.handle_dial_failed(now, addr);
                self.drain();
            }
            ConnEvent::HandshakeFailed { remote, error } => {
                self.stats.handshakes_failed += 1;
                info!(%remote, %error, "incoming handshake failed");
            }
            ConnEvent::Frame { peer, conn, bytes } => {
                if !self.is_current(&peer, conn) {
                    self.stats.stale_conn_events += 1;
                    return;
                }
                if let Err(e) = self.node.handle_frame(now, peer, &bytes) {
                    debug!(%peer, error = %e, "frame refused");
                }
                self.drain();
            }
            ConnEvent::FrameTooLarge { peer, conn, len } => {
                self.stats.frames_too_large += 1;
                warn!(%peer, len, "length prefix above the frame limit; connection closed");
                if self.is_current(&peer, conn) {
                    self.conns.remove(&peer);
                    self.node.handle_disconnected(now, peer);
                    self.drain();
                }
            }
            ConnEvent::Drained => self.release_publishes(),
            ConnEvent::Closed { peer, conn, reason } => {
                if self.is_current(&peer, conn) {
                    info!(%peer, %reason, "connection closed by peer or lost");
                    if let Some(entry) = self.conns.remove(&peer) {
                        entry.conn.close(CloseCode::Normal.varint(), b"");
                    }
                    self.node.handle_disconnected(now, peer);
                    self.drain();
                    self.release_publishes();
                }
            }
        }
    }

    fn is_current(&self, peer: &MachineId, conn: ConnId) -> bool {
        self.conns.get(peer).is_some_and(|e| e.id == conn)
    }

    /// Records a connection and starts its reader and writer.
    fn track(
        &mut self,
        conn: quinn::Connection,
        peer: MachineId,
        addr: SocketAddr,
        direction: Direction,
    ) {
        let id = self.next_conn;
        self.next_conn += 1;
        let (queue, rx) = async_channel::bounded(self.net.send_queue_frames.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let span = info_span!("conn", %peer, id);
        let rt = self.rt.clone();
        let (wconn, wqueued) = (conn.clone(), queued.clone());
        let watch = DrainWatch {
            wanted: Arc::new(AtomicBool::new(false)),
            events: self.events_tx.clone(),
            frames_cap: self.net.send_queue_frames.max(1),
            bytes_cap: self.send_cap(),
        };
        let drain_wanted = watch.wanted.clone();
        spawn_tracked(
            &*self.rt,
            self.writer_guard.clone(),
            async move { transport::writer(&*rt, wconn, rx, wqueued, watch).await }
                .instrument(span.clone()),
        );
        spawn_tracked(
            &*self.rt,
            self.task_guard.clone(),
            transport::reader(conn.clone(), peer, id, self.events_tx.clone()).instrument(span),
        );
        self.conns.insert(
            peer,
            ConnEntry {
                id,
                conn,
                queue,
                queued,
                drain_wanted,
                addr,
                direction,
            },
        );
    }

    // ----- node outputs -----

    /// Drains the node's outputs until all four queues are empty. Handling an action can feed
    /// the node again (a failed dial, a disconnect), so this loops.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.node.poll_transmit() {
                progressed = true;
                self.transmit(t);
            }
            while let Some(a) = self.node.poll_action() {
                progressed = true;
                self.on_action(a);
            }
            while let Some(e) = self.node.poll_event() {
                progressed = true;
                self.on_event(e);
            }
            if !progressed {
                break;
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let Some(entry) = self.conns.get(&t.to) else {
            self.stats.transmits_without_connection += 1;
            return;
        };
        let n = t.frame.len();
        // Reserve the bytes first so the writer's subtraction can never come before it.
        let before = entry.queued.fetch_add(n, Ordering::Relaxed);
        let cap = self
            .net
            .send_queue_bytes
            .max(x0x_proto::wire::MAX_FRAME_LEN);
        let refused = if before + n > cap {
            Some(true)
        } else {
            match entry.queue.try_send(WriterMsg::Frame(t.frame)) {
                Ok(()) => None,
                Err(e) => Some(e.is_full()),
            }
        };
        match refused {
            None => {}
            Some(full) => {
                entry.queued.fetch_sub(n, Ordering::Relaxed);
                if full {
                    self.stats.send_queue_full_drops += 1;
                    debug!(peer = %t.to, kind = %t.kind, "send queue full; frame dropped");
                } else {
                    self.stats.transmits_without_connection += 1;
                }
            }
        }
    }

    fn on_action(&mut self, action: Action) {
        let now = self.clock.now();
        match action {
            Action::Dial { addr, expect } => self.dial(addr, expect),
            Action::Close { peer, reason } => {
                let (code, graceful) = CloseCode::of(&reason);
                if reason == CloseReason::Duplicate {
                    match self.fresh.take() {
                        Some((p, conn)) if p == peer => {
                            self.stats.duplicates_closed += 1;
                            info!(%peer, "duplicate connection closed");
                            conn.close(code.varint(), b"duplicate");
                        }
                        other => {
                            self.fresh = other;
                            warn!(%peer, "duplicate close for no new connection; ignored");
                        }
                    }
                    return;
                }
                info!(%peer, ?reason, "closing connection");
                if let Some(entry) = self.conns.remove(&peer) {
                    let hard = || entry.conn.close(code.varint(), b"");
                    if !graceful || entry.queue.try_send(WriterMsg::Close(code)).is_err() {
                        hard();
                    }
                    self.node.handle_disconnected(now, peer);
                }
            }
            other => debug!(action = ?other, "unknown action ignored"),
        }
    }

    fn dial(&mut self, addr: SocketAddr, expect: Option<MachineId>) {
        let name = tls::server_name(expect.as_ref());
        debug!(%addr, ?expect, "dialling");
        let connecting = match self
            .endpoint
            .connect_with(self.client_config.clone(), addr, &name)
        {
            Ok(c) => c,
            Err(e) => {
                self.stats.dials_failed += 1;
                info!(%addr, error = %e, "dial refused locally");
                self.node.handle_dial_failed(self.clock.now(), addr);
                return;
            }
        };
        let rt = self.rt.clone();
        let events = self.events_tx.clone();
        let dial_timeout = self.net.dial_timeout;
        spawn_tracked(&*self.rt, self.task_guard.clone(), async move {
            let ev = match timeout(&*rt, dial_timeout, connecting).await {
                Some(Ok(conn)) => identified(conn, addr, Direction::Outbound)
                    .unwrap_or_else(|error| ConnEvent::DialFailed { addr, error }),
                Some(Err(e)) => ConnEvent::DialFailed {
                    addr,
                    error: e.to_string(),
                },
                None => ConnEvent::DialFailed {
                    addr,
                    error: "timed out".into(),
                },
            };
            let _ = events.send(ev).await;
        });
    }

    fn on_event(&mut self, event: Event) {
        let watched = match event {
            Event::PeerUp { peer, agent } => {
                info!(%peer, %agent, "peer up");
                self.agents.insert(peer, agent);
                Some(AgentEvent::PeerUp {
                    machine_id: peer,
                    agent_id: agent,
                })
            }
            Event::PeerDown { peer } => {
                info!(%peer, "peer down");
                self.agents.remove(&peer);
                Some(AgentEvent::PeerDown { machine_id: peer })
            }
            Event::NeighborUp { peer } => {
                debug!(%peer, "neighbour up");
                for (_, reply) in self.join_waiters.drain(..) {
                    reply.send(Ok(()));
                }
                Some(AgentEvent::NeighborUp { machine_id: peer })
            }
            Event::NeighborDown { peer, reason } => {
                debug!(%peer, ?reason, "neighbour down");
                Some(AgentEvent::NeighborDown { machine_id: peer })
            }
            Event::Message(d) => {
                self.deliver(d);
                None
            }
            Event::QueryFinished { query, found, .. } => {
                if let Some(reply) = self.queries.remove(&query) {
                    reply.send(Ok(found.map(|f| f.addresses)));
                }
                None
            }
            Event::AgentDiscovered { agent_id } => {
                debug!(agent = %agent_id, "agent discovered");
                Some(AgentEvent::AgentDiscovered { agent_id })
            }
            Event::DirectMessage(m) => {
                debug!(sender = %m.sender, path = ?m.path, "direct message");
                // The node has acknowledged it; a full queue means the application is not
                // reading, so it is dropped and counted rather than stalling the node.
                if self.direct_tx.try_send(m).is_err() {
                    self.stats.direct_dropped += 1;
                }
                None
            }
            Event::DirectReceipt(r) => {
                if let Some(reply) = self.direct_waiters.remove(&r.request_id) {
                    reply.send(Ok(r));
                }
                None
            }
            Event::DirectFailed {
                request_id, reason, ..
            } => {
                if let Some(reply) = self.direct_waiters.remove(&request_id) {
                    reply.send(Err(Error::DirectFailed(reason)));
                }
                None
            }
            other => {
                debug!(event = ?other, "unknown event ignored");
                None
            }
        };
        if let Some(ev) = watched {
            let before = self.watchers.len();
            self.watchers.retain(|w| w.try_send(ev.clone()).is_ok());
            self.stats.watchers_dropped += (before - self.watchers.len()) as u64;
        }
    }

    /// Hands a message to every subscriber of its topic. A subscriber whose buffer is full is
    /// dropped (its `recv` ends) and counted, so it cannot stall the node or the others.
    fn deliver(&mut self, d: Delivery) {
        debug!(topic = %d.topic, author = %d.author, hops = d.hops, "message");
        let Some(subs) = self.subs.get_mut(&d.topic) else {
            return;
        };
        let before = subs.len();
        subs.retain(|(_, tx)| match tx.try_send(d.clone()) {
            Ok(()) => true,
            Err(async_channel::TrySendError::Full(_)) => false,
            Err(async_channel::TrySendError::Closed(_)) => false,
        });
        let dropped = before - subs.len();
        if dropped > 0 {
            self.stats.subscribers_dropped += dropped as u64;
        }
        if subs.is_empty() {
            self.subs.remove(&d.topic);
            self.node.unsubscribe(self.clock.now(), d.topic);
        }
    }

    // ----- shutdown -----

    async fn shutdown(
        mut self,
        cmd_rx: async_channel::Receiver<Command>,
        ev_rx: async_channel::Receiver<ConnEvent>,
        all: TaskTracker,
        writers: TaskTracker,
    ) {
        info!("shutting down");
        // Requests still queued are dropped; their callers see `Error::Shutdown`.
        cmd_rx.close();
        self.node.shutdown(self.clock.now());
        self.drain();
        for (_, entry) in self.conns.drain() {
            if entry
                .queue
                .try_send(WriterMsg::Close(CloseCode::Normal))
                .is_err()
            {
                entry.conn.close(CloseCode::Normal.varint(), b"");
            }
        }
        for (_, reply) in self.join_waiters.drain(..) {
            reply.send(Err(Error::Shutdown));
        }
        for (_, reply) in self.queries.drain() {
            reply.send(Err(Error::Shutdown));
        }
        // Those messages were published; the caller learns it, as without backpressure.
        for (reply, result) in self.held_publishes.drain(..) {
            reply.send(result);
        }
        self.subs.clear();
        self.watchers.clear();
        // Readers blocked on a full event queue are released by closing it.
        ev_rx.close();
        let Self {
            rt,
            endpoint,
            events_tx,
            task_guard,
            writer_guard,
            ..
        } = self;
        drop((events_tx, task_guard, writer_guard));
        if !writers.wait(&*rt, SHUTDOWN_FLUSH).await {
            debug!("writers still flushing; closing the endpoint");
        }
        endpoint.close(CloseCode::Normal.varint(), b"shutdown");
        if !all.wait(&*rt, SHUTDOWN_TASKS).await {
            warn!("some connection tasks did not end in time");
        }
        let _ = timeout(&*rt, SHUTDOWN_FLUSH, endpoint.wait_idle()).await;
        info!("shut down");
    }
}
