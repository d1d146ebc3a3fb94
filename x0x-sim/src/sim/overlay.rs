//! The overlay measurement: degrees, isolated nodes and connected components of the live
//! nodes' active views, taken once when the workload starts (or at `overlay_at_ms`).

use super::Sim;
use super::trace::TraceTag;
use crate::stats::UnionFind;

impl Sim<'_> {
    /// Measures the undirected active-view graph of the live nodes into the metrics.
    pub(super) fn measure_overlay(&mut self) {
        let n = self.nodes.len();
        let mut uf = UnionFind::new(n);
        let mut degrees: Vec<u64> = Vec::new();
        let (mut live, mut isolated) = (0usize, 0usize);
        for i in 0..n {
            if !self.w.slots[i].alive {
                continue;
            }
            let Some(node) = self.nodes[i].as_ref() else {
                continue;
            };
            live += 1;
            let view = node.active_view();
            if degrees.len() <= view.len() {
                degrees.resize(view.len() + 1, 0);
            }
            degrees[view.len()] += 1;
            if view.is_empty() {
                isolated += 1;
            }
            for peer in view {
                if let Some(&j) = self.w.by_id.get(&peer)
                    && self.w.slots[j as usize].alive
                {
                    uf.union(i, j as usize);
                }
            }
        }
        let mut roots: Vec<usize> = (0..n)
            .filter(|&i| self.w.slots[i].alive)
            .map(|i| uf.find(i))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        let m = &mut self.w.m;
        m.components = roots.len();
        m.isolated = isolated;
        m.degrees = degrees;
        m.live_at_overlay = live;
        self.w.trace.rec(
            self.w.now,
            TraceTag::Overlay,
            live as u32,
            roots.len() as u64,
        );
    }
}
