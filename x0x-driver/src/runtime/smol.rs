//! The smol runtime (feature `smol`).

use std::sync::Arc;

use super::Runtime;

/// Runs the driver on smol: quinn's `SmolRuntime` for the endpoint, its timers and
/// `smol::spawn` (through quinn's runtime) for tasks, and the system's monotonic clock.
///
/// quinn is handed this runtime explicitly (`Endpoint::new(.., Arc::new(quinn::SmolRuntime))`),
/// never through the constructors that guess one: with both drivers in one build, quinn has
/// both runtime features and would pick tokio. Tasks run on smol's global executor, which has
/// one thread unless `SMOL_THREADS` says otherwise; `block_on` from any thread works.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime> {
        Arc::new(quinn::SmolRuntime)
    }
}
