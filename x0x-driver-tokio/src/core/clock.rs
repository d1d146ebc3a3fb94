//! The driver's clock: [`Time`] from a monotonic [`Instant`] anchored once to the wall clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use x0x_proto::Time;

/// Converts between [`Instant`] and protocol [`Time`] (microseconds since the Unix epoch).
///
/// The wall clock is read once, at construction; after that time advances with the monotonic
/// clock, so node timers never run backwards when the system clock is adjusted.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_time: Time,
}

impl Clock {
    /// Anchors the clock to `SystemTime::now()`.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            start: Instant::now(),
            start_time: Time::ZERO + since_epoch,
        }
    }

    /// The current protocol time.
    pub fn now(&self) -> Time {
        self.time_of(Instant::now())
    }

    /// The protocol time of `instant`.
    pub fn time_of(&self, instant: Instant) -> Time {
        self.start_time + instant.saturating_duration_since(self.start)
    }

    /// The instant of protocol time `t` (saturating at the anchor for earlier times).
    pub fn instant_of(&self, t: Time) -> Instant {
        let after = t - self.start_time;
        self.start
            .checked_add(after)
            .unwrap_or_else(|| self.start + Duration::from_secs(86_400 * 365))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_advances() {
        let c = Clock::new();
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
