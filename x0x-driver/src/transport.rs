//! Framing and the per-connection tasks.
//!
//! Each connection carries one unidirectional QUIC stream each way, opened once and kept for
//! the connection's life. A frame on it is `u32 big-endian length | frame bytes`. A length
//! above [`x0x_proto::wire::MAX_FRAME_LEN`] is refused before anything is allocated: the
//! connection is closed with [`CloseCode::FrameTooLarge`] and nothing more from it reaches the
//! node.
//!
//! A *writer* task drains the connection's bounded queue into its send stream; a *reader*
//! task turns the receive stream into `ConnEvent::Frame`s for the driver. Both end when the
//! connection closes; the writer also ends when the driver drops the queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quinn::VarInt;
use x0x_proto::MachineId;
use x0x_proto::node::{CloseReason, Direction};
use x0x_proto::wire::MAX_FRAME_LEN;

use crate::runtime::{Runtime, timeout};

/// The QUIC application error code an x0x-rs connection is closed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// Orderly close: shutdown, or the node no longer needs the connection.
    Normal,
    /// A second connection between the same two machines.
    Duplicate,
    /// The peer sent a frame that does not decode.
    BadFrames,
    /// The peer broke the protocol (frame before `Hello`, …).
    ProtocolViolation,
    /// The connection limit was reached.
    TooManyConnections,
    /// No `Hello` in time.
    HelloTimeout,
    /// A length prefix above `MAX_FRAME_LEN`.
    FrameTooLarge,
    /// The handshake used a classical key exchange, not
    /// [`KEY_EXCHANGE`](crate::tls::KEY_EXCHANGE).
    ClassicalKeyExchange,
}

impl CloseCode {
    /// The code on the wire.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Normal => 0,
            Self::Duplicate => 1,
            Self::BadFrames => 2,
            Self::ProtocolViolation => 3,
            Self::TooManyConnections => 4,
            Self::HelloTimeout => 5,
            Self::FrameTooLarge => 6,
            Self::ClassicalKeyExchange => 7,
        }
    }

    /// Parses a code from the wire.
    pub fn from_varint(v: VarInt) -> Option<Self> {
        [
            Self::Normal,
            Self::Duplicate,
            Self::BadFrames,
            Self::ProtocolViolation,
            Self::TooManyConnections,
            Self::HelloTimeout,
            Self::FrameTooLarge,
            Self::ClassicalKeyExchange,
        ]
        .into_iter()
        .find(|c| u64::from(c.to_u32()) == v.into_inner())
    }

    /// The code for a node's close reason, and whether the close may wait for queued frames
    /// to be delivered first (it may not for a misbehaving peer).
    pub(crate) fn of(reason: &CloseReason) -> (Self, bool) {
        match reason {
            CloseReason::Duplicate => (Self::Duplicate, false),
            CloseReason::BadFrames(_) => (Self::BadFrames, false),
            CloseReason::ProtocolViolation(_) => (Self::ProtocolViolation, false),
            CloseReason::TooManyConnections => (Self::TooManyConnections, true),
            CloseReason::HelloTimeout => (Self::HelloTimeout, false),
            _ => (Self::Normal, true),
        }
    }

    pub(crate) fn varint(self) -> VarInt {
        VarInt::from_u32(self.to_u32())
    }
}

/// Identifies one connection, so events from a connection the driver already dropped are
/// recognised as stale (two connections to one machine can overlap in time).
pub(crate) type ConnId = u64;

/// What connection tasks tell the driver.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// A handshake completed and proved `peer`.
    Established {
        conn: quinn::Connection,
        peer: MachineId,
        addr: SocketAddr,
        direction: Direction,
        /// The key-exchange group the handshake used.
        key_exchange: String,
    },
    /// An incoming handshake used a classical key-exchange group; the connection was closed
    /// with [`CloseCode::ClassicalKeyExchange`].
    KeyExchangeRefused { remote: SocketAddr, group: String },
    /// A dial the node asked for failed (including a handshake that proved the wrong machine).
    DialFailed { addr: SocketAddr, error: String },
    /// An incoming handshake failed (or proved no machine key).
    HandshakeFailed { remote: SocketAddr, error: String },
    /// A complete frame.
    Frame {
        peer: MachineId,
        conn: ConnId,
        bytes: Bytes,
    },
    /// A length prefix above the limit; the reader has stopped and closed the connection.
    FrameTooLarge {
        peer: MachineId,
        conn: ConnId,
        len: u32,
    },
    /// A writer whose queue the driver watched (a publish is waiting on it) drained to
    /// below a quarter of its capacity.
    Drained,
    /// LAN discovery found another agent's machine at `addrs`.
    LocalPeer {
        machine: MachineId,
        addrs: Vec<SocketAddr>,
    },
    /// The connection (or its stream) ended.
    Closed {
        peer: MachineId,
        conn: ConnId,
        reason: String,
    },
}

