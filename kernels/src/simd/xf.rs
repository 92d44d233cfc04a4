//! Kernels for the float weights (F16, BF16, F32) in the interleaved
//! layout (`formats::interleaved`: eight rows, two values per row per
//! chunk), on the same walk as the quantized types (`matmul.rs`).
//!
//! Each chunk is an outer product: the chunk widened to f32 (the pairs of
//! eight rows, sixteen lanes) meets each token's matching value pair
//! broadcast to every lane, one FMA per token and group, so the weights are
//! loaded and converted once per tile of tokens and nothing is summed
//! across lanes until the end (where the two lanes of each row are added).
//! With AVX-512 BF16, BF16 weights skip the widening: `vdpbf16ps` takes a
//! row's pair from each 32-bit lane and the token's pair from a 32-bit
//! broadcast, 32 multiply-adds per instruction.
//!
//! As in ggml, the activations are first rounded to the weight type
//! (`vec_dot_type`); the kernels read them as f32 ([`FloatAct::F32`]), or
//! as BF16 pairs for `vdpbf16ps`. Results equal the row dot products up to
//! f32 rounding; the scalar [`reference`] is checked against them in
//! `kernels/tests/interleaved.rs`.

#[cfg(target_arch = "x86_64")]
use super::cpu_has;
use super::x8::{per_group, ROWS2};
use super::Isa;
use crate::formats::interleaved::{PAIR, ROWS};
use crate::GgmlType;
use half::{bf16, f16};

/// Values of one group's chunk: a pair for each of its eight rows.
const CHUNK: usize = PAIR * ROWS;

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

/// Tokens per tile on `isa`: 16 rows x 8 tokens is 16 accumulators of
/// 512 bits (half the registers); AVX2's 8 rows x 6 tokens, 12 of 256.
pub fn tile(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 8,
        Isa::Avx2 => 6,
        _ => 4,
    }
}

/// A float weight value the kernels widen to f32.
pub trait FloatWeight: GgmlType<VecDot = Self> {
    fn to_f32(self) -> f32;
    /// Eight values from `p` as f32 lanes.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; `p` points to eight readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> core::arch::x86_64::__m256;
    /// Sixteen values from `p` as f32 lanes.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `p` points to sixteen readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> core::arch::x86_64::__m512;
}

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

impl FloatWeight for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: eight readable floats (the caller's contract); unaligned.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: sixteen readable floats (the caller's contract); unaligned.
        unsafe { _mm512_loadu_ps(p) }
    }
}

impl FloatWeight for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: the 16 bytes of eight readable values (the caller's
        // contract); unaligned.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: the 32 bytes of sixteen readable values; unaligned.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
}

impl FloatWeight for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    // A bf16 is the top half of an f32: widen, then shift into place.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: the 16 bytes of eight readable values; unaligned.
        let h = unsafe { _mm_loadu_si128(p.cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: the 32 bytes of sixteen readable values; unaligned.
        let h = unsafe { _mm256_loadu_si256(p.cast()) };
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
}

/// `out[t][j] += dot(row j, token t)` for the sixteen rows of two groups
/// (`w[g]`: a group's `8 * cols` values) and the `T` tokens of `x`.
pub fn gemm2<W: FloatWeight, const T: usize>(isa: Isa, w: [&[W]; 2], x: FloatAct, out: &mut [[f32; ROWS2]; T]) {
    let n = w[0].len();
    assert!(w[1].len() == n && n.is_multiple_of(CHUNK), "groups of whole chunks, of one length");
    assert_eq!(x.len(), T * (n / ROWS), "activations do not match the weights");
    #[cfg(target_arch = "x86_64")]
    match (isa, x) {
        (Isa::Avx512, FloatAct::Bf16(x)) if reads_bf16(isa, W::DTYPE) => {
            // SAFETY: `W` is bf16 (`reads_bf16`), so the cast is the
            // identity.
            let w = w.map(|w| unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<bf16>(), w.len()) });
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
            per_group(w, out, |w, o| unsafe { avx2::gemm::<W, T>(w, x, o) });
            return;
        }
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    per_group(w, out, |w, o| reference::<W, T>(w, x, o));
}

