//! The driver's clock: protocol [`Time`] from the runtime's monotonic clock, anchored once to
//! the wall clock.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use x0x_proto::Time;

use crate::runtime::Runtime;

/// Converts between the runtime's [`Instant`]s and protocol [`Time`] (microseconds since the
/// Unix epoch).
///
/// The wall clock is read once, at construction; after that time advances with the runtime's
/// clock ([`Runtime::now`]), so node timers never run backwards when the system clock is
/// adjusted, and a runtime whose clock is paused (tokio's test clock) drives the node too.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    rt: Arc<dyn Runtime>,
    start: Instant,
    start_time: Time,
}

impl Clock {
    /// Anchors `rt`'s clock to `SystemTime::now()`.
    pub(crate) fn new(rt: Arc<dyn Runtime>) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            start: rt.now(),
            start_time: Time::ZERO + since_epoch,
            rt,
        }
    }

    /// The current protocol time.
    pub(crate) fn now(&self) -> Time {
        self.time_of(self.rt.now())
    }

    /// The protocol time of `instant`.
    pub(crate) fn time_of(&self, instant: Instant) -> Time {
        self.start_time + instant.saturating_duration_since(self.start)
    }

    /// The instant of protocol time `t` (saturating at the anchor for earlier times).
    pub(crate) fn instant_of(&self, t: Time) -> Instant {
        let after = t - self.start_time;
        self.start
            .checked_add(after)
            .unwrap_or_else(|| self.start + Duration::from_secs(86_400 * 365))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system clock, and nothing else a runtime does.
    #[derive(Debug)]
    struct SystemClock;

    impl Runtime for SystemClock {
        fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime> {
            unreachable!("the clock needs only `now`")
        }
    }

    #[test]
    fn round_trips_and_advances() {
        let c = Clock::new(Arc::new(SystemClock));
        let t0 = c.now();
        assert!(t0.as_secs() > 1_600_000_000);
        let later = Instant::now() + Duration::from_millis(250);
        let t = c.time_of(later);
        assert!(t - t0 >= Duration::from_millis(250));
        let back = c.instant_of(t);
        let diff = back
            .saturating_duration_since(later)
            .max(later.saturating_duration_since(back));
        assert!(diff < Duration::from_micros(2));
    }
}
