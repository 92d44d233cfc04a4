//! Helpers shared by the kernel tests: a seeded generator (no `rand`
//! dependency needed) and aligned byte buffers for block casts.
#![allow(dead_code)]

use qllama_kernels::formats::BlockQ8K;
use qllama_kernels::simd::scalar::SuperBlock;
use qllama_kernels::GgmlDType;

/// SplitMix64: tiny, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn normals(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.normal() * scale) as f32).collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Bytes with 8-byte alignment, so they can be viewed as any block type.
pub struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    pub fn zeroed(len: usize) -> Self {
        Aligned { words: vec![0; len.div_ceil(8)], len }
    }

    pub fn from_bytes(b: &[u8]) -> Self {
        let mut a = Self::zeroed(b.len());
        a.as_mut().copy_from_slice(b);
        a
    }

    /// Quantize `src` (whole blocks) as `dtype` into a new buffer.
    pub fn quantize(dtype: GgmlDType, src: &[f32]) -> Self {
        let len = dtype.row_bytes(src.len()).expect("whole blocks");
        let mut a = Self::zeroed(len);
        dtype.quantize_row(src, a.as_mut());
        a
    }
}

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: u64 storage viewed as bytes; `len` is within the allocation
        // (`zeroed` rounds up) and the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

impl AsMut<[u8]> for Aligned {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`, with a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

pub fn dequantize(dtype: GgmlDType, src: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    dtype.dequantize_row(src, &mut out);
    out
}

/// The quantized types with 32-weight blocks and a dot product.
pub const LEGACY: [GgmlDType; 6] =
    [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_0, GgmlDType::Q8_1];

/// Little-endian f32s from fixture bytes.
#[allow(dead_code)]
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The fixture case (name, first value, number of values) that value `i`
/// belongs to, for failure messages.
#[allow(dead_code)]
pub fn case_of(cases: &[(String, usize, usize)], i: usize) -> &str {
    cases.iter().find(|(_, first, n)| (*first..first + n).contains(&i)).map_or("?", |c| c.0.as_str())
}

/// Sum of |terms| of `x · y`: scaled products and the mins' share.
pub fn k_magnitude<X: SuperBlock>(x: &[X], y: &[BlockQ8K]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| {
            let (q, (s, m)) = (a.ints(), a.scales_mins());
            let ints: i64 = (0..256).map(|e| (s[e / X::SUB] as i64 * q[e] as i64 * b.qs[e] as i64).abs()).sum();
            let mins: i64 = (0..16).map(|j| (b.bsums[j] as i64 * m[j * 16 / X::SUB] as i64).abs()).sum();
            let dy = b.d as f64;
            (a.d() as f64 * dy).abs() * ints as f64 + (a.dmin() as f64 * dy).abs() * mins as f64
        })
        .sum()
}
