//! [`HeapBytes`]: an estimate of the memory a value owns on the heap, so a
//! cache of tenant snapshots can be bounded in bytes rather than in tenants.
//!
//! The estimate counts what the containers allocate (capacity × element
//! size, hash tables with one control byte per bucket) and the strings they
//! own, plus a fixed allocator overhead per allocation. It does not follow
//! references: an index that borrows its records counts only itself.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::mem::size_of;

use chrono::{DateTime, NaiveDate, Utc};

/// What an allocation costs on top of its size (the allocator's header and
/// rounding), on average.
pub const ALLOCATION_OVERHEAD: usize = 16;

/// Memory a value owns on the heap, estimated (see the module docs).
pub trait HeapBytes {
    /// Whether values of this type never own heap memory (containers of
    /// them then skip the per-element walk).
    const PLAIN: bool = false;

    /// Bytes owned on the heap by this value (not counting its own size).
    fn heap_bytes(&self) -> usize;
}

/// Implements [`HeapBytes`] for types that own nothing on the heap.
#[macro_export]
#[doc(hidden)]
macro_rules! heap_plain {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::heap::HeapBytes for $t {
            const PLAIN: bool = true;
            fn heap_bytes(&self) -> usize {
                0
            }
        })*
    };
}

heap_plain!(
    bool,
    u8,
    u32,
    u64,
    usize,
    i32,
    i64,
    i128,
    f64,
    DateTime<Utc>,
    NaiveDate
);

impl<T: ?Sized> HeapBytes for &T {
    const PLAIN: bool = true;
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl HeapBytes for String {
    fn heap_bytes(&self) -> usize {
        match self.capacity() {
            0 => 0,
            n => n + ALLOCATION_OVERHEAD,
        }
    }
}

impl HeapBytes for compact_str::CompactString {
    fn heap_bytes(&self) -> usize {
        if self.is_heap_allocated() {
            self.capacity() + ALLOCATION_OVERHEAD
        } else {
            0
        }
    }
}

impl<T: HeapBytes> HeapBytes for Option<T> {
    const PLAIN: bool = T::PLAIN;
    fn heap_bytes(&self) -> usize {
        self.as_ref().map_or(0, T::heap_bytes)
    }
}

impl<T: HeapBytes, const N: usize> HeapBytes for [T; N] {
    const PLAIN: bool = T::PLAIN;
    fn heap_bytes(&self) -> usize {
        elements(self.iter())
    }
}

impl<A: HeapBytes, B: HeapBytes> HeapBytes for (A, B) {
    const PLAIN: bool = A::PLAIN && B::PLAIN;
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes()
    }
}

impl<A: HeapBytes, B: HeapBytes, C: HeapBytes> HeapBytes for (A, B, C) {
    const PLAIN: bool = A::PLAIN && B::PLAIN && C::PLAIN;
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes() + self.1.heap_bytes() + self.2.heap_bytes()
    }
}

/// The heap bytes of some elements (nothing to walk for plain ones).
fn elements<'t, T: HeapBytes + 't>(items: impl Iterator<Item = &'t T>) -> usize {
    if T::PLAIN {
        0
    } else {
        items.map(T::heap_bytes).sum()
    }
}

impl<T: HeapBytes> HeapBytes for Vec<T> {
    fn heap_bytes(&self) -> usize {
        let own = match self.capacity() * size_of::<T>() {
            0 => 0,
            n => n + ALLOCATION_OVERHEAD,
        };
        own + elements(self.iter())
    }
}

/// What a hash table of `capacity` entries of `entry` bytes allocates: its
/// buckets (a power of two, at most 7/8 full) and one control byte each.
fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).next_power_of_two();
    buckets * (entry + 1) + ALLOCATION_OVERHEAD
}

impl<K: HeapBytes, V: HeapBytes, S: BuildHasher> HeapBytes for HashMap<K, V, S> {
    fn heap_bytes(&self) -> usize {
        table_bytes(self.capacity(), size_of::<(K, V)>())
            + elements(self.keys())
            + elements(self.values())
    }
}

impl<K: HeapBytes, S: BuildHasher> HeapBytes for HashSet<K, S> {
    fn heap_bytes(&self) -> usize {
        table_bytes(self.capacity(), size_of::<K>()) + elements(self.iter())
    }
}

/// Implements [`HeapBytes`] for a struct by summing the named fields (the
/// others own nothing on the heap).
#[macro_export]
#[doc(hidden)]
macro_rules! heap_fields {
    ($($t:ty => $($field:ident),+;)*) => {
        $(impl $crate::heap::HeapBytes for $t {
            fn heap_bytes(&self) -> usize {
                0 $(+ $crate::heap::HeapBytes::heap_bytes(&self.$field))+
            }
        })*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_count_their_capacity_and_owned_strings() {
        assert_eq!(String::new().heap_bytes(), 0);
        let s = String::with_capacity(10);
        assert_eq!(s.heap_bytes(), 10 + ALLOCATION_OVERHEAD);
        // 4 × 8 bytes of u64, nothing inside.
        let v: Vec<u64> = Vec::with_capacity(4);
        assert_eq!(v.heap_bytes(), 32 + ALLOCATION_OVERHEAD);
        // Two strings of capacity 3 inside a vector of two strings.
        let v = vec![String::from("abc"), String::from("def")];
        assert_eq!(
            v.heap_bytes(),
            2 * size_of::<String>() + ALLOCATION_OVERHEAD + 2 * (3 + ALLOCATION_OVERHEAD)
        );
        // References own nothing.
        let r: Vec<&String> = v.iter().collect();
        assert_eq!(r.heap_bytes(), r.capacity() * 8 + ALLOCATION_OVERHEAD);
        // A table of 3 entries: 4 buckets of (8 + 8) bytes and a control byte each.
        let mut m: HashMap<u64, u64> = HashMap::with_capacity(3);
        m.insert(1, 2);
        let buckets = (m.capacity() * 8 / 7).next_power_of_two();
        assert_eq!(m.heap_bytes(), buckets * 17 + ALLOCATION_OVERHEAD);
        assert_eq!(HashMap::<u64, u64>::new().heap_bytes(), 0);
    }
}
