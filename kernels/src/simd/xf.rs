//! Kernels for the float weights (F16, BF16, F32) in their interleaved
//! layout (`formats::interleaved::float_at`: blocks of sixteen rows,
//! interleaved value by value), on the same walk as the quantized types
//! (`matmul.rs`, which hands a kernel two 8-row groups: one block).
//!
//! Each value of the sixteen rows, widened to f32, is one register; it
//! meets each token's matching activation broadcast to every lane (folded
//! into the FMA as a memory operand), one FMA per token: an outer product,
//! so the weights are loaded and converted once per tile of tokens and the
//! lanes are the rows, with nothing to sum across lanes. With AVX-512 BF16,
//! BF16 weights skip the widening: `vdpbf16ps` takes each row's pair of
//! values from a 32-bit lane and the token's pair from a 32-bit broadcast,
//! 32 multiply-adds per instruction (this Zen 5 issues one 512-bit FMA or
//! `vdpbf16ps` per cycle, so the BF16 kernel runs twice as many).
//!
//! Values `2c` go to one set of accumulators and values `2c + 1` to
//! another (two chains per token in flight), the two added at the end, for
//! every number of tokens: a token's outputs do not depend on the batch it
//! came in, so the decoder's token-by-token and batched logits agree.
//!
//! As in ggml, the activations are first rounded to the weight type
//! (`vec_dot_type`); the kernels read them as f32 ([`FloatAct::F32`]), or
//! as BF16 pairs for `vdpbf16ps`. Results equal the row dot products up to
//! f32 rounding; the scalar [`reference`] and the SIMD paths are checked
//! against the row-major scalar matmul in `kernels/tests/interleaved.rs`.

#[cfg(target_arch = "x86_64")]
use super::cpu_has;
use super::Isa;
use crate::formats::interleaved::{float_at, FLOAT_ROWS};
use crate::GgmlType;
use half::{bf16, f16};

/// Values of one block for two values of each row.
const SPAN: usize = 2 * FLOAT_ROWS;

/// Activation rows for a tile of tokens, one after the other, each as long
/// as a weight row.
#[derive(Clone, Copy)]
pub enum FloatAct<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

impl<'a> FloatAct<'a> {
    fn len(&self) -> usize {
        match self {
            FloatAct::F32(x) => x.len(),
            FloatAct::Bf16(x) => x.len(),
        }
    }

    fn get(&self, i: usize) -> f32 {
        match self {
            FloatAct::F32(x) => x[i],
            FloatAct::Bf16(x) => x[i].to_f32(),
        }
    }

    /// Tokens `tokens` of a batch of rows of `cols` values.
    pub fn rows(&self, tokens: std::ops::Range<usize>, cols: usize) -> FloatAct<'a> {
        let span = tokens.start * cols..tokens.end * cols;
        match *self {
            FloatAct::F32(x) => FloatAct::F32(&x[span]),
            FloatAct::Bf16(x) => FloatAct::Bf16(&x[span]),
        }
    }
}

/// Whether the kernels for `dtype` weights on `isa` read the activations
/// as BF16 (`vdpbf16ps`) rather than f32.
pub fn reads_bf16(isa: Isa, dtype: crate::GgmlDType) -> bool {
    dtype == crate::GgmlDType::BF16 && has_bf16_dot(isa)
}

/// AVX-512 BF16 on top of the AVX-512 set (Zen 4 and later, Cooper Lake,
/// Sapphire Rapids).
fn has_bf16_dot(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && cpu_has(Isa::Avx512) {
        static BF16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        return *BF16.get_or_init(|| is_x86_feature_detected!("avx512bf16"));
    }
    let _ = isa;
    false
}

/// Tokens per tile on `isa`: AVX-512 keeps 2 x 8 accumulators (half the
/// registers), AVX2 2 x 2 x 3 of its sixteen (each block is two 256-bit
/// halves there).
pub fn tile(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 8,
        Isa::Avx2 => 3,
        _ => 4,
    }
}

/// A float weight value the kernels widen to f32.
pub trait FloatWeight: GgmlType<VecDot = Self> {
    fn to_f32(self) -> f32;
    /// Values `2c` and `2c + 1` of the sixteen rows of a block, from the 32
    /// values at `p` (`32 c` into the block), as f32 lanes.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `p` points to 32 readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn span16(p: *const Self) -> [core::arch::x86_64::__m512; 2];
    /// [`Self::span16`] in 256-bit halves: `[value][rows 0..8, 8..16]`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; `p` points to 32 readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn span8(p: *const Self) -> [[core::arch::x86_64::__m256; 2]; 2];
}

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

impl FloatWeight for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn span16(p: *const Self) -> [__m512; 2] {
        // SAFETY: 32 readable floats (the caller's contract); unaligned.
        unsafe { [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))] }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn span8(p: *const Self) -> [[__m256; 2]; 2] {
        // SAFETY: as above.
        unsafe {
            [[_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))], [_mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))]]
        }
    }
}

