//! The runtime seam: everything the driver needs from an async runtime.
//!
//! The driver never names a runtime. It reads the time, spawns tasks, sleeps until deadlines
//! and hands quinn a [`quinn::Runtime`] for the endpoint, all through [`Runtime`]. Two
//! implementations ship behind features: `TokioRuntime` (`tokio`) and `SmolRuntime`
//! (`smol`); another runtime is one small impl of the trait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "smol")]
pub use self::smol::SmolRuntime;
#[cfg(feature = "tokio")]
pub use self::tokio::TokioRuntime;

/// A boxed, sendable unit future: what the driver spawns.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the driver needs from an async runtime.
///
/// Only [`Runtime::quinn_runtime`] is required: the time defaults to the monotonic system
/// clock, spawning and sleeping to the quinn runtime's own `spawn` and timers, so a new
/// runtime is one small impl. A runtime whose clock is not the system's (tokio's can be
/// paused) overrides [`Runtime::now`], and its timers — [`Runtime::sleep_until`] and the quinn
/// runtime's, which the driver task waits on — must wait on that same clock, so that the
/// deadlines the driver computes and the timers that wait for them agree. `Default` lets
/// `Agent::<R>::builder()` construct it.
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// The quinn runtime the endpoint runs on (`Endpoint::new` takes it explicitly, never
    /// guessing one from the ambient context).
    fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime>;

    /// The current instant of this runtime's clock: every time the driver reads.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Runs `task` to completion in the background.
    fn spawn(&self, task: BoxFuture) {
        self.quinn_runtime().spawn(task);
    }

    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture {
        let mut timer = self.quinn_runtime().new_timer(deadline);
        Box::pin(future::poll_fn(move |cx| timer.as_mut().poll(cx)))
    }
}

/// Runs `fut` until it completes or `dur` passes; `None` on timeout.
pub async fn timeout<T, F>(rt: &dyn Runtime, dur: Duration, fut: F) -> Option<T>
where
    F: Future<Output = T>,
{
    let sleep = rt.sleep_until(rt.now() + dur);
    future::or(async { Some(fut.await) }, async {
        sleep.await;
        None
    })
    .await
}

/// Counts live tasks so shutdown can wait for every one of them to end.
///
/// Each task holds a [`TaskGuard`]; [`TaskTracker::wait`] returns once all guards are dropped.
#[derive(Debug)]
pub(crate) struct TaskTracker {
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

/// Held by a running task; dropping it tells the tracker the task ended.
#[derive(Debug, Clone)]
pub(crate) struct TaskGuard(async_channel::Sender<()>);

impl TaskGuard {
    /// Guards alive on this tracker, this one included: the tracked tasks plus the holders
    /// that hand out guards.
    pub(crate) fn alive(&self) -> usize {
        self.0.sender_count()
    }
}

impl TaskTracker {
    pub(crate) fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self { tx, rx }
    }

    pub(crate) fn guard(&self) -> TaskGuard {
        TaskGuard(self.tx.clone())
    }

    /// Waits until every guard handed out is dropped (or `dur` passes). True if all ended.
    pub(crate) async fn wait(self, rt: &dyn Runtime, dur: Duration) -> bool {
        let Self { tx, rx } = self;
        drop(tx);
        // `recv` fails once the channel is empty and every sender (guard) is gone.
        timeout(rt, dur, async move { while rx.recv().await.is_ok() {} })
            .await
            .is_some()
    }
}

/// Spawns `fut` on `rt`, holding `guard` until it ends.
pub(crate) fn spawn_tracked<F>(rt: &dyn Runtime, guard: TaskGuard, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    rt.spawn(Box::pin(async move {
        fut.await;
        drop(guard);
    }));
}

/// A one-shot reply channel (a bounded channel of one; runtime-neutral).
pub(crate) fn oneshot<T>() -> (Reply<T>, async_channel::Receiver<T>) {
    let (tx, rx) = async_channel::bounded(1);
    (Reply(tx), rx)
}

/// The sending half of [`oneshot`].
#[derive(Debug)]
pub(crate) struct Reply<T>(async_channel::Sender<T>);

impl<T> Reply<T> {
    /// Sends the reply; a requester that stopped waiting is not an error.
    pub(crate) fn send(self, value: T) {
        let _ = self.0.try_send(value);
    }
}
