//! The tokio glue (feature `tokio-runtime`).

use std::sync::Arc;
use std::time::Instant;

use crate::core::runtime::{BoxFuture, Runtime};

/// Runs the driver on the ambient tokio runtime: `tokio::spawn`, tokio timers and
/// `quinn::TokioRuntime` for the endpoint. `build()` must be called inside a tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime> {
        Arc::new(quinn::TokioRuntime)
    }

    fn spawn(&self, task: BoxFuture) {
        // Detached: the driver tracks its tasks itself and waits for them on shutdown.
        drop(tokio::spawn(task));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}
