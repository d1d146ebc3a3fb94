//! Connections between nodes and the frames on them: dials, closes, routing through the link
//! model, and delivery into the receiving node.

use std::net::SocketAddr;

use bytes::Bytes;
use x0x_proto::MachineId;
use x0x_proto::node::Direction;
use x0x_proto::wire::FrameKind;

use super::event::Ev;
use super::trace::TraceTag;
use super::{Sim, World, ms};
use crate::net::{FrameFate, addr_of, index_of_addr};

/// One side of an open connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    pub(crate) peer: u32,
    pub(crate) id: u64,
    /// When the link's bandwidth queue empties (with a bandwidth limit).
    pub(crate) busy_until: u64,
    /// Arrival time of the last in-order frame (FIFO per connection).
    pub(crate) last_arrival: u64,
}

impl Conn {
    fn new(peer: u32, id: u64) -> Self {
        Self {
            peer,
            id,
            busy_until: 0,
            last_arrival: 0,
        }
    }
}

impl Sim<'_> {
    /// A frame arrives at `to`: dropped if `to` is down, closed the connection, or is cut off;
    /// else counted, traced and handed to the node.
    pub(super) fn deliver_frame(&mut self, from: u32, to: u32, conn: u64, bytes: Bytes) {
        let w = &mut self.w;
        let now = w.now;
        let s = &w.slots[to as usize];
        if !s.alive {
            w.m.drops.dead_target += 1;
            return;
        }
        if !s.conns.iter().any(|c| c.peer == from && c.id == conn) {
            w.m.drops.closed_connection += 1;
            return;
        }
        if w.cut(from, to) {
            w.m.drops.partition += 1;
            return;
        }
        w.slots[to as usize].bytes_recv += bytes.len() as u64;
        w.m.processed += 1;
        let kind = bytes.get(1).copied().unwrap_or(0);
        w.m.recv_by_kind[kind as usize] += 1;
        let tail = bytes.len().saturating_sub(8);
        let mut t8 = [0u8; 8];
        t8[..bytes.len() - tail].copy_from_slice(&bytes[tail..]);
        w.trace.rec(
            now,
            TraceTag::FrameReceived,
            to,
            (u64::from(from) << 32) ^ (u64::from(kind) << 24) ^ bytes.len() as u64,
        );
        w.trace
            .rec(now, TraceTag::FrameTail, 0, u64::from_le_bytes(t8));
        if kind == FrameKind::Gossip.byte() {
            w.attribute_gossip(to, &bytes);
        }
        let peer = w.ids[from as usize];
        self.call(to, |n, t| {
            let _ = n.handle_frame(t, peer, &bytes);
        });
    }

    /// A dial of `from` (incarnation `inc`) reached `to`: opens the connection unless the
    /// target died or got cut off meanwhile, or the pair is already connected.
    pub(super) fn dial_done(&mut self, from: u32, to: u32, inc: u32, started: u64) {
        let w = &mut self.w;
        let now = w.now;
        let d = &w.slots[from as usize];
        if !d.alive || d.inc != inc {
            return;
        }
        if !w.slots[to as usize].alive || w.cut(from, to) {
            let at = (started + ms(w.net.config().dial_timeout_ms)).max(now);
            w.push(
                at,
                Ev::DialFail {
                    node: from,
                    inc,
                    addr: addr_of(to),
                },
            );
            return;
        }
        if w.slots[from as usize].conns.iter().any(|c| c.peer == to) {
            w.m.dials_redundant += 1;
            return;
        }
        // A stale side at the target (its peer closed, the notice still in flight) goes first.
        let t = &mut w.slots[to as usize];
        if let Some(p) = t.conns.iter().position(|c| c.peer == from) {
            t.conns.swap_remove(p);
            let pid = w.ids[from as usize];
            self.call(to, |n, t| n.handle_disconnected(t, pid));
        }
        let w = &mut self.w;
        let id = w.next_conn;
        w.next_conn += 1;
        w.m.connections += 1;
        w.slots[from as usize].conns.push(Conn::new(to, id));
        w.slots[to as usize].conns.push(Conn::new(from, id));
        w.trace.rec(now, TraceTag::Connected, from, u64::from(to));
        let (fid, tid) = (w.ids[from as usize], w.ids[to as usize]);
        self.call(from, |n, t| {
            n.handle_connected(t, tid, addr_of(to), Direction::Outbound);
        });
        self.call(to, |n, t| {
            n.handle_connected(t, fid, addr_of(from), Direction::Inbound);
        });
    }

    /// `node` learns that `peer` closed connection `conn` (if it still has that side open).
    pub(super) fn disconnect(&mut self, node: u32, peer: u32, conn: u64) {
        let now = self.w.now;
        let s = &mut self.w.slots[node as usize];
        if let Some(p) = s.conns.iter().position(|c| c.peer == peer && c.id == conn) {
            s.conns.swap_remove(p);
            self.w
                .trace
                .rec(now, TraceTag::Disconnected, node, u64::from(peer));
            let pid = self.w.ids[peer as usize];
            self.call(node, |n, t| n.handle_disconnected(t, pid));
        }
    }
}

