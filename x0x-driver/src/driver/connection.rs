//! Connections: the accept loop, dials, and what connection tasks report (a handshake that
//! completed or failed, a frame, a close); one tracked connection per machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use tracing::{Instrument, debug, info, info_span, warn};
use x0x_proto::MachineId;
use x0x_proto::node::Direction;

use super::{ConnEntry, Driver};
use crate::runtime::{Runtime, TaskGuard, spawn_tracked, timeout};
use crate::tls;
use crate::transport::{self, CloseCode, ConnEvent, ConnId, DrainWatch};

/// Accepts incoming connections until the endpoint closes; one handshake task each.
pub(super) async fn accept_loop(
    rt: Arc<dyn Runtime>,
    endpoint: quinn::Endpoint,
    events: async_channel::Sender<ConnEvent>,
    guard: TaskGuard,
    tls: tls::ConnectionTls,
) {
    while let Some(incoming) = endpoint.accept().await {
        let events = events.clone();
        let remote = incoming.remote_address();
        let server = tls.server();
        spawn_tracked(&*rt, guard.clone(), async move {
            let failed = |error: String| ConnEvent::HandshakeFailed { remote, error };
            let ev = match server {
                Err(e) => {
                    incoming.refuse();
                    failed(e.to_string())
                }
                // Each connection gets its own configuration, so its record is its own.
                Ok((config, record)) => match incoming.accept_with(Arc::new(config)) {
                    Err(e) => failed(e.to_string()),
                    Ok(connecting) => match connecting.await {
                        Ok(conn) => identified(conn, remote, Direction::Inbound, &record)
                            .unwrap_or_else(|refusal| match refusal {
                                Refusal::Classical(group) => {
                                    ConnEvent::KeyExchangeRefused { remote, group }
                                }
                                Refusal::NoMachineKey => failed(refusal.to_string()),
                            }),
                        Err(e) => failed(e.to_string()),
                    },
                },
            };
            let _ = events.send(ev).await;
        });
    }
    debug!("accept loop ended");
}

/// Why a finished handshake is unusable.
#[derive(Debug)]
enum Refusal {
    /// It proved no machine key.
    NoMachineKey,
    /// Its key exchange was this classical group.
    Classical(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoMachineKey => f.write_str("handshake proved no machine key"),
            Self::Classical(g) => write!(f, "classical key exchange {g} refused"),
        }
    }
}

/// The event for a finished handshake, or why it is unusable.
fn identified(
    conn: quinn::Connection,
    addr: SocketAddr,
    direction: Direction,
    record: &tls::KeyExchangeRecord,
) -> Result<ConnEvent, Refusal> {
    let group = record.group();
    if group != Some(tls::KEY_EXCHANGE) {
        let name = group.map_or_else(|| "unknown".to_owned(), tls::group_name);
        conn.close(
            CloseCode::ClassicalKeyExchange.varint(),
            b"post-quantum key exchange (X25519MLKEM768) required",
        );
        return Err(Refusal::Classical(name));
    }
    match tls::peer_machine_id(&conn) {
        Some(peer) => Ok(ConnEvent::Established {
            conn,
            peer,
            addr,
            direction,
            key_exchange: tls::group_name(tls::KEY_EXCHANGE),
        }),
        None => {
            conn.close(CloseCode::ProtocolViolation.varint(), b"no machine key");
            Err(Refusal::NoMachineKey)
        }
    }
}

impl Driver {
    pub(super) fn on_conn_event(&mut self, ev: ConnEvent) {
        let now = self.clock.now();
        match ev {
            ConnEvent::Established {
                conn,
                peer,
                addr,
                direction,
                key_exchange,
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
                    self.track(conn, peer, addr, direction, key_exchange);
                    self.node.handle_connected(now, peer, addr, direction);
                    self.drain();
                }
            }
            ConnEvent::DialFailed { addr, error } => {
                self.stats.dials_failed += 1;
                info!(%addr, %error, "dial failed");
                self.resolve_connects(
                    |w| w.addr == addr,
                    |_| crate::agent::ConnectOutcome::Unreachable,
                );
                self.node.handle_dial_failed(now, addr);
                self.drain();
            }
            ConnEvent::LocalPeer { machine, addrs } => {
                self.node.handle_local_peer(now, machine, addrs);
                self.drain();
            }
            ConnEvent::KeyExchangeRefused { remote, group } => {
                self.stats.classical_key_exchange_refused += 1;
                info!(%remote, %group, "refused a classical key exchange");
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
        key_exchange: String,
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
                key_exchange,
            },
        );
    }

    pub(super) fn dial(&mut self, addr: SocketAddr, expect: Option<MachineId>) {
        let name = tls::server_name(expect.as_ref());
        debug!(%addr, ?expect, "dialling");
        let connecting =
            match self
                .tls
                .client()
                .map_err(|e| e.to_string())
                .and_then(|(config, record)| {
                    self.endpoint
                        .connect_with(config, addr, &name)
                        .map(|c| (c, record))
                        .map_err(|e| e.to_string())
                }) {
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
            let (connecting, record) = connecting;
            let ev = match timeout(&*rt, dial_timeout, connecting).await {
                Some(Ok(conn)) => identified(conn, addr, Direction::Outbound, &record)
                    .unwrap_or_else(|refusal| ConnEvent::DialFailed {
                        addr,
                        error: refusal.to_string(),
                    }),
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
}
