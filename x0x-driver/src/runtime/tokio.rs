//! The tokio runtime (feature `tokio`).

use std::sync::Arc;
use std::time::Instant;

use super::{BoxFuture, Runtime};

/// Runs the driver on the ambient tokio runtime: `tokio::spawn`, tokio's clock and timers, and
/// `quinn::TokioRuntime` for the endpoint. `build()` must be called inside a tokio runtime.
///
/// The time is tokio's (`tokio::time::Instant::now`), so a paused tokio clock
/// (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) drives the agent's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime> {
        Arc::new(quinn::TokioRuntime)
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn spawn(&self, task: BoxFuture) {
        // Detached: the driver tracks its tasks itself and waits for them on shutdown.
        drop(tokio::spawn(task));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}