impl World {
    /// Whether an active partition separates `a` and `b`.
    pub(crate) fn cut(&self, a: u32, b: u32) -> bool {
        self.partition_active && self.group[a as usize] != self.group[b as usize]
    }

    /// Sends node `i`'s frame to machine `to` over their connection: the link model decides
    /// its fate and arrival (after the link's bandwidth queue, in order unless reordered).
    pub(crate) fn route(&mut self, i: u32, to: MachineId, kind: FrameKind, frame: Bytes) {
        if self.adversary_filter(i, kind, &frame) {
            return;
        }
        let len = frame.len() as u64;
        self.m.sent_by_kind[kind.byte() as usize] += 1;
        self.slots[i as usize].bytes_sent += len;
        if let Some(run) = self.presence.as_mut()
            && matches!(
                kind,
                FrameKind::Beacon | FrameKind::PresenceQuery | FrameKind::PresenceAnswer
            )
        {
            run.bytes += len;
        }
        let Some(&j) = self.by_id.get(&to) else {
            self.m.drops.unknown_peer += 1;
            return;
        };
        let Some(ci) = self.slots[i as usize]
            .conns
            .iter()
            .position(|c| c.peer == j)
        else {
            self.m.drops.no_connection += 1;
            return;
        };
        if self.cut(i, j) {
            self.m.drops.partition += 1;
            return;
        }
        let FrameFate::Deliver {
            delay_us,
            duplicate_extra_us,
            reordered,
        } = self.net.frame(&mut self.net_rng, i, j)
        else {
            self.m.drops.loss += 1;
            return;
        };
        let Some(at) = self.arrival(i, ci, len, delay_us, reordered) else {
            self.m.drops.queue_full += 1;
            return;
        };
        let conn = self.slots[i as usize].conns[ci].id;
        if let Some(extra) = duplicate_extra_us {
            self.push(
                at + extra,
                Ev::Frame {
                    from: i,
                    to: j,
                    conn,
                    bytes: frame.clone(),
                },
            );
        }
        self.push(
            at,
            Ev::Frame {
                from: i,
                to: j,
                conn,
                bytes: frame,
            },
        );
    }

    /// When a frame of `len` bytes sent now on `i`'s connection `ci` arrives, `delay_us` after
    /// it leaves: after the link's bandwidth queue (`None`: the queue is full), and in order on
    /// the connection unless `reordered`.
    fn arrival(
        &mut self,
        i: u32,
        ci: usize,
        len: u64,
        delay_us: u64,
        reordered: bool,
    ) -> Option<u64> {
        let now = self.now;
        let cfg = self.net.config();
        let (bw, queue, fifo) = (cfg.bandwidth_bytes_per_sec, cfg.queue_bytes, cfg.fifo);
        let c = &mut self.slots[i as usize].conns[ci];
        let mut depart = now;
        if bw > 0 {
            let start = c.busy_until.max(now);
            let backlog = ((start - now) as u128 * u128::from(bw) / 1_000_000) as u64;
            if backlog + len > queue {
                return None;
            }
            c.busy_until = start + (u128::from(len) * 1_000_000).div_ceil(u128::from(bw)) as u64;
            depart = c.busy_until;
        }
        let mut at = depart + delay_us;
        if fifo && !reordered {
            at = at.max(c.last_arrival);
            c.last_arrival = at;
        }
        Some(at)
    }

    /// Node `i` dials `addr`: done after a round trip if a live, reachable node has it, else
    /// failed after the dial timeout.
    pub(crate) fn dial(&mut self, i: u32, addr: SocketAddr) {
        self.m.dials += 1;
        let inc = self.slots[i as usize].inc;
        let target = index_of_addr(&addr).filter(|&j| (j as usize) < self.slots.len() && j != i);
        match target {
            Some(j) if self.slots[j as usize].alive && !self.cut(i, j) => {
                let at = self.now + self.net.rtt_us(i, j);
                self.push(
                    at,
                    Ev::DialDone {
                        from: i,
                        to: j,
                        inc,
                        started: self.now,
                    },
                );
            }
            _ => {
                let at = self.now + ms(self.net.config().dial_timeout_ms);
                self.push(at, Ev::DialFail { node: i, inc, addr });
            }
        }
    }

