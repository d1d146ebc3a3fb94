//! The φ accrual failure detector (Hayashibara et al., "The φ Accrual Failure Detector",
//! SRDS 2004), fed by every beacon.
//!
//! For a peer it keeps the last inter-arrival times of its beacons. At time `t`, with the
//! last arrival at `t₀`, `φ(t) = -log₁₀ P(next arrival later than t)`, the tail of a normal
//! distribution with the history's mean and standard deviation (at least a floor, so a peer
//! with perfectly regular beacons still gets slack for one delayed by a retransmission). The
//! tail uses the logistic approximation of the normal CDF that Akka's detector uses:
//! `P ≈ e^(-y·(1.5976 + 0.070566·y²)) / (1 + e^(-y·(1.5976 + 0.070566·y²)))`, `y = (Δ − μ)/σ`.
//! The peer is suspected once `φ` exceeds the threshold: since `φ` only grows with `Δ`, that
//! moment is computed once per arrival ([`PhiDetector::deadline`]) instead of polled.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Time;

/// Arrival history of one peer.
#[derive(Debug, Clone)]
pub(crate) struct PhiDetector {
    last: Time,
    /// Inter-arrival times, newest last, at most `cap`.
    intervals: VecDeque<Duration>,
    cap: usize,
}

impl PhiDetector {
    /// A detector whose first arrival is `now`, seeded with the expected interval (so a peer
    /// that never beacons again is still detected).
    pub(crate) fn new(now: Time, expected: Duration, cap: usize) -> Self {
        let mut intervals = VecDeque::with_capacity(cap.max(1));
        intervals.push_back(expected);
        Self {
            last: now,
            intervals,
            cap: cap.max(1),
        }
    }

    /// A beacon arrived at `now`.
    pub(crate) fn arrival(&mut self, now: Time) {
        if now > self.last {
            if self.intervals.len() == self.cap {
                self.intervals.pop_front();
            }
            self.intervals.push_back(now.saturating_since(self.last));
            self.last = now;
        }
    }

    /// Mean and standard deviation (floored at `min_std`) of the history, in seconds.
    fn moments(&self, min_std: Duration) -> (f64, f64) {
        let n = self.intervals.len() as f64;
        let mean = self
            .intervals
            .iter()
            .map(Duration::as_secs_f64)
            .sum::<f64>()
            / n;
        let var = self
            .intervals
            .iter()
            .map(|d| (d.as_secs_f64() - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt().max(min_std.as_secs_f64()))
    }

    /// φ at `now`.
    #[cfg(test)]
    pub(crate) fn phi(&self, now: Time, min_std: Duration) -> f64 {
        let (mean, std) = self.moments(min_std);
        let delta = now.saturating_since(self.last).as_secs_f64();
        phi_of((delta - mean) / std)
    }

    /// When φ reaches `threshold` if no beacon arrives before.
    pub(crate) fn deadline(&self, threshold: f64, min_std: Duration) -> Time {
        let (mean, std) = self.moments(min_std);
        let y = y_for_phi(threshold);
        let after = (mean + y * std).max(0.0);
        self.last + Duration::from_secs_f64(after.min(1e9))
    }
}

/// φ for a normalised delay `y` (logistic approximation of the normal tail).
fn phi_of(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p = e / (1.0 + e);
    if p <= 0.0 { f64::INFINITY } else { -p.log10() }
}

/// The normalised delay at which φ reaches `threshold` (φ grows with `y`: bisection).
fn y_for_phi(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 40.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi_of(mid) < threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> Time {
        Time::from_micros((s * 1e6) as u64)
    }

    #[test]
    fn phi_grows_with_the_delay_and_crosses_at_the_deadline() {
        let min = Duration::from_secs(3);
        let mut d = PhiDetector::new(t(0.0), Duration::from_secs(30), 16);
        for k in 1..=10 {
            d.arrival(t(30.0 * f64::from(k)));
        }
        let last = 300.0;
        assert!(
            d.phi(t(last + 15.0), min) < 1.0,
            "half an interval late is nothing"
        );
        assert!(d.phi(t(last + 30.0), min) < d.phi(t(last + 40.0), min));
        let dl = d.deadline(8.0, min);
        let at = dl.saturating_since(t(last)).as_secs_f64();
        assert!(
            (40.0..60.0).contains(&at),
            "crosses φ=8 {at} s after the last beacon"
        );
        assert!((d.phi(dl, min) - 8.0).abs() < 0.05);
    }

    #[test]
    fn irregular_beacons_widen_the_margin() {
        let min = Duration::from_millis(100);
        let mut regular = PhiDetector::new(t(0.0), Duration::from_secs(10), 8);
        let mut jittery = PhiDetector::new(t(0.0), Duration::from_secs(10), 8);
        let mut at = 0.0;
        for k in 0..8 {
            regular.arrival(t(10.0 * f64::from(k + 1)));
            at += if k % 2 == 0 { 6.0 } else { 14.0 };
            jittery.arrival(t(at));
        }
        let r = regular.deadline(8.0, min).saturating_since(t(80.0));
        let j = jittery.deadline(8.0, min).saturating_since(t(at));
        assert!(j > r, "{j:?} vs {r:?}");
    }

    #[test]
    fn the_history_is_capped() {
        let mut d = PhiDetector::new(t(0.0), Duration::from_secs(1), 4);
        for k in 1..100 {
            d.arrival(t(f64::from(k)));
        }
        assert_eq!(d.intervals.len(), 4);
    }
}
