//! Time as a value: the core never reads a clock.
//!
//! A [`Time`] is a count of microseconds since the Unix epoch. The driver passes the current
//! time into every `handle_*` call; the simulator passes simulated time. Using wall-clock
//! based time (rather than an opaque monotonic instant) lets the same value stamp signed
//! records (`announced_at`, certificate validity) and schedule timers. A driver should derive
//! it from a monotonic clock anchored to the wall clock once at start-up, so that timers never
//! run backwards when the system clock is adjusted.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The Unix epoch.
    pub const ZERO: Self = Self(0);
    /// The latest representable time.
    pub const MAX: Self = Self(u64::MAX);

    /// From microseconds since the Unix epoch.
    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }

    /// From milliseconds since the Unix epoch (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000))
    }

    /// From seconds since the Unix epoch (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// Whole seconds since the Unix epoch (the unit of signed timestamps).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Time::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(us))
    }
}

impl Add<Duration> for Time {
    type Output = Self;
    /// Saturating addition.
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl Sub for Time {
    type Output = Duration;
    /// Saturating difference (zero if `rhs` is later).
    fn sub(self, rhs: Self) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({}.{:06})", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs(10);
        assert_eq!(
            t + Duration::from_millis(1500),
            Time::from_micros(11_500_000)
        );
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(Time::ZERO - t, Duration::ZERO);
        assert_eq!(t - Time::ZERO, Duration::from_secs(10));
        assert_eq!(Time::from_millis(2_500).as_secs(), 2);
        assert_eq!(Time::ZERO + Duration::MAX, Time::MAX);
    }
}
