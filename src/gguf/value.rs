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

impl GgufValueType {
    pub fn from_u32(v: u32) -> Option<Self> {
        todo!()
    }
    pub fn name(self) -> &'static str {
        todo!()
    }
}

impl GgufValue {
    pub fn value_type(&self) -> GgufValueType {
        todo!()
    }
    /// Any unsigned or non-negative signed integer that fits u64.
    pub fn to_u64(&self) -> Option<u64> {
        todo!()
    }
    /// Any integer type, as i64.
    pub fn to_i64(&self) -> Option<i64> {
        todo!()
    }
    /// F32/F64 (and integers) as f64.
    pub fn to_f64(&self) -> Option<f64> {
        todo!()
    }
    pub fn as_str(&self) -> Option<&str> {
        todo!()
    }
    pub fn as_bool(&self) -> Option<bool> {
        todo!()
    }
    pub fn as_array(&self) -> Option<(GgufValueType, &[GgufValue])> {
        todo!()
    }
    /// Short human rendering for `inspect` (long arrays abbreviated).
    pub fn display_short(&self) -> String {
        todo!()
    }
}