impl FloatWeight for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn span16(p: *const Self) -> [__m512; 2] {
        // SAFETY: the 64 bytes of 32 readable values; unaligned.
        unsafe {
            [_mm512_cvtph_ps(_mm256_loadu_si256(p.cast())), _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16).cast()))]
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn span8(p: *const Self) -> [[__m256; 2]; 2] {
        // SAFETY: as above, 16 bytes at a time.
        let h = |i: usize| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(8 * i).cast())) };
        [[h(0), h(1)], [h(2), h(3)]]
    }
}

impl FloatWeight for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    // Each 32-bit lane holds a row's pair: a bf16 is the top half of an
    // f32, so the even value is the lane shifted left by 16 and the odd one
    // the lane with its low half cleared.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn span16(p: *const Self) -> [__m512; 2] {
        // SAFETY: the 64 bytes of 32 readable values; unaligned.
        let v = unsafe { _mm512_loadu_si512(p.cast()) };
        let odd = _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
        [_mm512_castsi512_ps(_mm512_slli_epi32::<16>(v)), _mm512_castsi512_ps(odd)]
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn span8(p: *const Self) -> [[__m256; 2]; 2] {
        // SAFETY: the 64 bytes of 32 readable values, 32 at a time.
        let v = unsafe { [_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(16).cast())] };
        let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        [
            v.map(|v| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))),
            v.map(|v| _mm256_castsi256_ps(_mm256_and_si256(v, high))),
        ]
    }
}

