//! The link model: per-pair base latency from a hash (no n² table), per-frame jitter, loss,
//! duplication and reordering, synthetic addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Latency, LossModel, NetworkConfig};

/// The port of every synthetic node address.
pub const SIM_PORT: u16 = 5483;

/// The synthetic address of node `index`: `10.x.y.z:5483` with `x.y.z` the index in base 256.
/// Never used for real I/O: the simulator maps it back with [`index_of_addr`].
pub fn addr_of(index: u32) -> SocketAddr {
    let [_, x, y, z] = index.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, x, y, z)), SIM_PORT)
}

/// The node index of a synthetic address, if it is one.
pub fn index_of_addr(addr: &SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V4(a) if a.port() == SIM_PORT && a.ip().octets()[0] == 10 => {
            let [_, x, y, z] = a.ip().octets();
            Some(u32::from_be_bytes([0, x, y, z]))
        }
        _ => None,
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed hash of one `u64`.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform float in `[0, 1)` from 53 bits of `h`.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What the model decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFate {
    /// Lost.
    Lost,
    /// Delivered after `delay_us`; `duplicate_extra_us` is set when a second copy arrives that
    /// much later; `reordered` when the delay ignores the connection's FIFO order.
    Deliver {
        /// Delay from send to arrival, microseconds (base latency + jitter + reorder delay).
        delay_us: u64,
        /// Extra delay of a duplicate copy, if any.
        duplicate_extra_us: Option<u64>,
        /// The frame may overtake earlier frames of its connection.
        reordered: bool,
    },
}

/// The network model of one run.
#[derive(Debug, Clone)]
pub struct LinkModel {
    cfg: NetworkConfig,
    key: u64,
}

impl LinkModel {
    /// A model for `cfg` whose per-link latencies derive from `seed`.
    pub fn new(cfg: NetworkConfig, seed: u64) -> Self {
        Self {
            cfg,
            key: mix64(seed ^ 0x6c69_6e6b_6c61_7421),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// The base one-way latency from `a` to `b`, microseconds: a pure function of the seed
    /// and the ordered pair.
    pub fn base_latency_us(&self, a: u32, b: u32) -> u64 {
        let h1 = mix64(self.key ^ ((u64::from(a) << 32) | u64::from(b)));
        let ms = match self.cfg.latency {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * unit(h1),
            Latency::LogNormal {
                median_ms,
                sigma,
                min_ms,
                max_ms,
            } => {
                // Box–Muller from two independent hash outputs.
                let h2 = mix64(h1 ^ 0x5851_f42d_4c95_7f2d);
                let u1 = unit(h1).max(f64::MIN_POSITIVE);
                let u2 = unit(h2);
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (median_ms * (sigma * z).exp()).clamp(min_ms, max_ms)
            }
        };
        (ms * 1000.0).round() as u64
    }

    /// Round trip between `a` and `b`, microseconds.
    pub fn rtt_us(&self, a: u32, b: u32) -> u64 {
        self.base_latency_us(a, b) + self.base_latency_us(b, a)
    }

    /// Decides one frame's fate from `a` to `b`, drawing from the network RNG.
    pub fn frame(&self, rng: &mut ChaCha8Rng, a: u32, b: u32) -> FrameFate {
        let c = &self.cfg;
        let mut delay = self.base_latency_us(a, b);
        if c.loss > 0.0 {
            match c.loss_model {
                LossModel::Drop => {
                    if rng.random_bool(c.loss) {
                        return FrameFate::Lost;
                    }
                }
                LossModel::Retransmit => {
                    // Each loss costs a probe timeout of 1.5 round trips (QUIC's PTO is about
                    // smoothed RTT + 4·rttvar + ack delay; 1.5 RTT is its steady-state shape).
                    // Bounded: ten losses in a row at 5 % is a 1e-13 event.
                    let pto = 3 * delay + 1000;
                    for _ in 0..10 {
                        if !rng.random_bool(c.loss) {
                            break;
                        }
                        delay += pto;
                    }
                }
            }
        }
        if c.jitter_ms > 0.0 {
            delay += rng.random_range(0..=(c.jitter_ms * 1000.0) as u64);
        }
        let reordered = c.reorder > 0.0 && rng.random_bool(c.reorder);
        if reordered {
            delay += rng.random_range(0..=(c.reorder_max_ms * 1000.0) as u64);
        }
        let duplicate_extra_us = (c.duplicate > 0.0 && rng.random_bool(c.duplicate))
            .then(|| 1 + rng.random_range(0..=(c.jitter_ms * 1000.0) as u64));
        FrameFate::Deliver {
            delay_us: delay,
            duplicate_extra_us,
            reordered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn addresses_round_trip() {
        for i in [0u32, 1, 255, 256, 65_535, 100_000, (1 << 24) - 1] {
            assert_eq!(index_of_addr(&addr_of(i)), Some(i));
        }
        assert_eq!(index_of_addr(&"127.0.0.1:5483".parse().unwrap()), None);
        assert_eq!(index_of_addr(&"10.0.0.1:80".parse().unwrap()), None);
    }

    #[test]
    fn latencies_stay_in_range() {
        let dists = [
            (Latency::Fixed { ms: 50.0 }, 50_000, 50_000),
            (
                Latency::Uniform {
                    min_ms: 10.0,
                    max_ms: 50.0,
                },
                10_000,
                50_000,
            ),
            (
                Latency::LogNormal {
                    median_ms: 30.0,
                    sigma: 0.8,
                    min_ms: 2.0,
                    max_ms: 300.0,
                },
                2_000,
                300_000,
            ),
        ];
        for (lat, lo, hi) in dists {
            let m = LinkModel::new(
                NetworkConfig {
                    latency: lat.clone(),
                    ..NetworkConfig::default()
                },
                7,
            );
            let mut sum = 0u64;
            for a in 0..100 {
                for b in 0..100 {
                    let l = m.base_latency_us(a, b);
                    assert!((lo..=hi).contains(&l), "{lat:?}: {l}");
                    assert_eq!(l, m.base_latency_us(a, b), "fixed per pair");
                    sum += l;
                }
            }
            let mean = sum as f64 / 10_000.0;
            if let Latency::Uniform { .. } = lat {
                assert!((29_000.0..31_000.0).contains(&mean), "uniform mean {mean}");
            }
            if let Latency::LogNormal { .. } = lat {
                // median of the draws is near the configured median
                let mut v: Vec<u64> = (0..10_000).map(|i| m.base_latency_us(i, i + 1)).collect();
                v.sort_unstable();
                assert!((27_000..33_000).contains(&v[5_000]), "median {}", v[5_000]);
            }
        }
    }

    #[test]
    fn retransmitted_loss_delays_and_never_drops() {
        let m = LinkModel::new(
            NetworkConfig {
                loss: 0.05,
                ..NetworkConfig::default()
            },
            1,
        );
        let base = m.base_latency_us(1, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut delayed = 0;
        for _ in 0..100_000 {
            match m.frame(&mut rng, 1, 2) {
                FrameFate::Lost => panic!("a QUIC stream does not lose frames"),
                FrameFate::Deliver { delay_us, .. } => delayed += usize::from(delay_us > base),
            }
        }
        assert!(
            (4_700..5_300).contains(&delayed),
            "delayed {delayed} of 100000"
        );
    }

    #[test]
    fn loss_rate_is_respected() {
        let m = LinkModel::new(
            NetworkConfig {
                loss: 0.05,
                loss_model: LossModel::Drop,
                ..NetworkConfig::default()
            },
            1,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let lost = (0..100_000)
            .filter(|_| m.frame(&mut rng, 1, 2) == FrameFate::Lost)
            .count();
        assert!((4_700..5_300).contains(&lost), "lost {lost} of 100000");
    }
}
