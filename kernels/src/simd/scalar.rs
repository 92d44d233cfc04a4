//! Scalar reference kernels: the definition every SIMD path is tested
//! against. Plain loops, accumulating in the same order ggml's reference does.

use half::{bf16, f16};

pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    // f64 accumulation: the reference should be more exact than any path.
    x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32
}

pub fn vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| a.to_f32() as f64 * b.to_f32() as f64).sum::<f64>() as f32
}

pub fn vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| a.to_f32() as f64 * b.to_f32() as f64).sum::<f64>() as f32
}

use crate::formats::*;

/// A legacy block seen as 32 small integers and a scale, the form every
/// reference kernel and dequantizer works on: `value = d * ints[i] (+ m)`.
///
/// `ints` are already centred for the symmetric formats (Q4_0 gives q - 8),
/// and raw for the offset formats (Q4_1 gives q in 0..16, with `m` added).
pub trait BlockInts {
    fn ints(&self) -> [i8; 32];
    fn d(&self) -> f32;
}

/// Offset formats: `value = d * q + m`.
pub trait BlockMin: BlockInts {
    fn m(&self) -> f32;
}

/// Activation formats that carry `s = d * sum(q)`, which the offset formats
/// need to apply `m` without touching the weights again.
pub trait BlockSum: BlockInts {
    fn s(&self) -> f32;
}

/// Integer dot product of two blocks: exact in i32 (32 * 127 * 127 < 2^31).
#[inline]
fn sumi(x: &[i8; 32], y: &[i8; 32]) -> i32 {
    x.iter().zip(y).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// Symmetric weights: ggml's `sumf += (dx * dy) * sumi`, in f32 and block
/// order (the SIMD kernels also multiply the two scales first).
fn dot_sym<X: BlockInts, Y: BlockInts>(x: &[X], y: &[Y]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut sumf = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        sumf += (a.d() * b.d()) * sumi(&a.ints(), &b.ints()) as f32;
    }
    sumf
}

/// Offset weights: `sum(d*q + m) * dy*qy = dx*dy*sumi + m*s`, as ggml does it.
fn dot_offset<X: BlockMin, Y: BlockSum>(x: &[X], y: &[Y]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut sumf = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        sumf += (a.d() * b.d()) * sumi(&a.ints(), &b.ints()) as f32 + a.m() * b.s();
    }
    sumf
}

pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    dot_sym(x, y)
}
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    dot_offset(x, y)
}
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    dot_sym(x, y)
}
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    dot_offset(x, y)
}
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    dot_sym(x, y)
}
/// Not in ggml (Q8_1 has no dot there); Q8_1 weights are symmetric, so `s` is
/// not needed.
pub fn vec_dot_q8_1_q8_1(x: &[BlockQ8_1], y: &[BlockQ8_1]) -> f32 {
    dot_sym(x, y)
}

// ---- K-quants ----

/// A K-quant super-block seen as 256 small integers with per-sub-block
/// integer scales (and mins): weight `e` is
/// `d * scale[e / SUB] * ints[e] - dmin * min[e / SUB]`.
pub trait SuperBlock {
    /// Weights per sub-block: 16 or 32.
    const SUB: usize;
    /// Whether sub-blocks have mins (Q2_K, Q4_K, Q5_K).
    const HAS_MIN: bool;
    /// ggml's generic Q2_K dot sums each super-block into one integer; the
    /// others keep eight interleaved lanes (weight `e` in lane `e % 8`).
    const ONE_SUM: bool = false;
    /// The 256 levels, centred for the symmetric formats.
    fn ints(&self) -> [i8; 256];
    /// Scales and mins of the `256 / SUB` sub-blocks (the rest are 0).
    fn scales_mins(&self) -> ([i32; 16], [i32; 16]);
    fn d(&self) -> f32;
    fn dmin(&self) -> f32 {
        0.0
    }
}

/// ggml's `ggml_vec_dot_q*_K_q8_K_generic` for one row, super-block by
/// super-block: exact integer sums per super-block (lanes of
/// `scale * q * q8`, and `bsums · mins` for the formats with mins),
/// combined in f32 in ggml's order. The interleaved reference
/// (`x8k::reference`) keeps one of these per row and token.
#[derive(Clone, Copy, Default)]
pub struct KDotAcc {
    sums: [f32; 8],
    sumf: f32,
}

impl KDotAcc {
    #[inline]
    pub fn add<X: SuperBlock>(&mut self, a: &X, b: &BlockQ8K) {
        let (q, (sc, m)) = (a.ints(), a.scales_mins());
        let mut lanes = [0i32; 8];
        for (e, (&q, &q8)) in q.iter().zip(&b.qs).enumerate() {
            lanes[e % 8] += sc[e / X::SUB] * (q as i32 * q8 as i32);
        }
        // bsums cover 16 weights; a 32-weight sub-block spans two.
        let summs: i32 = (0..16).map(|j| b.bsums[j] as i32 * m[j * 16 / X::SUB]).sum();
        let d = a.d() * b.d;
        let dmin = a.dmin() * b.d;
        if X::ONE_SUM {
            let isum: i32 = lanes.iter().sum();
            // `dall * isum - dmin * summs`, which ggml's x86-64 build
            // (-march=native) compiles to one fused multiply-subtract;
            // fusing it the same way keeps the reference bit-exact with it.
            self.sumf += d.mul_add(isum as f32, -(dmin * summs as f32));
        } else {
            for (s, &l) in self.sums.iter_mut().zip(&lanes) {
                *s += d * l as f32;
            }
            if X::HAS_MIN {
                self.sumf -= dmin * summs as f32;
            }
        }
    }

    #[inline]
    pub fn finish(self) -> f32 {
        let mut sumf = self.sumf;
        for s in self.sums {
            sumf += s;
        }
        sumf
    }
}

fn dot_k<X: SuperBlock>(x: &[X], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut acc = KDotAcc::default();
    for (a, b) in x.iter().zip(y) {
        acc.add(a, b);
    }
    acc.finish()
}

pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    dot_k(x, y)
}
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    dot_k(x, y)
}
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    dot_k(x, y)
}
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    dot_k(x, y)
}
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    dot_k(x, y)
}
/// Not in ggml (Q8_K is activation-only there); for tests.
pub fn vec_dot_q8_k_q8_k(x: &[BlockQ8K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len());
    let mut sumf = 0.0f32;
    for (a, b) in x.iter().zip(y) {
        let sumi: i32 = a.qs.iter().zip(&b.qs).map(|(&p, &q)| p as i32 * q as i32).sum();
        sumf += (a.d * b.d) * sumi as f32;
    }
    sumf
}
