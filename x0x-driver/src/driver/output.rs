//! The node's outputs: frames to the writers, dials and closes, events to subscribers,
//! watchers and waiting callers.

use std::sync::atomic::Ordering;

use tracing::{debug, info, warn};
use x0x_proto::node::{Action, CloseReason, Delivery, Direction, Event, Transmit};

use super::Driver;
use crate::agent::AgentEvent;
use crate::error::Error;
use crate::transport::{CloseCode, WriterMsg};

impl Driver {
    /// Drains the node's outputs until all four queues are empty. Handling an action can feed
    /// the node again (a failed dial, a disconnect), so this loops.
    pub(super) fn drain(&mut self) {
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
        let refused = if before + n > self.send_cap() {
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

    fn on_event(&mut self, event: Event) {
        let watched = match event {
            Event::PeerUp { peer, agent } => {
                info!(%peer, %agent, "peer up");
                self.agents.insert(peer, agent);
                if !self.connect_waiters.is_empty() {
                    let conn = self.conns.get(&peer);
                    let addr = conn.map(|c| c.addr);
                    // The other machine dialled us while we were dialling it: our request
                    // reached it through a common peer (a punch), or it came by itself.
                    let inbound = conn.is_some_and(|c| c.direction == Direction::Inbound);
                    self.resolve_connects(
                        |w| w.machine == peer,
                        |w| {
                            let at = addr.unwrap_or(w.addr);
                            if inbound {
                                crate::agent::ConnectOutcome::Coordinated(at)
                            } else {
                                crate::agent::ConnectOutcome::Direct(at)
                            }
                        },
                    );
                }
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
            Event::NeighborSuspected { peer } => {
                debug!(%peer, "neighbour suspected");
                Some(AgentEvent::NeighborSuspected { machine_id: peer })
            }
            Event::NeighborDown { peer, reason } => {
                debug!(%peer, ?reason, "neighbour down");
                Some(AgentEvent::NeighborDown {
                    machine_id: peer,
                    reason,
                })
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
            Event::TrustChanged { agent_id } => Some(AgentEvent::TrustChanged { agent_id }),
            Event::StoreChanged { topic } => Some(AgentEvent::StoreChanged { topic }),
            Event::AgentOnline {
                agent_id,
                machine_id,
                addresses,
                reachable,
            } => {
                debug!(agent = %agent_id, "agent online");
                Some(AgentEvent::AgentOnline {
                    agent_id,
                    machine_id,
                    addresses,
                    reachable,
                })
            }
            Event::AgentOffline { agent_id, reason } => {
                debug!(agent = %agent_id, reason = reason.as_str(), "agent offline");
                Some(AgentEvent::AgentOffline { agent_id, reason })
            }
            Event::PresenceQueryFinished { query, agents } => {
                self.presence_query_finished(query, agents);
                None
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
}
