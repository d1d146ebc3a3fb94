//! Small measurement structures: a bitset, a latency recorder, union-find.

use crate::report::Percentiles;

/// A fixed-size set of node indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// An empty set over `n` indices.
    pub fn new(n: usize) -> Self {
        Self {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// The set of all `n` indices.
    pub fn full(n: usize) -> Self {
        let mut words = vec![u64::MAX; n.div_ceil(64)];
        if !n.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last = (1u64 << (n % 64)) - 1;
        }
        Self { words }
    }

    /// Whether `i` is in the set (out of range: no).
    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds `i` (must be in range).
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// `|self ∩ other|`, or `|self|` without `other`.
    pub fn count_and(&self, other: Option<&Self>) -> u64 {
        match other {
            None => self.words.iter().map(|w| u64::from(w.count_ones())).sum(),
            Some(o) => self
                .words
                .iter()
                .zip(&o.words)
                .map(|(a, b)| u64::from((a & b).count_ones()))
                .sum(),
        }
    }

    /// `|self ∩ a ∩ b|`.
    pub fn count_and2(&self, a: &Self, b: &Self) -> u64 {
        self.words
            .iter()
            .zip(&a.words)
            .zip(&b.words)
            .map(|((x, y), z)| u64::from((x & y & z).count_ones()))
            .sum()
    }
}

/// Records latencies (microseconds): exactly up to [`LatencyRecorder::EXACT_CAP`] values,
/// and always in a log-linear histogram (1/64 relative resolution) beyond that.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    exact: Vec<u32>,
    overflowed: bool,
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self {
            exact: Vec::new(),
            overflowed: false,
            buckets: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

const BUCKETS: usize = 128 + 57 * 64;

fn bucket(v: u64) -> usize {
    if v < 128 {
        v as usize
    } else {
        let e = 63 - v.leading_zeros() as usize; // >= 7
        let m = (v >> (e - 6)) as usize; // in [64, 128)
        128 + (e - 7) * 64 + (m - 64)
    }
}

fn bucket_low(b: usize) -> u64 {
    if b < 128 {
        b as u64
    } else {
        let e = (b - 128) / 64 + 7;
        let m = ((b - 128) % 64 + 64) as u64;
        m << (e - 6)
    }
}

impl LatencyRecorder {
    /// Values kept exactly before the recorder relies on its histogram alone.
    pub const EXACT_CAP: usize = 8 << 20;

    /// Records one value.
    pub fn record(&mut self, us: u64) {
        self.count += 1;
        self.max = self.max.max(us);
        self.buckets[bucket(us)] += 1;
        if !self.overflowed {
            if self.exact.len() < Self::EXACT_CAP && us <= u64::from(u32::MAX) {
                self.exact.push(us as u32);
            } else {
                self.overflowed = true;
                self.exact = Vec::new();
            }
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` in microseconds (nearest rank).
    fn quantiles(&self, qs: &[f64]) -> Vec<u64> {
        if self.count == 0 {
            return vec![0; qs.len()];
        }
        let rank = |q: f64| ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if !self.overflowed {
            let mut v = self.exact.clone();
            v.sort_unstable();
            return qs
                .iter()
                .map(|&q| u64::from(v[rank(q) as usize - 1]))
                .collect();
        }
        qs.iter()
            .map(|&q| {
                let target = rank(q);
                let mut seen = 0;
                for (b, &c) in self.buckets.iter().enumerate() {
                    seen += c;
                    if seen >= target {
                        return bucket_low(b).min(self.max);
                    }
                }
                self.max
            })
            .collect()
    }

    /// p50, p99 and max in milliseconds; `None` without values.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.count == 0 {
            return None;
        }
        let q = self.quantiles(&[0.5, 0.99]);
        Some(Percentiles {
            p50: q[0] as f64 / 1000.0,
            p99: q[1] as f64 / 1000.0,
            max: self.max as f64 / 1000.0,
        })
    }

    /// `points` evenly spaced quantiles as `(ms, fraction)` for a CDF chart.
    pub fn cdf(&self, points: usize) -> Vec<(f64, f64)> {
        if self.count == 0 || points == 0 {
            return Vec::new();
        }
        let qs: Vec<f64> = (1..=points).map(|k| k as f64 / points as f64).collect();
        self.quantiles(&qs)
            .into_iter()
            .zip(qs)
            .map(|(v, q)| (v as f64 / 1000.0, q))
            .collect()
    }
}

/// Union-find with path halving and union by size.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    /// The representative of `x`.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] as usize != x {
            let p = self.parent[x] as usize;
            self.parent[x] = self.parent[p];
            x = p;
        }
        x
    }

    /// Merges the sets of `a` and `b`.
    pub fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a as u32;
        self.size[a] += self.size[b];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_tight() {
        let mut last = 0;
        for v in (0..10_000_000u64).step_by(997) {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
            let lo = bucket_low(b);
            assert!(
                lo <= v && (v - lo) as f64 <= v as f64 / 64.0 + 1.0,
                "{v} {lo}"
            );
        }
        assert!(bucket(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_exact_and_bitset() {
        let mut r = LatencyRecorder::default();
        for v in 1..=1000u64 {
            r.record(v * 1000);
        }
        let p = r.percentiles().unwrap();
        assert_eq!((p.p50, p.p99, p.max), (500.0, 990.0, 1000.0));
        let mut b = Bitset::new(130);
        b.set(0);
        b.set(129);
        let f = Bitset::full(130);
        assert_eq!(f.count_and(None), 130);
        assert_eq!(b.count_and(Some(&f)), 2);
        assert!(b.get(129) && !b.get(128) && !b.get(10_000));
        let mut u = UnionFind::new(4);
        u.union(0, 1);
        u.union(2, 3);
        assert_eq!(u.find(1), u.find(0));
        assert_ne!(u.find(1), u.find(3));
    }
}
