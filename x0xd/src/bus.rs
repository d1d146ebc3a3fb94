//! Fan-out to streaming clients (SSE and WebSocket), each with its own bounded queue.
//!
//! A client that falls [`CLIENT_QUEUE`] items behind is disconnected and counted, so it can
//! neither stall the daemon nor make other clients of the same stream lose anything.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Items queued per client before it counts as too slow and is disconnected.
pub const CLIENT_QUEUE: usize = 1024;

/// Most clients of one bus; one more is refused (its stream ends at once).
pub const MAX_CLIENTS: usize = 256;

/// A fan-out point: every item sent reaches every client's queue, or the client is dropped.
#[derive(Debug)]
pub struct Bus<T> {
    clients: Mutex<Vec<mpsc::Sender<T>>>,
    /// Clients disconnected for falling [`CLIENT_QUEUE`] items behind.
    pub slow_dropped: AtomicU64,
    /// Clients refused at [`MAX_CLIENTS`].
    pub refused: AtomicU64,
}

impl<T> Default for Bus<T> {
    fn default() -> Self {
        Self {
            clients: Mutex::new(Vec::new()),
            slow_dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl<T: Clone> Bus<T> {
    /// A new client's queue. At the client cap the queue is returned closed.
    pub fn subscribe(&self) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let mut clients = self.lock();
        clients.retain(|c| !c.is_closed());
        if clients.len() >= MAX_CLIENTS {
            self.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            clients.push(tx);
        }
        rx
    }

    /// Sends `item` to every client; returns how many took it.
    pub fn send(&self, item: &T) -> usize {
        let mut clients = self.lock();
        let mut slow = 0;
        clients.retain(|c| match c.try_send(item.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                slow += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if slow > 0 {
            self.slow_dropped.fetch_add(slow, Ordering::Relaxed);
        }
        clients.len()
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        let mut clients = self.lock();
        clients.retain(|c| !c.is_closed());
        clients.len()
    }

    /// Ends every client's stream (shutdown).
    pub fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<T>>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_client_is_dropped_and_others_lose_nothing() {
        let bus = Bus::<u32>::default();
        let mut fast = bus.subscribe();
        let slow = bus.subscribe();
        let mut got = Vec::new();
        for i in 0..(CLIENT_QUEUE as u32 + 10) {
            bus.send(&i);
            got.push(fast.recv().await.unwrap());
        }
        assert_eq!(got.len(), CLIENT_QUEUE + 10);
        assert_eq!(bus.slow_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(bus.clients(), 1);
        drop(slow);
    }

    #[tokio::test]
    async fn close_ends_every_stream() {
        let bus = Bus::<u32>::default();
        let mut a = bus.subscribe();
        bus.close();
        assert_eq!(a.recv().await, None);
    }
}
