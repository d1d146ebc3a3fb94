//! The events of the simulation and their queue order.

use std::cmp::{Ordering, Reverse};
use std::net::SocketAddr;

use bytes::Bytes;

use crate::workload::discovery::Step;

/// One thing that happens at a simulated time. Events about a node carry its incarnation
/// (`inc`) where a restart must void them.
#[derive(Debug)]
pub(crate) enum Ev {
    /// Node `i` starts.
    Start(u32),
    /// A node's wake-up (`poll_timeout`); stale unless it is still the armed one.
    Wake {
        node: u32,
        inc: u32,
    },
    /// A frame arrives on connection `conn`.
    Frame {
        from: u32,
        to: u32,
        conn: u64,
        bytes: Bytes,
    },
    /// A dial that reached a live node completes (a round trip after `started`).
    DialDone {
        from: u32,
        to: u32,
        inc: u32,
        started: u64,
    },
    /// A dial fails.
    DialFail {
        node: u32,
        inc: u32,
        addr: SocketAddr,
    },
    /// `node` learns that `peer` closed connection `conn`.
    Disconnect {
        node: u32,
        peer: u32,
        conn: u64,
    },
    /// Measure the overlay.
    Overlay,
    /// Broadcast round `r` starts.
    Round(u32),
    /// Broadcast round `r` ends if it is still open.
    RoundTimeout(u32),
    /// The scenario's mass crash.
    Crash,
    /// A crashed node restarts, unless it restarted since.
    Restart {
        node: u32,
        inc: u32,
    },
    PartitionStart,
    PartitionEnd,
    /// The next churn departure (then the next is drawn).
    ChurnLeave,
    /// The next churn arrival (then the next is drawn).
    ChurnJoin,
    Discovery(Step),
    /// Direct message `k` is sent.
    DirectSend(u32),
    /// The adversary clock ([`crate::adversary`]).
    Adversary,
    /// A presence look-up ([`crate::workload::presence`]).
    PresenceFind,
    /// The replicated store is created and joined ([`crate::workload::collab`]).
    CollabOpen,
    /// Writer `k` writes.
    CollabWrite(u32),
    /// Forgery `f` by a non-writer.
    CollabForge(u32),
    /// The replicas' heads are compared.
    CollabCheck,
    /// A burst of the flood ([`crate::workload::flood`]).
    Flood,
    /// The run ends.
    End,
}

/// A queued event, ordered earliest first, FIFO among equal times.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) at: u64,
    pub(crate) seq: u64,
    pub(crate) ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest (then lowest seq) pops first.
        Reverse((self.at, self.seq)).cmp(&Reverse((o.at, o.seq)))
    }
}
