//! A small ordered set kept as a sorted vector.

/// A small ordered set: a sorted vector. A topic's eager, lazy and link sets hold a handful of
/// peers, a neighbour's topic list a handful of topics; a `BTreeSet` leaf reserves room for
/// eleven entries from the first insert, this holds what it holds. Iteration is in order, as
/// with a `BTreeSet`, so outputs stay deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmallSet<T>(Vec<T>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SmallSet<T> {
    /// The empty set (usable in constants).
    pub(crate) const fn new() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord + Copy> SmallSet<T> {
    /// The set of `items` (duplicates dropped).
    pub(crate) fn from_slice(items: &[T]) -> Self {
        let mut v = items.to_vec();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    pub(crate) fn contains(&self, x: &T) -> bool {
        self.0.binary_search(x).is_ok()
    }

    /// Whether `x` was new.
    pub(crate) fn insert(&mut self, x: T) -> bool {
        match self.0.binary_search(&x) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, x);
                true
            }
        }
    }

    /// Whether `x` was there.
    pub(crate) fn remove(&mut self, x: &T) -> bool {
        match self.0.binary_search(x) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T> IntoIterator for SmallSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_set_stays_sorted_and_unique() {
        let mut s = SmallSet::from_slice(&[5, 1, 5, 3]);
        assert!(s.insert(2));
        assert!(!s.insert(3));
        assert!(s.remove(&5));
        assert!(!s.remove(&9));
        assert!(s.contains(&1) && !s.contains(&5));
        assert_eq!(s.len(), 3);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
