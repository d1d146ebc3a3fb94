//! What every 32-byte id newtype of the core shares: comparison as four words and the hex
//! display. Identity ids ([`crate::identity::MachineId`], …) and wire ids
//! ([`crate::wire::TopicId`], [`crate::wire::MessageId`]) use both.

use std::fmt;

/// Equality, order and hashing for a 32-byte id newtype, the same as derived ones give
/// (lexicographic byte order), but compared as four words. Ids key most of the core's ordered
/// maps and timers, and derived comparisons of `[u8; 32]` become `memcmp` calls, which showed
/// in a large simulation's profile (docs/benchmarks.md); the first word decides almost every
/// comparison of random ids.
macro_rules! id_cmp {
    ($name:ident) => {
        impl PartialEq for $name {
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                $crate::util::ids::id_words(&self.0) == $crate::util::ids::id_words(&other.0)
            }
        }
        impl Eq for $name {}
        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $name {
            #[inline]
            fn cmp(&self, other: &Self) -> core::cmp::Ordering {
                $crate::util::ids::id_words(&self.0).cmp(&$crate::util::ids::id_words(&other.0))
            }
        }
        impl core::hash::Hash for $name {
            #[inline]
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }
    };
}
pub(crate) use id_cmp;

/// `Display` and `Debug` for a 32-byte id newtype: `Display` prints the first 5 bytes as hex
/// (enough to tell ids apart in a log), `{:#}` all 32; `Debug` is `Name(<short hex>)`.
macro_rules! id_fmt {
    ($name:ident) => {
        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                $crate::util::ids::fmt_id(f, &self.0)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}
pub(crate) use id_fmt;

/// A 32-byte id as four big-endian words: comparing them in order is comparing the bytes
/// lexicographically.
#[inline]
pub(crate) fn id_words(b: &[u8; 32]) -> [u64; 4] {
    let w = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_be_bytes(x)
    };
    [w(0), w(1), w(2), w(3)]
}

/// Writes `bytes` as lowercase hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// An id's hex: the first 5 bytes, or all of them with `{:#}`.
pub(crate) fn fmt_id(f: &mut fmt::Formatter<'_>, id: &[u8; 32]) -> fmt::Result {
    if f.alternate() {
        write_hex(f, id)
    } else {
        write_hex(f, &id[..5])
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::identity::MachineId;
    use crate::wire::MessageId;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Ids compare as words (`id_cmp!`); the order and equality must stay the bytes'.
        /// Pairs share a random prefix, so later words decide too.
        #[test]
        fn ids_order_as_their_bytes(
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
            shared in 0usize..=32,
        ) {
            let mut b = b;
            b[..shared].copy_from_slice(&a[..shared]);
            let (x, y) = (MachineId::from_bytes(a), MachineId::from_bytes(b));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
            let (m, n) = (MessageId(a), MessageId(b));
            prop_assert_eq!(m.cmp(&n), a.cmp(&b));
            prop_assert_eq!(m == n, a == b);
        }
    }
}
