//! The event trace: every event that shapes a run, hashed into the report's `digest`.
//!
//! A record is `(time, tag, a, b)`; the tag says what happened and what `a` and `b` hold.
//! Two pairs of events share a tag byte (see [`TraceTag::byte`]): they never both occur in a
//! shipped scenario, and separating them would change the digest of every scenario of one
//! family.

/// What a trace record is about; `a` and `b` in each variant's doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceTag {
    /// The last 8 bytes of the frame just received (`b`, little-endian), after its
    /// [`TraceTag::FrameReceived`].
    FrameTail,
    /// A frame reached a live node: `a` receiver, `b` = sender << 32 ^ kind << 24 ^ length.
    FrameReceived,
    /// A node's wake-up fired: `a` node.
    Wake,
    /// A node started: `a` node.
    Start,
    /// A connection opened: `a` dialler, `b` target.
    Connected,
    /// A dial failed: `a` dialler.
    DialFailed,
    /// A node learned its peer closed the connection: `a` node, `b` peer.
    Disconnected,
    /// A node crashed or left: `a` node.
    Crash,
    /// A node restarted: `a` node, `b` its new incarnation.
    Restart,
    /// A broadcast was published: `a` publisher, `b` 1 if it was registered.
    Publish,
    /// A partition started: `a` nodes in the first group.
    PartitionStart,
    /// The partition healed.
    PartitionEnd,
    /// The overlay was measured: `a` live nodes, `b` components.
    Overlay,
    /// A direct message was sent: `a` sender, `b` recipient.
    DirectSend,
    /// A node closed a connection: `a` node, `b` peer.
    ConnectionClosed,
    /// A broadcast delivery: `a` node, `b` = message index << 8 | hops.
    Delivery,
    /// A direct message delivery: `a` node, `b` message index.
    DirectMessage,
    /// A direct-message receipt at the sender: `a` node, `b` retries.
    DirectReceipt,
    /// A broadcast round ended: `a` round, `b` its delivery ratio's bits (`u64::MAX`: none).
    RoundClosed,
    /// A direct message failed at the sender: `a` node.
    DirectFailed,
    /// A forger injected a forgery: `a` forger, `b` receiver.
    Forgery,
    /// A forger injected a replay: `a` forger, `b` receiver.
    Replay,
    /// An eclipser sent a JOIN to the target: `a` eclipser, `b` target.
    EclipseJoin,
}

impl TraceTag {
    /// The byte hashed into the trace. Broadcast and direct deliveries share 14, round ends
    /// and direct receipts 15.
    pub(crate) const fn byte(self) -> u8 {
        match self {
            Self::FrameTail => 0,
            Self::FrameReceived => 1,
            Self::Wake => 2,
            Self::Start => 3,
            Self::Connected => 4,
            Self::DialFailed => 5,
            Self::Disconnected => 6,
            Self::Crash => 7,
            Self::Restart => 8,
            Self::Publish => 9,
            Self::PartitionStart => 10,
            Self::PartitionEnd => 11,
            Self::Overlay => 12,
            Self::DirectSend => 13,
            Self::ConnectionClosed => 17,
            Self::Delivery | Self::DirectMessage => 14,
            Self::DirectReceipt | Self::RoundClosed => 15,
            Self::DirectFailed => 16,
            Self::Forgery => 20,
            Self::Replay => 21,
            Self::EclipseJoin => 22,
        }
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
