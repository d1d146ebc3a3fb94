//! The event trace: every event that shapes a run, hashed into the report's `digest`.
//!
//! A record is `(time, tag, a, b)`; the tag says what happened and what `a` and `b` hold.
//! Each kind of event has its own tag byte.

/// What a trace record is about; `a` and `b` in each variant's doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TraceTag {
    /// The last 8 bytes of the frame just received (`b`, little-endian), after its
    /// [`TraceTag::FrameReceived`].
    FrameTail = 0,
    /// A frame reached a live node: `a` receiver, `b` = sender << 32 ^ kind << 24 ^ length.
    FrameReceived = 1,
    /// A node's wake-up fired: `a` node.
    Wake = 2,
    /// A node started: `a` node.
    Start = 3,
    /// A connection opened: `a` dialler, `b` target.
    Connected = 4,
    /// A dial failed: `a` dialler.
    DialFailed = 5,
    /// A node learned its peer closed the connection: `a` node, `b` peer.
    Disconnected = 6,
    /// A node crashed or left: `a` node.
    Crash = 7,
    /// A node restarted: `a` node, `b` its new incarnation.
    Restart = 8,
    /// A broadcast was published: `a` publisher, `b` 1 if it was registered.
    Publish = 9,
    /// A partition started: `a` nodes in the first group.
    PartitionStart = 10,
    /// The partition healed.
    PartitionEnd = 11,
    /// The overlay was measured: `a` live nodes, `b` components.
    Overlay = 12,
    /// A direct message was sent: `a` sender, `b` recipient.
    DirectSend = 13,
    /// A node closed a connection: `a` node, `b` peer.
    ConnectionClosed = 17,
    /// A broadcast delivery: `a` node, `b` = message index << 8 | hops.
    Delivery = 14,
    /// A direct message delivery: `a` node, `b` message index.
    DirectMessage = 18,
    /// A direct-message receipt at the sender: `a` node, `b` retries.
    DirectReceipt = 19,
    /// A broadcast round ended: `a` round, `b` its delivery ratio's bits (`u64::MAX`: none).
    RoundClosed = 15,
    /// A direct message failed at the sender: `a` node.
    DirectFailed = 16,
    /// A forger injected a forgery: `a` forger, `b` receiver.
    Forgery = 20,
    /// A forger injected a replay: `a` forger, `b` receiver.
    Replay = 21,
    /// An eclipser sent a JOIN to the target: `a` eclipser, `b` target.
    EclipseJoin = 22,
}

impl TraceTag {
    /// The byte hashed into the trace.
    pub(crate) const fn byte(self) -> u8 {
        self as u8
    }
}

/// The event trace digest: a BLAKE3 hasher fed through a buffer.
pub(crate) struct Trace {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

impl Trace {
    pub(crate) fn new() -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(1 << 17),
        }
    }

    /// Records event `tag` at time `at`.
    pub(crate) fn rec(&mut self, at: u64, tag: TraceTag, a: u32, b: u64) {
        self.buf.extend_from_slice(&at.to_le_bytes());
        self.buf.push(tag.byte());
        self.buf.extend_from_slice(&a.to_le_bytes());
        self.buf.extend_from_slice(&b.to_le_bytes());
        if self.buf.len() >= 1 << 16 {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }

    /// The hex digest of everything recorded.
    pub(crate) fn finish(mut self) -> String {
        self.hasher.update(&self.buf);
        self.hasher.finalize().to_hex().to_string()
    }
}
