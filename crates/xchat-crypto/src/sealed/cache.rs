//! The bounded map behind [`super::Opener`] and [`super::Sealer`]: a
//! segmented LRU (SLRU) of at most `capacity` entries.
//!
//! A new entry enters the probation segment; using it again moves it to the
//! protected segment, which holds at most three quarters of the capacity
//! (its oldest entry falls back to probation when it overflows). Eviction
//! takes the least recently used entry of probation, and of protected only
//! when probation is empty. So a flood of entries used once each (a spammer
//! minting identities that each send one envelope) churns probation and
//! cannot push out the senders of the conversations in progress, which are
//! used again and again.
//!
//! Every operation is O(log capacity) whatever the keys, as ordered maps
//! guarantee: a hash map would need a secret seed to resist keys chosen to
//! collide, and this crate has no OS randomness to draw one from. Recency is
//! a counter of uses, not a clock.
//!
//! A value is dropped as soon as it leaves the cache (evicted, removed,
//! cleared, or with the cache): values that wipe themselves on drop, as
//! [`crate::agreement::SharedSecret`] does, are wiped then.

use std::collections::BTreeMap;

/// Which segment an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Segment {
    /// Used once since it entered (or demoted from protected).
    Probation,
    /// Used at least twice.
    Protected,
}

struct Slot<V> {
    value: V,
    segment: Segment,
    /// The entry's key in its segment's recency map.
    last_use: u64,
}

/// A segmented LRU map of at most `capacity` entries.
pub(super) struct Cache<K, V> {
    capacity: usize,
    protected_capacity: usize,
    slots: BTreeMap<K, Slot<V>>,
    /// Probation entries by last use, oldest first.
    probation: BTreeMap<u64, K>,
    /// Protected entries by last use, oldest first.
    protected: BTreeMap<u64, K>,
    /// The next use's number: strictly increasing, so each recency map has
    /// one key per entry. One per insert or use: 2^64 of them would take
    /// centuries at any rate this code reaches.
    uses: u64,
}