/// The scalar reference: per row and token, the products summed in f64 (as
/// `scalar::vec_dot_f16` does) and added to `out` as f32.
pub fn reference<W: FloatWeight, const T: usize>(w: &[W], x: FloatAct, out: &mut [[f32; ROWS]; T]) {
    let cols = w.len() / ROWS;
    for (t, o) in out.iter_mut().enumerate() {
        for (j, o) in o.iter_mut().enumerate() {
            let mut sum = 0.0f64;
            for (c, chunk) in w.chunks_exact(CHUNK).enumerate() {
                for p in 0..PAIR {
                    sum += chunk[PAIR * j + p].to_f32() as f64 * x.get(t * cols + PAIR * c + p) as f64;
                }
            }
            *o += sum as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{FloatWeight, CHUNK, ROWS};
    use crate::simd::Ahead;
    use core::arch::x86_64::*;

    /// One group (8 rows) times `T` tokens: per chunk, two 256-bit
    /// registers of four rows' pairs, one 64-bit broadcast per token.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `x` holds `T` rows of
    /// `w.len() / 8` values.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn gemm<W: FloatWeight, const T: usize>(w: &[W], x: &[f32], out: &mut [[f32; ROWS]; T]) {
        let cols = w.len() / ROWS;
        let mut acc = [[_mm256_setzero_ps(); 2]; T];
        let mut ahead = Ahead::new(w);
        for (c, chunk) in w.chunks_exact(CHUNK).enumerate() {
            if T == 1 {
                ahead.before(&chunk[CHUNK - 1]);
            }
            // SAFETY: sixteen values of `chunk`, eight at 0 and eight at 8;
            // the CPU has AVX2 and F16C (this function's features).
            let wv = unsafe { [W::load8(chunk.as_ptr()), W::load8(chunk.as_ptr().add(8))] };
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: values 2c, 2c + 1 of token t's row: in bounds,
                // as `x` holds T rows of `cols` (the caller's contract).
                let pair = unsafe { std::ptr::read_unaligned(x.as_ptr().add(t * cols + 2 * c).cast::<f64>()) };
                let xt = _mm256_castpd_ps(_mm256_set1_pd(pair));
                acc[0] = _mm256_fmadd_ps(wv[0], xt, acc[0]);
                acc[1] = _mm256_fmadd_ps(wv[1], xt, acc[1]);
            }
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            // Lanes (row, value of the pair): adjacent lanes summed give
            // rows 0, 1, 4, 5 | 2, 3, 6, 7; one permute puts them in order.
            let rows = _mm256_hadd_ps(acc[0], acc[1]);
            let rows = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(rows)));
            // SAFETY: reads and writes exactly the eight floats of `o`.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), _mm256_add_ps(_mm256_loadu_ps(o.as_ptr()), rows)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{FloatWeight, CHUNK, ROWS, ROWS2};
    use crate::simd::Ahead;
    use core::arch::x86_64::*;
    use half::bf16;

    /// Adjacent lanes of `a` and of `b` summed: the even lanes of `a`, then
    /// those of `b` (sixteen rows in order, from two groups' lanes of
    /// (row, value of the pair)).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fold(a: __m512, b: __m512) -> __m512 {
        let a = _mm512_add_ps(a, _mm512_permute_ps::<0b10_11_00_01>(a));
        let b = _mm512_add_ps(b, _mm512_permute_ps::<0b10_11_00_01>(b));
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        _mm512_permutex2var_ps(a, even, b)
    }

    /// Two groups (16 rows) times `T` tokens: per chunk, each group's pairs
    /// widened to one register, one 64-bit broadcast per token and two
    /// FMAs. Each lane sums its products in chunk order whatever `T` is,
    /// so a token's outputs do not depend on the batch it came in (the
    /// decoder's token-by-token and batched logits agree exactly); one
    /// token still has two chains in flight, enough for the bandwidth.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL, AVX2, FMA and F16C; both groups
    /// hold `8 * cols` values and `x` holds `T` rows of `cols`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn gemm<W: FloatWeight, const T: usize>(w: [&[W]; 2], x: &[f32], out: &mut [[f32; ROWS2]; T]) {
        let cols = w[0].len() / ROWS;
        let mut acc = [[_mm512_setzero_ps(); 2]; T];
        let mut ahead = [Ahead::new(w[0]), Ahead::new(w[1])];
        for (c, (a, b)) in w[0].chunks_exact(CHUNK).zip(w[1].chunks_exact(CHUNK)).enumerate() {
            if T == 1 {
                ahead[0].before(&a[CHUNK - 1]);
                ahead[1].before(&b[CHUNK - 1]);
            }
            // SAFETY: the sixteen values of each chunk; the CPU has AVX-512 F.
            let wv = unsafe { [W::load16(a.as_ptr()), W::load16(b.as_ptr())] };
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: values 2c, 2c + 1 of token t's row (T rows of
                // `cols`, the caller's contract).
                let pair = unsafe { std::ptr::read_unaligned(x.as_ptr().add(t * cols + 2 * c).cast::<f64>()) };
                let xt = _mm512_castpd_ps(_mm512_set1_pd(pair));
                acc[0] = _mm512_fmadd_ps(wv[0], xt, acc[0]);
                acc[1] = _mm512_fmadd_ps(wv[1], xt, acc[1]);
            }
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            let rows = fold(acc[0], acc[1]);
            // SAFETY: reads and writes exactly the sixteen floats of `o`.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(_mm512_loadu_ps(o.as_ptr()), rows)) };
        }
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
    /// of products into f32. The two groups' chunks fill one register (lane
    /// = row), a token's pair is one 32-bit broadcast; chunks alternate
    /// between two sets of accumulators, so sixteen chains hide the
    /// instruction's latency.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and BF16, and AVX2; both groups
    /// hold `8 * cols` values and `x` holds `T` rows of `cols`.
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) unsafe fn dot_bf16<const T: usize>(w: [&[bf16]; 2], x: &[bf16], out: &mut [[f32; ROWS2]; T]) {
        let cols = w[0].len() / ROWS;
        let mut acc = [[_mm512_setzero_ps(); T]; 2];
        let mut ahead = [Ahead::new(w[0]), Ahead::new(w[1])];
        // One chunk: `acc += chunk c of both groups x token pairs`.
        let step = |acc: &mut [__m512; T], c: usize, a: &[bf16], b: &[bf16]| {
            // SAFETY: the 32 bytes of each chunk, unaligned; the CPU has
            // AVX-512 F and BF16 (this function's features).
            let wv = unsafe {
                let lo = _mm512_castsi256_si512(_mm256_loadu_si256(a.as_ptr().cast()));
                as_bh(_mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(b.as_ptr().cast())))
            };
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: values 2c, 2c + 1 of token t's row (T rows of
                // `cols`, the caller's contract).
                let pair = unsafe { std::ptr::read_unaligned(x.as_ptr().add(t * cols + 2 * c).cast::<i32>()) };
                *acc = _mm512_dpbf16_ps(*acc, wv, as_bh(_mm512_set1_epi32(pair)));
            }
        };
        // Chunks two at a time, into the two sets of accumulators.
        let (pa, ra) = w[0].as_chunks::<{ 2 * CHUNK }>();
        let (pb, rb) = w[1].as_chunks::<{ 2 * CHUNK }>();
        let [acc0, acc1] = &mut acc;
        for (i, (a, b)) in pa.iter().zip(pb).enumerate() {
            if T == 1 {
                ahead[0].before(&a[2 * CHUNK - 1]);
                ahead[1].before(&b[2 * CHUNK - 1]);
            }
            step(acc0, 2 * i, &a[..CHUNK], &b[..CHUNK]);
            step(acc1, 2 * i + 1, &a[CHUNK..], &b[CHUNK..]);
        }
        if !ra.is_empty() {
            step(acc0, 2 * pa.len(), ra, rb);
        }
        for (t, o) in out.iter_mut().enumerate() {
            let rows = _mm512_add_ps(acc[0][t], acc[1][t]);
            // SAFETY: reads and writes exactly the sixteen floats of `o`.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(_mm512_loadu_ps(o.as_ptr()), rows)) };
        }
    }
}