/// What the driver tells a writer.
#[derive(Debug)]
pub(crate) enum WriterMsg {
    /// Send one frame.
    Frame(Bytes),
    /// Finish the stream, wait (bounded) for the peer to acknowledge it, then close.
    Close(CloseCode),
}

/// How long a graceful close waits for queued frames to be acknowledged.
pub(crate) const GRACEFUL_CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Drains `rx` into a new unidirectional stream on `conn`. `queued` counts the bytes of
/// frames in `rx`; the driver adds before queueing, the writer subtracts once written.
pub(crate) async fn writer(
    rt: &dyn Runtime,
    conn: quinn::Connection,
    rx: async_channel::Receiver<WriterMsg>,
    queued: Arc<AtomicUsize>,
    watch: DrainWatch,
) {
    let Ok(mut send) = conn.open_uni().await else {
        return;
    };
    while let Ok(msg) = rx.recv().await {
        match msg {
            WriterMsg::Frame(frame) => {
                let n = frame.len();
                // `n <= MAX_FRAME_LEN` (the node never encodes more), so it fits a u32.
                let prefix = Bytes::copy_from_slice(&(n as u32).to_be_bytes());
                let written = send.write_all_chunks(&mut [prefix, frame]).await;
                queued.fetch_sub(n, Ordering::Relaxed);
                if written.is_err() {
                    return;
                }
                watch.check(&rx, &queued);
            }
            WriterMsg::Close(code) => {
                let _ = send.finish();
                let _ = timeout(rt, GRACEFUL_CLOSE_WAIT, send.stopped()).await;
                conn.close(code.varint(), b"");
                return;
            }
        }
    }
}

/// How a writer tells the driver that its queue drained: the driver sets `wanted` when a
/// publish waits on this connection; the writer clears it and sends [`ConnEvent::Drained`]
/// once the queue is under a quarter of both its caps.
#[derive(Debug, Clone)]
pub(crate) struct DrainWatch {
    pub(crate) wanted: Arc<AtomicBool>,
    pub(crate) events: async_channel::Sender<ConnEvent>,
    pub(crate) frames_cap: usize,
    pub(crate) bytes_cap: usize,
}

impl DrainWatch {
    fn check(&self, rx: &async_channel::Receiver<WriterMsg>, queued: &AtomicUsize) {
        if self.wanted.load(Ordering::Relaxed)
            && rx.len() <= self.frames_cap / 4
            && queued.load(Ordering::Relaxed) <= self.bytes_cap / 4
            && self.wanted.swap(false, Ordering::Relaxed)
        {
            // A full event queue means the driver is busy and will look again anyway.
            let _ = self.events.try_send(ConnEvent::Drained);
        }
    }
}

/// Reads length-prefixed frames from the peer's unidirectional stream into `events`.
pub(crate) async fn reader(
    conn: quinn::Connection,
    peer: MachineId,
    id: ConnId,
    events: async_channel::Sender<ConnEvent>,
) {
    let reason = read_frames(&conn, peer, id, &events).await;
    if let Some(reason) = reason {
        let _ = events
            .send(ConnEvent::Closed {
                peer,
                conn: id,
                reason,
            })
            .await;
    }
}

/// Returns why the stream ended, or `None` if the driver is gone or was already told.
async fn read_frames(
    conn: &quinn::Connection,
    peer: MachineId,
    id: ConnId,
    events: &async_channel::Sender<ConnEvent>,
) -> Option<String> {
    let mut recv = match conn.accept_uni().await {
        Ok(r) => r,
        Err(e) => return Some(e.to_string()),
    };
    let mut prefix = [0u8; 4];
    loop {
        if let Err(e) = recv.read_exact(&mut prefix).await {
            return Some(e.to_string());
        }
        let len = u32::from_be_bytes(prefix);
        if len as usize > MAX_FRAME_LEN {
            // The event is queued before the close goes out, so whoever sees the close and
            // then asks the agent for its stats finds it counted.
            let _ = events
                .send(ConnEvent::FrameTooLarge {
                    peer,
                    conn: id,
                    len,
                })
                .await;
            conn.close(CloseCode::FrameTooLarge.varint(), b"frame too large");
            return None;
        }
        let mut buf = vec![0u8; len as usize];
        if let Err(e) = recv.read_exact(&mut buf).await {
            return Some(e.to_string());
        }
        let frame = ConnEvent::Frame {
            peer,
            conn: id,
            bytes: Bytes::from(buf),
        };
        // Waiting here is backpressure: QUIC flow control then slows the peer down.
        if events.send(frame).await.is_err() {
            return None;
        }
    }
}