impl<K: Ord + Copy, V> Cache<K, V> {
    /// An empty cache of at most `capacity` entries (0 caches nothing).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            protected_capacity: capacity - capacity / 4,
            slots: BTreeMap::new(),
            probation: BTreeMap::new(),
            protected: BTreeMap::new(),
            uses: 0,
        }
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Largest number of entries.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The value of `key`, changing nothing: callers [`Cache::touch`] it once
    /// the value served an operation that succeeded.
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.slots.get(key).map(|slot| &slot.value)
    }

    /// Records a use of `key`: a probation entry moves to protected, a
    /// protected one becomes its most recent. Nothing for an absent key.
    pub(super) fn touch(&mut self, key: &K) {
        let now = self.next_use();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        match slot.segment {
            Segment::Probation => {
                self.probation.remove(&slot.last_use);
            }
            Segment::Protected => {
                self.protected.remove(&slot.last_use);
            }
        }
        slot.segment = Segment::Protected;
        slot.last_use = now;
        self.protected.insert(now, *key);
        if self.protected.len() > self.protected_capacity {
            self.demote_oldest_protected();
        }
    }

    /// Adds `key` as the most recent probation entry, evicting the least
    /// recently used entry first if the cache is full. A key already present
    /// gets the new value and counts as used.
    pub(super) fn insert(&mut self, key: K, value: V) {
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.value = value;
            self.touch(&key);
            return;
        }
        if self.capacity == 0 {
            return;
        }
        if self.slots.len() >= self.capacity {
            self.evict_one();
        }
        let now = self.next_use();
        self.probation.insert(now, key);
        self.slots.insert(key, Slot { value, segment: Segment::Probation, last_use: now });
    }

    /// Removes every entry whose value fails `keep`. O(len): for rare events
    /// (a revocation), not for anything an envelope triggers.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let doomed: Vec<K> =
            self.slots.iter().filter(|(_, slot)| !keep(&slot.value)).map(|(key, _)| *key).collect();
        for key in doomed {
            self.remove(&key);
        }
    }

    /// Removes every entry.
    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.probation.clear();
        self.protected.clear();
    }

    fn remove(&mut self, key: &K) {
        if let Some(slot) = self.slots.remove(key) {
            match slot.segment {
                Segment::Probation => self.probation.remove(&slot.last_use),
                Segment::Protected => self.protected.remove(&slot.last_use),
            };
        }
    }

    fn evict_one(&mut self) {
        let oldest = match self.probation.pop_first() {
            Some(oldest) => Some(oldest),
            None => self.protected.pop_first(),
        };
        if let Some((_, key)) = oldest {
            self.slots.remove(&key);
        }
    }

    fn demote_oldest_protected(&mut self) {
        let now = self.next_use();
        if let Some((_, key)) = self.protected.pop_first()
            && let Some(slot) = self.slots.get_mut(&key)
        {
            slot.segment = Segment::Probation;
            slot.last_use = now;
            self.probation.insert(now, key);
        }
    }

    fn next_use(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// Every key with its segment, each segment oldest first (probation first).
    #[cfg(test)]
    pub(super) fn order(&self) -> Vec<(Segment, K)> {
        let probation = self.probation.values().map(|key| (Segment::Probation, *key));
        let protected = self.protected.values().map(|key| (Segment::Protected, *key));
        probation.chain(protected).collect()
    }

    /// Panics unless the maps agree: each entry in exactly the segment map
    /// its slot names, under its last use; no more entries than capacity.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        assert!(self.slots.len() <= self.capacity);
        assert!(self.protected.len() <= self.protected_capacity);
        assert_eq!(self.slots.len(), self.probation.len() + self.protected.len());
        for (key, slot) in &self.slots {
            let map = match slot.segment {
                Segment::Probation => &self.probation,
                Segment::Protected => &self.protected,
            };
            assert!(map.get(&slot.last_use) == Some(key));
            assert!(slot.last_use <= self.uses);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::rc::Rc;

    use Segment::{Probation, Protected};

    fn filled(capacity: usize, keys: &[u32]) -> Cache<u32, u32> {
        let mut cache = Cache::new(capacity);
        for &key in keys {
            cache.insert(key, key * 10);
        }
        cache.check_invariants();
        cache
    }

    #[test]
    fn cache_evicts_the_least_recently_used_probation_entry_at_capacity() {
        let mut cache = filled(4, &[1, 2, 3, 4]);
        assert_eq!(cache.len(), 4);
        cache.insert(5, 50);
        cache.check_invariants();
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get(&5), Some(&50));
        assert_eq!(
            cache.order(),
            vec![(Probation, 2), (Probation, 3), (Probation, 4), (Probation, 5)]
        );
    }

    #[test]
    fn cache_get_changes_nothing_and_touch_promotes() {
        let mut cache = filled(4, &[1, 2, 3]);
        let before = cache.order();
        assert_eq!(cache.get(&1), Some(&10));
        assert_eq!(cache.order(), before);
        cache.touch(&1);
        cache.check_invariants();
        assert_eq!(cache.order(), vec![(Probation, 2), (Probation, 3), (Protected, 1)]);
        cache.touch(&9);
        assert_eq!(cache.order(), vec![(Probation, 2), (Probation, 3), (Protected, 1)]);
    }

    #[test]
    fn cache_keeps_entries_used_twice_through_a_flood_of_one_shot_entries() {
        let mut cache = filled(8, &[1, 2]);
        cache.touch(&1);
        cache.touch(&2);
        for key in 100..10_000 {
            cache.insert(key, 0);
        }
        cache.check_invariants();
        assert_eq!(cache.len(), 8);
        assert_eq!(cache.get(&1), Some(&10));
        assert_eq!(cache.get(&2), Some(&20));
    }

    #[test]
    fn cache_demotes_the_oldest_protected_entry_when_protected_overflows() {
        // Capacity 4: protected holds at most 3.
        let mut cache = filled(4, &[1, 2, 3, 4]);
        for key in [1, 2, 3, 4] {
            cache.touch(&key);
            cache.check_invariants();
        }
        assert_eq!(
            cache.order(),
            vec![(Probation, 1), (Protected, 2), (Protected, 3), (Protected, 4)]
        );
        cache.insert(5, 50);
        cache.check_invariants();
        assert_eq!(cache.get(&1), None);
        cache.clear();
        cache.check_invariants();
        assert_eq!(cache.len(), 0);
        // With probation empty, eviction falls to protected's oldest.
        let mut cache = filled(1, &[1]);
        cache.touch(&1);
        cache.insert(2, 20);
        cache.check_invariants();
        assert_eq!(cache.order(), vec![(Probation, 2)]);
    }

    #[test]
    fn cache_of_capacity_zero_holds_nothing() {
        let cache = filled(0, &[1, 2, 3]);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn cache_insert_of_a_present_key_replaces_its_value_and_counts_as_use() {
        let mut cache = filled(4, &[1, 2]);
        cache.insert(1, 11);
        cache.check_invariants();
        assert_eq!(cache.get(&1), Some(&11));
        assert_eq!(cache.order(), vec![(Probation, 2), (Protected, 1)]);
    }

    #[test]
    fn cache_retain_removes_entries_from_both_segments() {
        let mut cache = filled(8, &[1, 2, 3, 4]);
        cache.touch(&2);
        cache.touch(&3);
        cache.retain(|value| *value != 20 && *value != 40);
        cache.check_invariants();
        assert_eq!(cache.order(), vec![(Probation, 1), (Protected, 3)]);
    }

    /// Counts its drops: shows when the cache lets a value go.
    struct Tracked(Rc<Cell<usize>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn cache_drops_values_on_eviction_replacement_removal_and_drop() {
        let drops = Rc::new(Cell::new(0));
        let mut cache = Cache::new(2);
        cache.insert(1, Tracked(drops.clone()));
        cache.insert(2, Tracked(drops.clone()));
        cache.insert(3, Tracked(drops.clone()));
        assert_eq!(drops.get(), 1, "evicted");
        cache.insert(3, Tracked(drops.clone()));
        assert_eq!(drops.get(), 2, "replaced");
        cache.retain(|_| false);
        assert_eq!(drops.get(), 4, "removed");
        cache.insert(4, Tracked(drops.clone()));
        cache.insert(5, Tracked(drops.clone()));
        drop(cache);
        assert_eq!(drops.get(), 6, "dropped with the cache");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Touch(u8),
        Retain(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(Op::Insert),
            4 => any::<u8>().prop_map(Op::Touch),
            1 => any::<u8>().prop_map(Op::Retain),
        ]
    }

    proptest! {
        #[test]
        fn cache_stays_bounded_and_consistent_under_any_operations(
            capacity in 0usize..12,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut cache = Cache::new(capacity);
            for op in ops {
                match op {
                    Op::Insert(key) => {
                        cache.insert(key % 32, key);
                        // What was just inserted is there (unless nothing can be).
                        prop_assert_eq!(cache.get(&(key % 32)).is_some(), capacity > 0);
                    }
                    Op::Touch(key) => cache.touch(&(key % 32)),
                    Op::Retain(modulus) => {
                        let modulus = modulus % 4 + 2;
                        cache.retain(|value| value % modulus != 0);
                    }
                }
                cache.check_invariants();
            }
        }
    }
}