    /// Closes `i`'s side of its connection to `peer` and schedules the notice to the other
    /// side, after every frame already in flight; returns whether there was a connection.
    pub(crate) fn close(&mut self, i: u32, peer: MachineId) -> bool {
        let Some(&j) = self.by_id.get(&peer) else {
            return false;
        };
        let s = &mut self.slots[i as usize];
        let Some(p) = s.conns.iter().position(|c| c.peer == j) else {
            return false;
        };
        let c = s.conns.swap_remove(p);
        self.trace
            .rec(self.now, TraceTag::ConnectionClosed, i, u64::from(j));
        if self.slots[j as usize]
            .conns
            .iter()
            .any(|x| x.peer == i && x.id == c.id)
        {
            let at = (self.now + self.net.base_latency_us(i, j) + 1).max(c.last_arrival + 1);
            self.push(
                at,
                Ev::Disconnect {
                    node: j,
                    peer: i,
                    conn: c.id,
                },
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{CryptoMode, Latency, Scenario};
    use crate::sim::EPOCH_US;

    fn scenario(n: usize) -> Scenario {
        Scenario {
            nodes: n,
            crypto: CryptoMode::StandIn,
            ..Scenario::default()
        }
    }

    fn connect(w: &mut World, a: u32, b: u32) {
        let id = w.next_conn;
        w.next_conn += 1;
        for (x, y) in [(a, b), (b, a)] {
            w.slots[x as usize].alive = true;
            w.slots[x as usize].conns.push(Conn {
                peer: y,
                id,
                busy_until: 0,
                last_arrival: 0,
            });
        }
    }

    fn frames_queued(w: &World) -> usize {
        w.queue
            .iter()
            .filter(|q| matches!(q.ev, Ev::Frame { .. }))
            .count()
    }

    #[test]
    fn partition_blocks_frames_and_dials_then_heals() {
        let sc = scenario(2);
        let mut sim = Sim::new(&sc, 1);
        let w = &mut sim.w;
        connect(w, 0, 1);
        let to = w.ids[1];
        w.group = vec![0, 1];
        w.partition_active = true;
        w.route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        assert_eq!((w.m.drops.partition, frames_queued(w)), (1, 0));
        w.dial(0, addr_of(1));
        assert!(w.queue.iter().any(|q| matches!(q.ev, Ev::DialFail { .. })));
        w.partition_active = false;
        w.route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        assert_eq!((w.m.drops.partition, frames_queued(w)), (1, 1));
        w.dial(0, addr_of(1));
        assert!(w.queue.iter().any(|q| matches!(q.ev, Ev::DialDone { .. })));
    }

    #[test]
    fn frames_to_a_crashed_node_vanish_silently() {
        let sc = scenario(2);
        let mut sim = Sim::new(&sc, 1);
        connect(&mut sim.w, 0, 1);
        let to = sim.w.ids[1];
        sim.w
            .route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        sim.crash(1);
        let q = std::iter::from_fn(|| sim.w.queue.pop())
            .find(|q| matches!(q.ev, Ev::Frame { .. }))
            .unwrap();
        sim.w.now = q.at;
        if let Ev::Frame {
            from,
            to,
            conn,
            bytes,
        } = q.ev
        {
            sim.deliver_frame(from, to, conn, bytes);
        }
        assert_eq!(sim.w.m.drops.dead_target, 1);
        assert_eq!(sim.w.m.processed, 0);
        // The survivor still has its side open: nobody told it.
        assert_eq!(sim.w.slots[0].conns.len(), 1);
    }

    #[test]
    fn loss_and_latency_follow_the_model() {
        let mut sc = scenario(2);
        sc.network.loss = 0.1;
        sc.network.loss_model = crate::scenario::LossModel::Drop;
        sc.network.jitter_ms = 5.0;
        sc.network.fifo = false;
        sc.network.latency = Latency::Uniform {
            min_ms: 10.0,
            max_ms: 50.0,
        };
        let mut sim = Sim::new(&sc, 9);
        sim.w.queue.clear();
        connect(&mut sim.w, 0, 1);
        let to = sim.w.ids[1];
        for _ in 0..20_000 {
            sim.w
                .route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        }
        let lost = sim.w.m.drops.loss;
        assert!((1_800..2_200).contains(&lost), "lost {lost} of 20000");
        let base = sim.w.net.base_latency_us(0, 1);
        assert!((10_000..=50_000).contains(&base));
        let now = sim.w.now;
        for q in sim.w.queue.iter() {
            let d = q.at - now;
            assert!((base..=base + 5_000).contains(&d), "delay {d} base {base}");
        }
    }

    #[test]
    fn fifo_keeps_a_connection_in_order() {
        let mut sc = scenario(2);
        sc.network.jitter_ms = 20.0;
        let mut sim = Sim::new(&sc, 3);
        sim.w.queue.clear();
        connect(&mut sim.w, 0, 1);
        let to = sim.w.ids[1];
        for k in 0..100u64 {
            sim.w.now = EPOCH_US + k;
            sim.w
                .route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        }
        let mut v: Vec<(u64, u64)> = sim.w.queue.iter().map(|q| (q.seq, q.at)).collect();
        v.sort_unstable();
        assert!(v.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