/// `out[t][j] += dot(row j, token t)` for the sixteen rows of one block
/// (`w`: `16 * cols` values) and the `T` tokens of `x`.
pub fn gemm<W: FloatWeight, const T: usize>(isa: Isa, w: &[W], x: FloatAct, out: &mut [[f32; FLOAT_ROWS]; T]) {
    assert!(w.len().is_multiple_of(SPAN), "a block of whole spans");
    assert_eq!(x.len(), T * (w.len() / FLOAT_ROWS), "activations do not match the weights");
    #[cfg(target_arch = "x86_64")]
    match (isa, x) {
        (Isa::Avx512, FloatAct::Bf16(x)) if reads_bf16(isa, W::DTYPE) => {
            // `W` is bf16 (`reads_bf16`): the same values.
            let w: &[bf16] = crate::formats::cast_blocks(crate::formats::as_bytes(w));
            // SAFETY: the CPU has AVX-512 F/BW/VL and BF16 (`reads_bf16`)
            // and AVX2 with them; lengths are checked above.
            unsafe { avx512::dot_bf16::<T>(w, x, out) };
            return;
        }
        (Isa::Avx512, FloatAct::F32(x)) if cpu_has(Isa::Avx512) => {
            // SAFETY: the CPU has AVX-512 F/BW/VL, AVX2, FMA and F16C
            // (`Isa::Avx512` implies them); lengths are checked above.
            unsafe { avx512::gemm::<W, T>(w, x, out) };
            return;
        }
        (Isa::Avx2 | Isa::Avx512, FloatAct::F32(x)) if cpu_has(Isa::Avx2) => {
            // SAFETY: the CPU has AVX2, FMA and F16C; lengths as above.
            unsafe { avx2::gemm::<W, T>(w, x, out) };
            return;
        }
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    reference::<W, T>(w, x, out);
}

/// The scalar reference: per row and token, the products summed in f64 (as
/// `scalar::vec_dot_f16` does) and added to `out` as f32.
pub fn reference<W: FloatWeight, const T: usize>(w: &[W], x: FloatAct, out: &mut [[f32; FLOAT_ROWS]; T]) {
    let cols = w.len() / FLOAT_ROWS;
    for (t, o) in out.iter_mut().enumerate() {
        for (j, o) in o.iter_mut().enumerate() {
            let sum: f64 =
                (0..cols).map(|k| w[float_at(W::DTYPE, j, k)].to_f32() as f64 * x.get(t * cols + k) as f64).sum();
            *o += sum as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{FloatWeight, FLOAT_ROWS, SPAN};
    use core::arch::x86_64::*;

    /// One block times `T` tokens, each value of the sixteen rows as two
    /// 256-bit halves.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `x` holds `T` rows of
    /// `w.len() / 16` values.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gemm<W: FloatWeight, const T: usize>(w: &[W], x: &[f32], out: &mut [[f32; FLOAT_ROWS]; T]) {
        let cols = w.len() / FLOAT_ROWS;
        // [value parity][token][half]
        let mut acc = [[[_mm256_setzero_ps(); 2]; T]; 2];
        for (c, span) in w.chunks_exact(SPAN).enumerate() {
            // SAFETY: the 32 values of `span`; the CPU has AVX2 and F16C.
            let wv = unsafe { W::span8(span.as_ptr()) };
            for (p, (acc, wv)) in acc.iter_mut().zip(wv).enumerate() {
                for (t, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: value 2c + p of token t's row: in bounds, as
                    // `x` holds T rows of `cols` (the caller's contract).
                    let xt = _mm256_set1_ps(unsafe { *x.get_unchecked(t * cols + 2 * c + p) });
                    acc[0] = _mm256_fmadd_ps(wv[0], xt, acc[0]);
                    acc[1] = _mm256_fmadd_ps(wv[1], xt, acc[1]);
                }
            }
        }
        for ((o, even), odd) in out.iter_mut().zip(acc[0]).zip(acc[1]) {
            for (h, (even, odd)) in even.into_iter().zip(odd).enumerate() {
                // SAFETY: reads and writes exactly eight floats of `o`.
                unsafe {
                    let o = o.as_mut_ptr().add(8 * h);
                    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_add_ps(even, odd)));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{FloatWeight, FLOAT_ROWS, SPAN};
    use core::arch::x86_64::*;
    use half::bf16;

    /// `out[t] += a[t] + b[t]`, sixteen lanes each.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add_sets<const T: usize>(a: [__m512; T], b: [__m512; T], out: &mut [[f32; FLOAT_ROWS]; T]) {
        for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
            // SAFETY: reads and writes exactly the sixteen floats of `o`.
            unsafe {
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(_mm512_loadu_ps(o.as_ptr()), _mm512_add_ps(a, b)))
            };
        }
    }

    /// One block (16 rows) times `T` tokens: per value, the sixteen rows
    /// widened to one register, one FMA per token with its activation
    /// broadcast from memory.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL, AVX2, FMA and F16C; `x` holds `T`
    /// rows of `w.len() / 16` values.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn gemm<W: FloatWeight, const T: usize>(w: &[W], x: &[f32], out: &mut [[f32; FLOAT_ROWS]; T]) {
        let cols = w.len() / FLOAT_ROWS;
        let mut acc = [[_mm512_setzero_ps(); T]; 2];
        for (c, span) in w.chunks_exact(SPAN).enumerate() {
            // SAFETY: the 32 values of `span`; the CPU has AVX-512 F.
            let wv = unsafe { W::span16(span.as_ptr()) };
            for (p, (acc, wv)) in acc.iter_mut().zip(wv).enumerate() {
                for (t, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: value 2c + p of token t's row (T rows of
                    // `cols`, the caller's contract).
                    let xt = _mm512_set1_ps(unsafe { *x.get_unchecked(t * cols + 2 * c + p) });
                    *acc = _mm512_fmadd_ps(wv, xt, *acc);
                }
            }
        }
        add_sets(acc[0], acc[1], out);
    }

    /// A 512-bit vector as 32 BF16 values (the same bits).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn as_bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 64 bytes of plain SIMD data; every bit pattern is
        // a valid value of either.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    /// BF16 weights and BF16 activations: `vdpbf16ps` sums each lane's pair
    /// of products into f32; a span is one register (lane = row), a token's
    /// pair one 32-bit broadcast. Spans alternate between two sets of
    /// accumulators, so one token too has two chains in flight.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and BF16, and AVX2; `x` holds `T`
    /// rows of `w.len() / 16` values.
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn dot_bf16<const T: usize>(w: &[bf16], x: &[bf16], out: &mut [[f32; FLOAT_ROWS]; T]) {
        let cols = w.len() / FLOAT_ROWS;
        let mut acc = [[_mm512_setzero_ps(); T]; 2];
        let step = |acc: &mut [__m512; T], c: usize, span: &[bf16; SPAN]| {
            // SAFETY: the 64 bytes of `span`, unaligned.
            let wv = as_bh(unsafe { _mm512_loadu_si512(span.as_ptr().cast()) });
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: values 2c, 2c + 1 of token t's row (T rows of
                // `cols`, the caller's contract).
                let pair = unsafe { std::ptr::read_unaligned(x.as_ptr().add(t * cols + 2 * c).cast::<i32>()) };
                *acc = _mm512_dpbf16_ps(*acc, wv, as_bh(_mm512_set1_epi32(pair)));
            }
        };
        // Two spans at a time, one into each set (an index by `c % 2` would
        // keep the accumulators in memory).
        let (twos, rest) = w.as_chunks::<{ 2 * SPAN }>();
        let [acc0, acc1] = &mut acc;
        for (i, two) in twos.iter().enumerate() {
            let (a, b) = two.split_at(SPAN);
            step(acc0, 2 * i, a.try_into().expect("one span"));
            step(acc1, 2 * i + 1, b.try_into().expect("one span"));
        }
        if !rest.is_empty() {
            step(acc0, 2 * twos.len(), rest.try_into().expect("one span"));
        }
        add_sets(acc[0], acc[1], out);
    }
}
