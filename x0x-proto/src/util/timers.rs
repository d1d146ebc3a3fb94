//! A set of pending timers, each a deadline and what it is for.

use std::collections::BTreeSet;

use crate::time::Time;

/// Pending timers as `(deadline, kind)` pairs in an ordered set: the next deadline is the
/// first element, timers due at once fire in `(deadline, kind)` order (deterministic), and a
/// stale timer is harmless because each handler re-checks the state it acts on.
#[derive(Debug)]
pub(crate) struct Timers<T>(BTreeSet<(Time, T)>);

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self(BTreeSet::new())
    }
}

impl<T: Ord + Copy> Timers<T> {
    /// Arms `timer` for `at` (a second arming at another time is a second timer).
    pub(crate) fn set(&mut self, at: Time, timer: T) {
        self.0.insert((at, timer));
    }

    /// Disarms `timer` armed for `at`, so it does not wake the node for nothing.
    pub(crate) fn cancel(&mut self, at: Time, timer: T) {
        self.0.remove(&(at, timer));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        self.0.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`. Call it in a loop: a handler may
    /// arm timers that are due at once too.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<T> {
        let &(at, timer) = self.0.first()?;
        if at > now {
            return None;
        }
        self.0.pop_first();
        Some(timer)
    }

    /// Disarms every timer.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_then_kind_order() {
        let mut t = Timers::default();
        t.set(Time::from_micros(5), 2u8);
        t.set(Time::from_micros(5), 1u8);
        t.set(Time::from_micros(9), 0u8);
        t.set(Time::from_micros(7), 3u8);
        t.cancel(Time::from_micros(7), 3);
        assert_eq!(t.next(), Some(Time::from_micros(5)));
        assert_eq!(t.pop_due(Time::from_micros(4)), None);
        let now = Time::from_micros(8);
        assert_eq!(t.pop_due(now), Some(1));
        assert_eq!(t.pop_due(now), Some(2));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.next(), Some(Time::from_micros(9)));
        t.clear();
        assert_eq!(t.next(), None);
    }
}
