//! Metadata values.

/// GGUF metadata value type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum GgufValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

/// A metadata value. Arrays keep their declared element type so that an empty
/// array round-trips and a writer reproduces the original bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufValueType, Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// Calls `$m!` with the list of fixed-size numeric variants and their Rust
/// types, so that reading, writing and conversions are written once for all.
macro_rules! with_numeric_types {
    ($m:ident) => {
        $m! { U8 u8, I8 i8, U16 u16, I16 i16, U32 u32, I32 i32, F32 f32, U64 u64, I64 i64, F64 f64 }
    };
}
pub(crate) use with_numeric_types;

impl GgufValueType {
    pub const ALL: [GgufValueType; 13] = [
        Self::U8,
        Self::I8,
        Self::U16,
        Self::I16,
        Self::U32,
        Self::I32,
        Self::F32,
        Self::Bool,
        Self::String,
        Self::Array,
        Self::U64,
        Self::I64,
        Self::F64,
    ];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u32 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::I8 => "i8",
            Self::U16 => "u16",
            Self::I16 => "i16",
            Self::U32 => "u32",
            Self::I32 => "i32",
            Self::F32 => "f32",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Array => "array",
            Self::U64 => "u64",
            Self::I64 => "i64",
            Self::F64 => "f64",
        }
    }

    /// Encoded size of a value of this type, `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        macro_rules! sizes {
            ($($v:ident $t:ty),*) => {
                match self {
                    $(Self::$v => Some(std::mem::size_of::<$t>()),)*
                    Self::Bool => Some(1),
                    Self::String | Self::Array => None,
                }
            };
        }
        with_numeric_types!(sizes)
    }

    /// Fewest bytes a value of this type can take in a file: what an array
    /// count must be checked against before anything is allocated.
    pub fn min_encoded_size(self) -> usize {
        match self {
            // u64 length
            Self::String => 8,
            // u32 element type + u64 count
            Self::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }
}

impl std::fmt::Display for GgufValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl GgufValue {
    pub fn value_type(&self) -> GgufValueType {
        macro_rules! types {
            ($($v:ident $t:ty),*) => {
                match self {
                    $(Self::$v(_) => GgufValueType::$v,)*
                    Self::Bool(_) => GgufValueType::Bool,
                    Self::String(_) => GgufValueType::String,
                    Self::Array(..) => GgufValueType::Array,
                }
            };
        }
        with_numeric_types!(types)
    }

    /// A short description of the type, with the element type for arrays
    /// (`array of u8`), for error messages.
    pub fn type_description(&self) -> String {
        match self {
            Self::Array(t, _) => format!("array of {t}"),
            v => v.value_type().name().to_string(),
        }
    }

    /// Any unsigned or non-negative signed integer that fits u64.
    pub fn to_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type, as i64.
    pub fn to_i64(&self) -> Option<i64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => i64::try_from(v).ok(),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => None,
        }
    }

    /// F32/F64 (and integers) as f64.
    pub fn to_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::U64(v) => Some(v as f64),
            _ => self.to_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<(GgufValueType, &[GgufValue])> {
        match self {
            Self::Array(t, items) => Some((*t, items)),
            _ => None,
        }
    }

    /// Short human rendering for `inspect` (long arrays abbreviated).
    pub fn display_short(&self) -> String {
        const MAX_ITEMS: usize = 8;
        const MAX_CHARS: usize = 60;
        match self {
            Self::String(s) => {
                let mut out: String = s.chars().take(MAX_CHARS).collect();
                let cut = out.len() < s.len();
                out = format!("{out:?}");
                if cut {
                    out.push_str(&format!("... ({} bytes)", s.len()));
                }
                out
            }
            Self::Array(t, items) => {
                let shown: Vec<String> = items.iter().take(MAX_ITEMS).map(|v| v.display_short()).collect();
                let more = if items.len() > MAX_ITEMS { ", ..." } else { "" };
                format!("[{t}; {}] [{}{more}]", items.len(), shown.join(", "))
            }
            Self::Bool(b) => b.to_string(),
            Self::F32(v) => format!("{v:?}"),
            Self::F64(v) => format!("{v:?}"),
            v => v.to_i64().map(|i| i.to_string()).or_else(|| v.to_u64().map(|u| u.to_string())).unwrap_or_default(),
        }
    }
}
