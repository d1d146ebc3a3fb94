//! Publishes: taken from their own queue in batches (one signature each), and held back
//! while a peer's send queue is congested (backpressure).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::warn;
use x0x_proto::wire::{MessageId, TopicId};

use super::Driver;
use crate::error::{Error, Result};
use crate::runtime::Reply;

/// Capacity of the publish queue: a publisher that runs this far ahead of the driver waits
/// (backpressure), and what queued up while the driver was busy is signed as one batch.
pub(crate) const PUBLISH_QUEUE: usize = 1024;

/// A publish, on its own queue so the driver can take every queued one at once and sign them
/// as one batch, and can stop taking them while a peer's send queue is congested.
#[derive(Debug)]
pub(crate) struct PublishItem {
    pub(crate) topic: TopicId,
    pub(crate) payload: Bytes,
    /// Where the message id goes; `None` for [`crate::Agent::publish`], which returns
    /// once the item is queued.
    pub(crate) reply: Option<Reply<Result<MessageId>>>,
}

/// `first` and what is already queued behind it, up to one batch (`wire::MAX_BATCH`).
pub(super) fn queued_batch(
    first: Option<PublishItem>,
    rx: &async_channel::Receiver<PublishItem>,
) -> Vec<PublishItem> {
    first
        .into_iter()
        .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        .take(x0x_proto::wire::MAX_BATCH)
        .collect()
}

impl Driver {
    /// The byte cap of a connection's send queue: at least one maximal frame.
    pub(super) fn send_cap(&self) -> usize {
        self.net
            .send_queue_bytes
            .max(x0x_proto::wire::MAX_FRAME_LEN)
    }

    /// Publishes `items` under one signature per batch and answers those that wait for their
    /// message id.
    pub(super) fn publish(&mut self, items: Vec<PublishItem>) {
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

    /// Whether some connection's send queue is over half full; marks each such writer so it
    /// reports when it drained.
    pub(super) fn congested(&self) -> bool {
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
    pub(super) fn release_publishes(&mut self) {
        if !self.held_publishes.is_empty() && !self.congested() {
            for (reply, result) in self.held_publishes.drain(..) {
                reply.send(result);
            }
        }
    }
}
