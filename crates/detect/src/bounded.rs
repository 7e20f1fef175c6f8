//! A map with a size cap, so per-key rule state stays bounded however many distinct
//! accounts or addresses an attacker invents.
//!
//! Eviction is chosen to resist muting: among the least recently touched keys (a sample
//! of [`SAMPLE`]), the one whose window holds the least evidence goes first — an empty
//! window (nothing lost) before any live one, and a live window with one event before a
//! victim's window with several. Whether a live window had to go is reported, so the
//! detector can raise a "saturated" alert instead of forgetting silently.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// How many of the least recently touched keys are weighed per eviction (bounds the cost
/// of an insertion under a flood).
pub(crate) const SAMPLE: usize = 64;

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

    /// The value for `key`, created with `make` and marked as most recently used. When
    /// the map is full, evicts the lightest of the [`SAMPLE`] least recently used keys by
    /// `weight` (events still in the window; 0 = nothing to lose), the older on a tie.
    /// Returns whether the evicted key's window was live (weight > 0).
    pub(crate) fn entry(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
        weight: impl Fn(&V) -> u32,
    ) -> (&mut V, bool) {
        self.tick += 1;
        let tick = self.tick;
        let mut dropped_live = false;
        if let Some((_, old)) = self.entries.get(&key) {
            self.order.remove(old);
        } else if self.entries.len() >= self.cap {
            let victim = self
                .order
                .iter()
                .take(SAMPLE)
                .map(|(t, k)| (self.entries.get(k).map_or(0, |(v, _)| weight(v)), *t))
                .min();
            if let Some((w, t)) = victim
                && let Some(stale) = self.order.remove(&t)
            {
                self.entries.remove(&stale);
                dropped_live = w > 0;
            }
        }
        self.order.insert(tick, key.clone());
        let slot = self.entries.entry(key).or_insert_with(|| (make(), tick));
        slot.1 = tick;
        (&mut slot.0, dropped_live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_among_equals() {
        let mut map = BoundedMap::new(2);
        *map.entry("a", || 0, |_| 0).0 += 1;
        *map.entry("b", || 0, |_| 0).0 += 1;
        *map.entry("a", || 0, |_| 0).0 += 1;
        *map.entry("c", || 0, |_| 0).0 += 1;
        assert_eq!(map.len(), 2);
        assert_eq!(
            *map.entry("a", || 0, |_| 0).0,
            2,
            "a was touched last-but-one and survives"
        );
        assert_eq!(
            *map.entry("b", || 0, |_| 0).0,
            0,
            "b was evicted and starts over"
        );
    }

    #[test]
    fn empty_windows_go_before_live_ones_and_light_before_heavy() {
        let mut map: BoundedMap<&str, u32> = BoundedMap::new(3);
        *map.entry("victim", || 0, |v| *v).0 = 5;
        *map.entry("empty", || 0, |v| *v).0 = 0;
        *map.entry("light", || 0, |v| *v).0 = 1;
        let (_, live) = map.entry("new-1", || 1, |v| *v);
        assert!(!live, "the empty window went first");
        let (_, live) = map.entry("new-2", || 1, |v| *v);
        assert!(live, "then a live one had to go — and it is reported");
        assert_eq!(*map.entry("victim", || 0, |v| *v).0, 5, "not the victim");
    }
}
