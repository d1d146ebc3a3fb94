//! A minimal deterministic network for multi-node unit tests of the core (the full simulator
//! with loss, partitions and reports is `x0x-sim`). Links have a fixed latency per pair.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::super::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Wake(usize),
    Connected(usize, usize),
    Frame(usize, usize, Bytes),
    Disconnected(usize, usize),
}

pub(super) struct Net {
    pub(super) nodes: Vec<Option<Node>>,
    pub(super) ids: Vec<MachineId>,
    by_id: BTreeMap<MachineId, usize>,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    pub(super) now: Time,
    /// Messages delivered by the network (`hops` ≥ 1).
    pub(super) deliveries: Vec<(usize, Delivery, Time)>,
    /// A node's own publishes delivered to itself (`hops` 0).
    pub(super) own_deliveries: Vec<(usize, Delivery, Time)>,
    pub(super) events: Vec<(usize, Event)>,
    pub(super) frames: u64,
}

pub(super) fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5483))
}

fn index_of(a: &SocketAddr) -> usize {
    match a.ip() {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            ((o[1] as usize) << 16) | ((o[2] as usize) << 8) | o[3] as usize
        }
        std::net::IpAddr::V6(_) => usize::MAX,
    }
}

impl Net {
    /// `n` nodes; node i > 0 bootstraps to node `i / 2` (a tree of contacts), all started at once.
    pub(super) fn new(n: usize, config: impl Fn(usize) -> Config) -> Self {
        Self::new_with(n, config, |i| Duration::from_millis(i as u64))
    }

    /// As [`Net::new`], node `i` starting after `start(i)`.
    pub(super) fn new_with(
        n: usize,
        config: impl Fn(usize) -> Config,
        start: impl Fn(usize) -> Duration,
    ) -> Self {
        let epoch = Time::from_secs(1_767_225_600);
        let mut nodes = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let mut c = config(i);
            c.listen_addrs = vec![addr_of(i)];
            if i > 0 && c.bootstrap.is_empty() {
                c.bootstrap = vec![addr_of(i / 2)];
            }
            let node = Node::new(Identity::from_seed(seed), c, seed).unwrap();
            ids.push(node.machine_id());
            nodes.push(Some(node));
        }
        let by_id = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut net = Self {
            nodes,
            ids,
            by_id,
            queue: BinaryHeap::new(),
            seq: 0,
            now: epoch,
            deliveries: Vec::new(),
            own_deliveries: Vec::new(),
            events: Vec::new(),
            frames: 0,
        };
        for i in 0..n {
            let now = net.now + start(i);
            net.push(now, Ev::Wake(i));
        }
        net
    }

    /// The sum of a counter over the live nodes.
    pub(super) fn sum(&self, counter: impl Fn(&Node) -> u64) -> u64 {
        self.nodes.iter().flatten().map(counter).sum()
    }

    /// One-way latency between nodes `a` and `b` (fixed per pair).
    pub(crate) fn latency(&self, a: usize, b: usize) -> Duration {
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        let h = blake3::hash(&[x.to_le_bytes(), y.to_le_bytes()].concat());
        Duration::from_millis(10 + u64::from(h.as_bytes()[0]) % 41)
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at.as_micros(), self.seq, ev)));
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        let mut actions = Vec::new();
        while let Some(a) = node.poll_action() {
            actions.push(a);
        }
        while let Some(e) = node.poll_event() {
            if let Event::Message(d) = &e {
                let to = if d.hops == 0 {
                    &mut self.own_deliveries
                } else {
                    &mut self.deliveries
                };
                to.push((i, d.clone(), now));
            }
            self.events.push((i, e));
        }
        let wake = node.poll_timeout();
        for t in out {
            let j = self.by_id[&t.to];
            let at = now + self.latency(i, j);
            self.push(at, Ev::Frame(i, j, t.frame));
        }
        for a in actions {
            match a {
                Action::Dial { addr, .. } => {
                    let j = index_of(&addr);
                    if j < self.nodes.len()
                        && self.nodes[j].as_ref().is_some_and(|n| n.started)
                        && j != i
                    {
                        let rtt = self.latency(i, j) * 2;
                        self.push(now + rtt, Ev::Connected(i, j));
                    } else if let Some(n) = self.nodes[i].as_mut() {
                        n.handle_dial_failed(now, addr);
                    }
                }
                Action::Close { peer, .. } => {
                    let j = self.by_id[&peer];
                    self.push(now, Ev::Disconnected(i, j));
                    let at = now + self.latency(i, j) + Duration::from_micros(1);
                    self.push(at, Ev::Disconnected(j, i));
                }
            }
        }
        if let Some(w) = wake {
            self.push(w.max(now), Ev::Wake(i));
        }
    }

    /// Runs until `until` (simulated).
    pub(super) fn run_until(&mut self, until: Time) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until.as_micros() {
                break;
            }
            let Reverse((at, _, ev)) = self.queue.pop().unwrap();
            self.now = Time::from_micros(at);
            let now = self.now;
            let i = match ev {
                Ev::Wake(i) => {
                    if let Some(n) = self.nodes[i].as_mut() {
                        if n.poll_timeout().is_none_or(|w| w > now) && n.started {
                            continue; // stale wake-up
                        }
                        n.handle_timeout(now);
                    }
                    i
                }
                Ev::Connected(i, j) => {
                    let (idi, idj) = (self.ids[i], self.ids[j]);
                    if self.nodes[j].is_none() {
                        if let Some(n) = self.nodes[i].as_mut() {
                            n.handle_dial_failed(now, addr_of(j));
                        }
                        i
                    } else {
                        if let Some(n) = self.nodes[i].as_mut() {
                            n.handle_connected(now, idj, addr_of(j), Direction::Outbound);
                        }
                        if let Some(n) = self.nodes[j].as_mut() {
                            n.handle_connected(now, idi, addr_of(i), Direction::Inbound);
                        }
                        self.drain(j);
                        i
                    }
                }
                Ev::Frame(from, to, bytes) => {
                    let id = self.ids[from];
                    if let Some(n) = self.nodes[to].as_mut() {
                        self.frames += 1;
                        let _ = n.handle_frame(now, id, &bytes);
                    }
                    to
                }
                Ev::Disconnected(at_node, other) => {
                    let id = self.ids[other];
                    if let Some(n) = self.nodes[at_node].as_mut() {
                        n.handle_disconnected(now, id);
                    }
                    at_node
                }
            };
            self.drain(i);
        }
        self.now = until;
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub(super) fn node(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().unwrap()
    }

    /// Calls `f` on node `i` at the current time and drains it.
    pub(super) fn with(&mut self, i: usize, f: impl FnOnce(&mut Node, Time)) {
        let now = self.now;
        f(self.node(i), now);
        self.drain(i);
    }

    pub(super) fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Connected components of the active-view graph among live nodes, and isolated nodes.
    pub(super) fn components(&self) -> (usize, usize) {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            p[x] = r;
            r
        }
        let mut isolated = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let view = node.active_view();
            if view.is_empty() {
                isolated += 1;
            }
            for peer in view {
                let j = self.by_id[&peer];
                if self.nodes[j].is_some() {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
            }
        }
        let mut roots = BTreeSet::new();
        for i in 0..n {
            if self.nodes[i].is_some() {
                roots.insert(find(&mut parent, i));
            }
        }
        (roots.len(), isolated)
    }
}
