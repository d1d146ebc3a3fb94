//! A bounded map that forgets its oldest entries first.

use std::collections::{BTreeMap, VecDeque};

/// A map with a cap that evicts in insertion order: the caches of keys, batch roots, query
/// routes, round trips, messages and ids. A lookup is a map lookup; the insertion order is a
/// queue beside it.
#[derive(Debug)]
pub(crate) struct Fifo<K, V> {
    map: BTreeMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Ord + Copy, V> Fifo<K, V> {
    /// An empty map that holds at most `cap` entries.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Inserts `k` as the newest entry; at the cap, the oldest entry goes first and is
    /// returned. A key already present keeps its place and gets the new value.
    pub(crate) fn push(&mut self, k: K, v: V) -> Option<(K, V)> {
        if let Some(old) = self.map.get_mut(&k) {
            *old = v;
            return None;
        }
        let mut evicted = None;
        if self.map.len() >= self.cap
            && let Some(oldest) = self.order.pop_front()
        {
            evicted = self.map.remove(&oldest).map(|v| (oldest, v));
        }
        self.map.insert(k, v);
        self.order.push_back(k);
        evicted
    }

    /// Removes `k` (a scan of the order: for rare removals only).
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k)?;
        self.order.retain(|x| x != k);
        Some(v)
    }

    /// Removes the oldest entries while `expired` says so of them (time-bounded caches, whose
    /// entries are pushed in time order).
    pub(crate) fn pop_oldest_while(&mut self, mut expired: impl FnMut(&V) -> bool) {
        while let Some(k) = self.order.front() {
            if !self.map.get(k).is_some_and(&mut expired) {
                break;
            }
            self.map.remove(k);
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_first() {
        let mut f = Fifo::new(2);
        assert_eq!(f.push(1, 'a'), None);
        assert_eq!(f.push(2, 'b'), None);
        assert_eq!(f.push(1, 'c'), None, "a present key keeps its place");
        assert_eq!(f.push(3, 'd'), Some((1, 'c')));
        assert_eq!(f.len(), 2);
        assert_eq!(f.remove(&2), Some('b'));
        assert_eq!(f.push(4, 'e'), None);
        assert_eq!(f.push(5, 'f'), Some((3, 'd')));
        f.pop_oldest_while(|v| *v < 'f');
        assert!(!f.contains_key(&4) && f.get(&5) == Some(&'f'));
    }
}
