//! Counters by reason, as structs with a named field per reason.
//!
//! A reason enum says why something was refused, dropped or closed; its counter struct has a
//! field per variant, so stats serialise with named fields and a reason's name is written
//! once, as the field name.

/// Defines a counter struct with one `u64` field per variant of a reason type, and the one
/// `match` that maps a reason to its field.
macro_rules! counts_by {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($reason:ty) {
            $( $(#[$field_meta:meta])* $field:ident: $pat:pat, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: u64, )*
        }

        impl $name {
            /// Counts one `reason`.
            pub(crate) fn count(&mut self, reason: &$reason) {
                *self.slot(reason) += 1;
            }

            /// The count of `reason`.
            pub fn get(&self, reason: &$reason) -> u64 {
                let mut copy = *self;
                *copy.slot(reason)
            }

            /// The sum over every reason.
            pub fn total(&self) -> u64 {
                0 $( + self.$field )*
            }

            fn slot(&mut self, reason: &$reason) -> &mut u64 {
                match reason {
                    $( $pat => &mut self.$field, )*
                }
            }
        }
    };
}

pub(crate) use counts_by;
