//! A growable Fenwick tree (binary indexed tree) of counts, for exact waiting-room
//! positions in O(log n): the position of an entry is the number of waiting entries
//! that joined before it, plus one, even when entries leave from the middle.

use serde::{Deserialize, Serialize};

/// Counts per slot `0..len`, with O(log n) point updates, prefix sums and appends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fenwick {
    /// 1-based tree: `tree[i - 1]` holds the sum of the slots `(i - lowbit(i), i]`.
    tree: Vec<u32>,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Fenwick {
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Appends a slot holding `value`.
    pub fn push(&mut self, value: u32) {
        let i = self.tree.len() + 1;
        let covered = self.prefix(i - 1) - self.prefix(i - lowbit(i));
        self.tree.push(covered + value);
    }

    /// Adds `delta` (which may be negative) to slot `slot`.
    pub fn add(&mut self, slot: usize, delta: i32) {
        assert!(slot < self.tree.len(), "fenwick slot out of range");
        let mut i = slot + 1;
        while i <= self.tree.len() {
            let cell = &mut self.tree[i - 1];
            *cell = cell
                .checked_add_signed(delta)
                .expect("fenwick counts stay non-negative");
            i += lowbit(i);
        }
    }

    /// Sum of the first `count` slots.
    pub fn prefix(&self, count: usize) -> u32 {
        let mut i = count.min(self.tree.len());
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i - 1];
            i -= lowbit(i);
        }
        sum
    }

    /// Removes every slot.
    pub fn clear(&mut self) {
        self.tree.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prefix_sums_match_a_plain_vector(ops in prop::collection::vec((0usize..64, any::<bool>()), 1..200)) {
            let mut tree = Fenwick::default();
            let mut plain: Vec<u32> = Vec::new();
            for (slot, push) in ops {
                if push || plain.is_empty() {
                    tree.push(1);
                    plain.push(1);
                } else {
                    let slot = slot % plain.len();
                    if plain[slot] > 0 {
                        tree.add(slot, -1);
                        plain[slot] -= 1;
                    }
                }
                for count in 0..=plain.len() {
                    prop_assert_eq!(tree.prefix(count), plain[..count].iter().sum::<u32>());
                }
            }
        }
    }
}
