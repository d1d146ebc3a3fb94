//! [`PunchLimiter`]: at most one punch step per pair of machines per interval.

use std::time::Duration;

use crate::identity::MachineId;
use crate::time::Time;
use crate::util::fifo::Fifo;

/// When each (from, to) pair last had a punch step here, in a capped table (oldest forgotten
/// first: a forgotten pair is only allowed one step sooner).
#[derive(Debug)]
pub(crate) struct PunchLimiter {
    last: Fifo<(MachineId, MachineId), Time>,
    interval: Duration,
}

impl PunchLimiter {
    pub(crate) fn new(cap: usize, interval: Duration) -> Self {
        Self {
            last: Fifo::new(cap.max(1)),
            interval,
        }
    }

    /// Whether a step for (`from`, `to`) may happen now; if so it is recorded.
    pub(crate) fn allow(&mut self, now: Time, from: MachineId, to: MachineId) -> bool {
        if let Some(t) = self.last.get_mut(&(from, to)) {
            if now.saturating_since(*t) < self.interval {
                return false;
            }
            *t = now;
            return true;
        }
        self.last.push((from, to), now);
        true
    }

    /// Pairs remembered.
    pub(crate) fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_step_per_pair_per_interval_in_a_capped_table() {
        let (a, b, c) = (
            MachineId::from_bytes([1; 32]),
            MachineId::from_bytes([2; 32]),
            MachineId::from_bytes([3; 32]),
        );
        let mut l = PunchLimiter::new(2, Duration::from_secs(5));
        let t = Time::from_secs(100);
        assert!(l.allow(t, a, b));
        assert!(!l.allow(t + Duration::from_secs(1), a, b));
        assert!(l.allow(t, a, c), "another pair");
        assert!(l.allow(t + Duration::from_secs(5), a, b));
        assert!(l.allow(t, b, c));
        assert_eq!(l.len(), 2, "capped");
    }
}
