//! A map with a size cap that evicts the least recently touched key, so per-key rule
//! state stays bounded however many distinct accounts or addresses an attacker invents.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    cap: usize,
    tick: u64,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        BoundedMap {
            cap: cap.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value for `key`, created with `make` (evicting the stalest key when full), and
    /// marked as most recently used.
    pub(crate) fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, old)) = self.entries.get(&key) {
            self.order.remove(old);
        } else if self.entries.len() >= self.cap
            && let Some((_, stale)) = self.order.pop_first()
        {
            self.entries.remove(&stale);
        }
        self.order.insert(tick, key.clone());
        let slot = self.entries.entry(key).or_insert_with(|| (make(), tick));
        slot.1 = tick;
        &mut slot.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut map = BoundedMap::new(2);
        *map.entry("a", || 0) += 1;
        *map.entry("b", || 0) += 1;
        *map.entry("a", || 0) += 1;
        *map.entry("c", || 0) += 1;
        assert_eq!(map.len(), 2);
        assert_eq!(
            *map.entry("a", || 0),
            2,
            "a was touched last-but-one and survives"
        );
        assert_eq!(*map.entry("b", || 0), 0, "b was evicted and starts over");
    }
}
