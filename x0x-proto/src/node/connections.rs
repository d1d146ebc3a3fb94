//! Connections: each one's `Hello` exchange and deadline, keepalives, frame errors and
//! closes. The driver owns the transport connections, at most one per machine; the node
//! tracks them by the machine the transport proved.

use std::net::SocketAddr;

use bytes::Bytes;

use super::{Action, CloseReason, Direction, Event, Node, Timer};
use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{self, DecodeError, Frame, Hello};

/// Why `handle_frame` did not process a frame. The node has already counted it and, where the
/// policy says so, queued an [`Action::Close`]; the driver needs to do nothing but drain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The frame came from a machine the node has no connection with.
    #[error("frame from {0} which has no connection")]
    UnknownPeer(MachineId),
    /// The frame broke the protocol.
    #[error("protocol violation: {0}")]
    Violation(&'static str),
}

/// What [`Node::connect_agent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectStart {
    /// The agent's machine has a live connection already.
    AlreadyConnected {
        /// The machine.
        machine: MachineId,
        /// The connection's remote address.
        addr: SocketAddr,
    },
    /// A dial to the agent's machine is under way (or was already); the driver learns the
    /// outcome from [`Event::PeerUp`] for `machine` or a failed dial.
    Dialing {
        /// The machine expected at the address.
        machine: MachineId,
        /// The address dialled.
        addr: SocketAddr,
    },
    /// The agent announced no address this node could dial.
    NoAddress {
        /// Its machine.
        machine: MachineId,
    },
    /// The agent is not in the discovery cache (look it up first).
    NotFound,
}

/// A connection the driver reported up.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    pub(super) direction: Direction,
    pub(super) hello: Option<Hello>,
    /// When the connection came up: its Hello deadline is this plus `hello_timeout`.
    pub(super) connected_at: Time,
    pub(super) last_heard: Time,
    pub(super) frame_errors: u32,
    pub(super) closing: bool,
}

impl Node {
    // ----- inputs -----

