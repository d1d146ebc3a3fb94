//! Shutdown: close every connection (writers may flush briefly), close the endpoint, wait
//! for every task.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::{Command, Driver};
use crate::error::Error;
use crate::runtime::{TaskTracker, timeout};
use crate::transport::{CloseCode, ConnEvent, WriterMsg};

/// How long shutdown waits for writers to flush, then for every task to end.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
const SHUTDOWN_TASKS: Duration = Duration::from_secs(2);

impl Driver {
    pub(super) async fn shutdown(
        mut self,
        cmd_rx: async_channel::Receiver<Command>,
        ev_rx: async_channel::Receiver<ConnEvent>,
        all: TaskTracker,
        writers: TaskTracker,
    ) {
        info!("shutting down");
        // Requests still queued are dropped; their callers see `Error::Shutdown`.
        cmd_rx.close();
        if let Some(lan) = self.lan.take() {
            lan.stop();
        }
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
        for (_, waiter) in self.presence_queries.drain() {
            waiter.abort();
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
