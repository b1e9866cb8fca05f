//! `counted_enum!`: fieldless `Copy` enums that double as array indexes.
//!
//! Drop reasons, verdicts and event counters are all such enums: each variant has a stable
//! snake_case name (used in metrics, JSON and logs) and an index below `COUNT`, so per-variant
//! counters are plain `[u64; COUNT]` arrays updated without branches or hashing.

/// Declares a `#[repr(u8)]` enum with `COUNT`, `ALL`, `index()`, `name()` and `from_name()`.
#[macro_export]
macro_rules! counted_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order (the order of `index()`).
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];
            /// Number of variants: the length of a per-variant counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// Position of this variant in `ALL`; a valid index into a `[_; COUNT]` array.
            #[inline(always)]
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Stable snake_case name used in metrics, JSON and logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// Inverse of `name()`.
            pub fn from_name(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    counted_enum! {
        enum Colour {
            Red = "red",
            Green = "green",
        }
    }

    #[test]
    fn indexes_and_names_round_trip() {
        assert_eq!(Colour::COUNT, 2);
        for (i, c) in Colour::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Colour::from_name(c.name()), Some(*c));
        }
        assert_eq!(Colour::from_name("blue"), None);
    }
}