    /// A connection to `peer` (proven by the transport handshake) is up.
    ///
    /// The driver keeps at most one connection per machine. When a dial reaches a machine that
    /// is already connected (e.g. both sides dialled at once), the driver keeps one connection
    /// and still calls this for the dial, with the dialled address: the node treats it as the
    /// dial's outcome and opens nothing new.
    pub fn handle_connected(
        &mut self,
        now: Time,
        peer: MachineId,
        addr: SocketAddr,
        direction: Direction,
    ) {
        self.start(now);
        if peer == self.machine_id() {
            self.close(peer, CloseReason::ProtocolViolation("connection to self"));
            return;
        }
        if let Some(p) = self.peers.get(&peer) {
            // A dial that reached a machine we are already connected to: the driver keeps one
            // connection per machine, so this only resolves the dial.
            self.stats.duplicate_connections += 1;
            if direction == Direction::Outbound && !p.closing && p.hello.is_some() {
                let addrs = p
                    .hello
                    .as_ref()
                    .map(|h| h.addrs.clone())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| vec![p.addr]);
                self.membership
                    .on_connection_up(now, &mut self.rng, peer, addrs, Some(addr));
                self.drain_layers(now);
            }
            return;
        }
        if self.peers.len() >= self.config.max_connections {
            self.close_untracked(peer, CloseReason::TooManyConnections);
            return;
        }
        self.peers.insert(
            peer,
            Peer {
                addr,
                direction,
                hello: None,
                connected_at: now,
                last_heard: now,
                frame_errors: 0,
                closing: false,
            },
        );
        self.timers
            .set(now + self.config.hello_timeout, Timer::HelloDeadline(peer));
        let hello = Hello {
            agent: self.agent_id(),
            addrs: self.told_addrs(),
        };
        self.send(peer, hello.into());
        self.send_observed(peer, addr);
    }

    /// The connection to `peer` is gone (closed by either side, or lost).
    pub fn handle_disconnected(&mut self, now: Time, peer: MachineId) {
        self.start(now);
        if let Some(p) = self.peers.remove(&peer) {
            self.timers.cancel(
                p.connected_at + self.config.hello_timeout,
                Timer::HelloDeadline(peer),
            );
            if p.hello.is_some() {
                self.membership.on_connection_down(now, &mut self.rng, peer);
                self.broadcast.connection_down(now, peer);
                self.presence_peer_down(now, peer);
                self.nat_peer_down(now, peer);
                self.emit(Event::PeerDown { peer });
            } else if p.direction == Direction::Outbound {
                // Never completed: for membership this is a failed dial.
                self.cache_failure(now, p.addr);
                self.membership.on_dial_failed(&mut self.rng, p.addr);
            }
            self.drain_layers(now);
        }
    }

    /// A dial requested by [`Action::Dial`] failed.
    pub fn handle_dial_failed(&mut self, now: Time, addr: SocketAddr) {
        self.start(now);
        self.stats.dials_failed += 1;
        self.cache_failure(now, addr);
        self.direct.dial_failed(now, addr);
        self.membership.on_dial_failed(&mut self.rng, addr);
        self.drain_layers(now);
    }

    /// A frame arrived from `peer`. Errors are informational: the node has counted them and queued
    /// any close it wants.
    ///
    /// With [`Config::share_frames`](super::Config::share_frames), a pub/sub message the node keeps
    /// (cache, events) holds slices of `bytes` rather than copies of its parts
    /// ([`Frame::decode_shared`]).
    pub fn handle_frame(
        &mut self,
        now: Time,
        peer: MachineId,
        bytes: &Bytes,
    ) -> Result<(), FrameError> {
        self.start(now);
        let Some(p) = self.peers.get_mut(&peer) else {
            self.stats.frames_from_unknown_peer += 1;
            return Err(FrameError::UnknownPeer(peer));
        };
        if p.closing {
            return Ok(());
        }
        let decoded = if self.config.share_frames {
            Frame::decode_shared(bytes)
        } else {
            Frame::decode(bytes)
        };
        let frame = match decoded {
            Ok(f) => f,
            Err(DecodeError::UnknownKind(k)) => {
                // A newer peer's message: skip it, keep the connection.
                self.stats.frames_unknown_kind += 1;
                return Err(DecodeError::UnknownKind(k).into());
            }
            Err(e) => {
                self.stats.frames_rejected.count(&e);
                p.frame_errors += 1;
                if p.frame_errors > self.config.max_frame_errors {
                    self.close(peer, CloseReason::BadFrames(e.clone()));
                }
                return Err(e.into());
            }
        };
        self.stats.frames_received += 1;
        p.last_heard = now;
        let result = match (frame, p.hello.is_some()) {
            (Frame::Hello(hello), false) => {
                let agent = hello.agent;
                let dialed = (p.direction == Direction::Outbound).then_some(p.addr);
                let since = p.connected_at;
                let addrs = if hello.addrs.is_empty() {
                    vec![p.addr]
                } else {
                    hello.addrs.clone()
                };
                p.hello = Some(hello);
                // The deadline is met: drop its timer now rather than wake for it later.
                let deadline = p.connected_at + self.config.hello_timeout;
                self.timers.cancel(deadline, Timer::HelloDeadline(peer));
                self.emit(Event::PeerUp { peer, agent });
                if let Some(addr) = dialed {
                    self.cache_success(now, addr, peer, since);
                }
                self.membership
                    .on_connection_up(now, &mut self.rng, peer, addrs, dialed);
                self.presence_peer_up(now, peer);
                Ok(())
            }
            (Frame::Hello(_), true) => self.violation(peer, "second hello"),
            (_, false) => self.violation(peer, "frame before hello"),
            (frame, true) => {
                self.membership.on_heard(now, &peer);
                self.on_frame(now, peer, frame);
                Ok(())
            }
        };
        self.drain_layers(now);
        result
    }

    // ----- queries -----

    /// Machines with a connection that completed its `Hello`, in id order.
    pub fn connected_peers(&self) -> Vec<MachineId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.hello.is_some() && !p.closing)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A peer found on the local link (the driver's LAN discovery): joined through when this
    /// node has no neighbour, else remembered in the passive view.
    pub fn handle_local_peer(&mut self, now: Time, machine: MachineId, addrs: Vec<SocketAddr>) {
        self.start(now);
        let addrs = addrs.into_iter().take(wire::MAX_ADDRS_PER_PEER).collect();
        self.membership
            .on_local_peer(&mut self.rng, wire::PeerAddr { id: machine, addrs });
        self.drain_layers(now);
    }

    // ----- commands -----

    /// Connects to the machine an agent runs on, as far as the discovery cache knows it. The
    /// connection is kept for the linger time, like any that is not a neighbour's.
    pub fn connect_agent(&mut self, now: Time, agent: &crate::AgentId) -> ConnectStart {
        self.start(now);
        let Some(a) = self.discovered_agent(now, agent) else {
            return ConnectStart::NotFound;
        };
        let machine = a.machine_id;
        if self.hello_done(&machine) {
            let addr = self.peers[&machine].addr;
            return ConnectStart::AlreadyConnected { machine, addr };
        }
        let Some(&addr) = a.addresses.first() else {
            return ConnectStart::NoAddress { machine };
        };
        self.connect(now, machine, a.addresses);
        // Behind NATs the dial alone may never get through: a common peer asks the target
        // to dial back at the same time.
        self.request_punch(now, machine);
        self.drain_layers(now);
        ConnectStart::Dialing { machine, addr }
    }

    /// Opens a connection to `machine` at `addrs` (the first one is dialled) unless one is up
    /// or being made: e.g. an agent card's machine and addresses.
    pub fn connect(&mut self, now: Time, machine: MachineId, addrs: Vec<SocketAddr>) {
        self.start(now);
        if addrs.is_empty() {
            return;
        }
        let addrs = addrs.into_iter().take(wire::MAX_ADDRS_PER_PEER).collect();
        self.membership
            .connect(wire::PeerAddr { id: machine, addrs });
        self.drain_layers(now);
    }

    // ----- internals -----

    /// Whether `peer` has a connection that completed its `Hello` and is not closing.
    pub(super) fn hello_done(&self, peer: &MachineId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.hello.is_some() && !p.closing)
    }

    /// A connection's `Hello` deadline passed: closed if it has not sent one.
    pub(super) fn hello_deadline(&mut self, peer: MachineId) {
        if self.peers.get(&peer).is_some_and(|p| p.hello.is_none()) {
            self.close(peer, CloseReason::HelloTimeout);
        }
    }

    /// Pings every connection idle for a keepalive interval.
    pub(super) fn keepalive(&mut self, now: Time) {
        let idle: Vec<MachineId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.hello.is_some() && !p.closing)
            .filter(|(_, p)| now - p.last_heard >= self.config.keepalive_interval)
            .map(|(id, _)| *id)
            .collect();
        for peer in idle {
            let ping = wire::Ping {
                seq: now.as_micros(),
            };
            self.send(peer, ping.into());
        }
    }

    fn violation(&mut self, peer: MachineId, what: &'static str) -> Result<(), FrameError> {
        self.close(peer, CloseReason::ProtocolViolation(what));
        Err(FrameError::Violation(what))
    }

    /// Marks a tracked connection as closing and asks the driver to close it.
    pub(super) fn close(&mut self, peer: MachineId, reason: CloseReason) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.closing {
                return;
            }
            p.closing = true;
        }
        self.close_untracked(peer, reason);
    }

    fn close_untracked(&mut self, peer: MachineId, reason: CloseReason) {
        self.stats.closes.count(&reason);
        self.actions.push_back(Action::Close { peer, reason });
    }
}
