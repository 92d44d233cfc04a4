//! Kernels for the row-interleaved K-quant layouts (`formats::interleaved`,
//! [`BlockQ4Kx8`], [`BlockQ5Kx8`], [`BlockQ6Kx8`]): eight weight rows times `T` Q8_K activation rows in one
//! pass over the super-blocks, giving an 8 x `T` tile of outputs, as
//! `x8.rs` does for Q4_0 and Q8_0.
//!
//! The scalar reference keeps ggml's running sums per (row, token)
//! ([`KDotAcc`]), so it equals the one-row `scalar::vec_dot_q*_k_q8_k` bit
//! for bit. The AVX2 kernel agrees with it to f32 rounding and is tested
//! against it in `kernels/tests/interleaved_k.rs`.

#[cfg(target_arch = "x86_64")]
use super::cpu_has;
use super::scalar::{KDotAcc, SuperBlock};
use super::x8::{per_group, two_group_kernel, ROWS2};
use super::Isa;
use crate::formats::interleaved::{BlockQ4Kx8, BlockQ5Kx8, BlockQ6Kx8, Interleaved, ROWS};
use crate::formats::BlockQ8K;

/// `T` activation rows quantized to Q8_K, `nb` super-blocks each, one after
/// the other, with each super-block's [`pair_sums`].
#[derive(Clone, Copy)]
pub struct ActK<'a> {
    pub q: &'a [BlockQ8K],
    pub pairs: &'a [[i32; 4]],
}

/// The activation sums of the eight 32-weight sub-blocks as four pairs of
/// 16-bit values, `(sum[2p], sum[2p + 1])` in word `p`: one multiply-add of
/// a word by a pair of mins gives both sub-blocks' min terms. A sum of 32
/// values of at most 128 fits in 16 bits.
pub fn pair_sums(y: &BlockQ8K) -> [i32; 4] {
    let sum = |s: usize| (y.bsums[2 * s] + y.bsums[2 * s + 1]) as u16 as u32;
    std::array::from_fn(|p| (sum(2 * p) | sum(2 * p + 1) << 16) as i32)
}

/// An interleaved K-quant type with kernels.
pub trait X8KDot: Interleaved<Source: SuperBlock> {
    /// Whether the kernels read [`ActK::pairs`] (the formats with mins).
    const NEEDS_PAIRS: bool = true;
    /// Tokens per tile of the two-group AVX-512 kernel.
    const TILE_VNNI: usize = 4;
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `act` must hold `T * w.len()`
    /// super-blocks, and as many pair sums when the type needs them.
    unsafe fn avx2<const T: usize>(w: &[Self], act: ActK, out: &mut [[f32; ROWS]; T]);
    #[cfg(target_arch = "x86_64")]
    /// Two groups of `nb` super-blocks each; by default the AVX2 kernel
    /// on each.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `act`
    /// as for [`X8KDot::avx2`].
    unsafe fn avx512<const T: usize>(w: [&[Self]; 2], act: ActK, out: &mut [[f32; ROWS2]; T]) {
        // SAFETY: the caller's contract covers the AVX2 kernel's.
        per_group(w, out, |w, o| unsafe { Self::avx2::<T>(w, act, o) });
    }
}

/// Tokens per tile on `isa` (the interleaved K walk's tile). On AVX2, 8
/// rows x 4 tokens keeps the unpacked weights and the accumulators in the
/// 16 registers.
pub fn tile<X: X8KDot>(isa: Isa) -> usize {
    if two_group_kernel(isa) {
        X::TILE_VNNI
    } else {
        4
    }
}

/// [`gemm`] for two interleaved groups of `nb` super-blocks each: rows 0..8
/// of `out[t]` from `w[0]`, 8..16 from `w[1]` (as `x8::gemm2`). One token
/// runs group after group, so the weights are one stream from memory
/// (`examples/gemv_rate.rs`, Q4_K: 30 against 23 GB/s on one thread, 37
/// against 34 on two, against the two-group VNNI kernel).
#[inline]
pub fn gemm2<X: X8KDot, const T: usize>(isa: Isa, w: [&[X]; 2], act: ActK, out: &mut [[f32; ROWS2]; T]) {
    assert_eq!(w[0].len(), w[1].len(), "groups of different lengths");
    #[cfg(target_arch = "x86_64")]
    if T > 1 && two_group_kernel(isa) {
        let n = w[0].len() * T;
        assert!(act.q.len() == n, "activations do not match the weights");
        assert!(!X::NEEDS_PAIRS || act.pairs.len() == n, "activation pair sums missing");
        // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI and AVX2, FMA, F16C
        // (`two_group_kernel`); lengths are checked above.
        unsafe { X::avx512::<T>(w, act, out) };
        return;
    }
    per_group(w, out, |w, o| gemm::<X, T>(isa, w, act, o));
}

/// `out[t][j] = dot(row j of w, activation row t)` for the eight rows of one
/// interleaved group and `T` activation rows.
#[inline]
pub fn gemm<X: X8KDot, const T: usize>(isa: Isa, w: &[X], act: ActK, out: &mut [[f32; ROWS]; T]) {
    let n = w.len() * T;
    assert!(act.q.len() == n, "activations do not match the weights");
    assert!(!X::NEEDS_PAIRS || act.pairs.len() == n, "activation pair sums missing");
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if cpu_has(Isa::Avx2) => {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above);
            // lengths are checked above.
            unsafe { X::avx2::<T>(w, act, out) }
        }
        // The runtime interleaves only on x86-64; other callers get the
        // reference.
        _ => reference::<X, T>(w, act, out),
    }
}

/// The scalar reference: ggml's one-row dot per (row, token).
pub fn reference<X: Interleaved<Source: SuperBlock>, const T: usize>(w: &[X], act: ActK, out: &mut [[f32; ROWS]; T]) {
    let nb = w.len();
    let mut acc = [[KDotAcc::default(); ROWS]; T];
    for (b, wb) in w.iter().enumerate() {
        for (j, row) in wb.to_rows().iter().enumerate() {
            for (t, acc) in acc.iter_mut().enumerate() {
                acc[j].add(row, &act.q[t * nb + b]);
            }
        }
    }
    *out = acc.map(|a| a.map(KDotAcc::finish));
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use core::arch::x86_64::*;

    /// The 128 values of `K4Scales::unpack`, in vector code: bytes 0..64 the
    /// scales, 64..128 the mins.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn unpack_scales(p: &[u8; 96], out: &mut [u8; 128]) {
        // SAFETY: three 32-byte loads inside the 96 bytes of `p`, four
        // stores inside the 128 bytes of `out`; all unaligned.
        unsafe {
            let lo0 = _mm256_loadu_si256(p.as_ptr().cast());
            let lo1 = _mm256_loadu_si256(p.as_ptr().add(32).cast());
            let hi = _mm256_loadu_si256(p.as_ptr().add(64).cast());
            let (nib, top) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
            // Bit pair k of `hi` moved to bits 4..6: 16-bit shifts are
            // fine, as the bits they carry across bytes are masked off.
            let v = [
                _mm256_or_si256(_mm256_and_si256(lo0, nib), _mm256_and_si256(_mm256_slli_epi16::<4>(hi), top)),
                _mm256_or_si256(_mm256_and_si256(lo1, nib), _mm256_and_si256(_mm256_slli_epi16::<2>(hi), top)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(lo0), nib), _mm256_and_si256(hi, top)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(lo1), nib),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(hi), top),
                ),
            ];
            for (k, v) in v.into_iter().enumerate() {
                _mm256_storeu_si256(out.as_mut_ptr().add(32 * k).cast(), v);
            }
        }
    }

    /// Sub-block `s`'s eight scales as 16-bit pairs `(sc[j], sc[j])`, to
    /// multiply-add the pair sums of row `j`'s four weights per chunk.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub_block_scales(v: &[u8; 128], s: usize) -> __m256i {
        let eight = &v[8 * s..8 * s + 8];
        let x = _mm256_set1_epi64x(i64::from_le_bytes(eight.try_into().expect("8 bytes")));
        // Each lane takes its four rows' bytes twice, zero-extended.
        const Z: i8 = -1;
        let pick = _mm256_setr_epi8(
            0, Z, 0, Z, 1, Z, 1, Z, 2, Z, 2, Z, 3, Z, 3, Z, 4, Z, 4, Z, 5, Z, 5, Z, 6, Z, 6, Z, 7, Z, 7, Z,
        );
        _mm256_shuffle_epi8(x, pick)
    }

    /// Pair `p`'s mins as 16-bit values, in the order [`pair_sums`] wants.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair_mins(v: &[u8; 128], p: usize) -> __m256i {
        // SAFETY: a 16-byte unaligned load at 64 + 16p < 128 - 15.
        _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(v.as_ptr().add(64 + 16 * p).cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn halves(d: &[half::f16; ROWS]) -> __m256 {
        // SAFETY: reads exactly the 16 bytes of `d`; the load is unaligned.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d.as_ptr().cast()) })
    }

    /// Q4_K and Q5_K, which share one kernel: the same scales, mins and
    /// nibbles, Q5_K adding a fifth bit per weight from `qh`.
    pub(super) trait K4Family {
        /// Chunks per 16-bit sum (see [`k4_sub_block`]).
        const RUN: usize;
        fn d_dmin(&self) -> (&[half::f16; ROWS], &[half::f16; ROWS]);
        fn scales(&self) -> &[u8; 96];
        fn qs(&self) -> &[u8; 128 * ROWS];
        /// Q5_K's fifth bits.
        fn qh(&self) -> Option<&[u8; 32 * ROWS]>;
    }

    /// The [`K4Family`] view of a layout and its kernel, [`k4_gemm`].
    macro_rules! k4_family {
        ($x:ty, run: $run:expr, qh: |$b:ident| $qh:expr) => {
            impl K4Family for $x {
                const RUN: usize = $run;
                fn d_dmin(&self) -> (&[half::f16; ROWS], &[half::f16; ROWS]) {
                    (&self.d, &self.dmin)
                }
                fn scales(&self) -> &[u8; 96] {
                    &self.scales
                }
                fn qs(&self) -> &[u8; 128 * ROWS] {
                    &self.qs
                }
                fn qh(&self) -> Option<&[u8; 32 * ROWS]> {
                    let $b = self;
                    $qh
                }
            }

            impl X8KDot for $x {
                const TILE_VNNI: usize = 8;
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn avx2<const T: usize>(w: &[Self], act: ActK, out: &mut [[f32; ROWS]; T]) {
                    k4_gemm::<Self, T>(w, act, out)
                }
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
                unsafe fn avx512<const T: usize>(w: [&[Self]; 2], act: ActK, out: &mut [[f32; ROWS2]; T]) {
                    // SAFETY: the caller's contract is the kernel's.
                    unsafe { super::avx512::k4_gemm::<Self, T>(w, act, out) }
                }
            }
        };
    }
    k4_family!(BlockQ4Kx8, run: 8, qh: |_b| None);
    k4_family!(BlockQ5Kx8, run: 4, qh: |b| Some(&b.qh));

    /// Per sub-block ([`k4_sub_block`]): levels times activations in 16-bit
    /// pair sums, then one multiply-add by the rows' scales into 32 bits.
    /// Per super-block: the mins against the pair sums, and the two f16
    /// scales.
    ///
    /// # Safety
    /// As for [`X8KDot::avx2`]: `act` holds `T * w.len()` super-blocks and
    /// pair sums.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn k4_gemm<X: K4Family, const T: usize>(w: &[X], act: ActK, out: &mut [[f32; ROWS]; T]) {
        let nb = w.len();
        let ys: [*const BlockQ8K; T] = std::array::from_fn(|t| act.q.as_ptr().wrapping_add(t * nb));
        let pairs: [*const [i32; 4]; T] = std::array::from_fn(|t| act.pairs.as_ptr().wrapping_add(t * nb));
        let mut acc = [_mm256_setzero_ps(); T];
        let mut v = [0u8; 128];
        let mut ahead = crate::simd::Ahead::new(w);
        for (b, wb) in w.iter().enumerate() {
            if T == 1 {
                ahead.before(wb);
            }
            // SAFETY: b < nb and t < T, so each pointer stays inside the
            // T * nb blocks and pair sums of the caller's contract.
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| unsafe { &*ys[t].add(b) });
            unpack_scales(wb.scales(), &mut v);
            let mut isum = [_mm256_setzero_si256(); T];
            // A loop, not eight unrolled copies: unrolled, the compiler
            // spills the levels to reuse them across tokens.
            for s in 0..8 {
                k4_sub_block::<X, T>(wb, &y, &v, s, &mut isum);
            }
            let mins: [__m256i; 4] = std::array::from_fn(|p| pair_mins(&v, p));
            let (d, dmin) = wb.d_dmin();
            let (d, dmin) = (halves(d), halves(dmin));
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as for `y` above.
                let pair = unsafe { &*pairs[t].add(b) };
                let m: [__m256i; 4] = std::array::from_fn(|p| _mm256_madd_epi16(mins[p], _mm256_set1_epi32(pair[p])));
                let m = _mm256_add_epi32(_mm256_add_epi32(m[0], m[1]), _mm256_add_epi32(m[2], m[3]));
                let dy = _mm256_set1_ps(y[t].d);
                *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(isum[t]), *acc);
                *acc = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dy), _mm256_cvtepi32_ps(m), *acc);
            }
        }
        store(acc, out);
    }

    /// Sub-block `s` (weights `32 s + 4 c ..`, c in 0..8) of the eight rows
    /// times `T` tokens, added to `isum`. Its nibbles are the low (even `s`)
    /// or high halves of `qs` chunks `8 (s / 2) + c`, its fifth bits bit `s`
    /// of `qh` chunk `c`. The 16-bit pair sums take eight chunks of levels
    /// below 16 (8 * 2 * 15 * 128 < 2^15) but only four below 32
    /// (4 * 2 * 31 * 128 < 2^15), so Q5_K multiplies by the scales twice.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn k4_sub_block<X: K4Family, const T: usize>(
        wb: &X,
        y: &[&BlockQ8K; T],
        v: &[u8; 128],
        s: usize,
        isum: &mut [__m256i; T],
    ) {
        let (nib, fifth, bit) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10), _mm256_set1_epi8(1 << s));
        let sc = sub_block_scales(v, s);
        for c0 in (0..8).step_by(X::RUN) {
            let mut p = [_mm256_setzero_si256(); T];
            for c in c0..c0 + X::RUN {
                // SAFETY: s < 8 and c < 8, so chunk 8 (s / 2) + c < 32, a
                // 32-byte load inside the 1024 bytes of `qs`; unaligned.
                let raw = unsafe { _mm256_loadu_si256(wb.qs().as_ptr().add(32 * (8 * (s / 2) + c)).cast()) };
                let mut q = _mm256_and_si256(if s % 2 == 1 { _mm256_srli_epi16::<4>(raw) } else { raw }, nib);
                if let Some(qh) = wb.qh() {
                    // SAFETY: chunk c < 8, a 32-byte load inside the 256
                    // bytes of `qh`; unaligned.
                    let h = unsafe { _mm256_loadu_si256(qh.as_ptr().add(32 * c).cast()) };
                    // Bit s of each byte as 16: a compare, as `s` varies.
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
                    q = _mm256_or_si256(q, _mm256_and_si256(set, fifth));
                }
                let at = 32 * s + 4 * c;
                for (p, y) in p.iter_mut().zip(y) {
                    // SAFETY: s < 8 and c < 8, so at + 4 <= 224 + 28 + 4 = 256.
                    *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(q, unsafe { chunk(y, at) }));
                }
            }
            for (isum, p) in isum.iter_mut().zip(p) {
                *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(p, sc));
            }
        }
    }

    impl X8KDot for BlockQ6Kx8 {
        const NEEDS_PAIRS: bool = false;
        // Two sub-blocks' sums per token are live in the VNNI kernel: 4
        // tokens keep them, the totals and the weights in registers
        // (`examples/gemm_rate.rs`, one thread: 95-105 G MAC/s against
        // 70-80 with 3, 6 or 8 tokens, and 40-60 for the AVX2 kernel).
        const TILE_VNNI: usize = 4;

        /// Levels 0..64 (the `-32` comes back through the activation sums)
        /// times activations in 16-bit pair sums over two chunks
        /// (2 * 2 * 63 * 128 < 2^15), then a multiply-add by the rows'
        /// scales into 32 bits.
        ///
        /// Weights `128 h + 32 v + 4 k ..` (v in 0..4, k in 0..8) of a row
        /// have their low four bits in `ql` chunk `16 h + 8 (v % 2) + k`
        /// (high nibbles for v >= 2) and their top two bits in bit pair `v`
        /// of `qh` chunk `8 h + k`; they fall in sub-block `8 h + 2 v + k / 4`.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2<const T: usize>(w: &[Self], act: ActK, out: &mut [[f32; ROWS]; T]) {
            let nb = w.len();
            let ys: [*const BlockQ8K; T] = std::array::from_fn(|t| act.q.as_ptr().wrapping_add(t * nb));
            let mut acc = [_mm256_setzero_ps(); T];
            let mut ahead = crate::simd::Ahead::new(w);
            for (b, wb) in w.iter().enumerate() {
                if T == 1 {
                    ahead.before(wb);
                }
                // SAFETY: b < nb and t < T, inside the T * nb blocks that
                // `gemm` checked.
                let y: [&BlockQ8K; T] = std::array::from_fn(|t| unsafe { &*ys[t].add(b) });
                let mut isum = [_mm256_setzero_si256(); T];
                for h in 0..2 {
                    q6_part::<T, 0>(wb, &y, h, &mut isum);
                    q6_part::<T, 1>(wb, &y, h, &mut isum);
                    q6_part::<T, 2>(wb, &y, h, &mut isum);
                    q6_part::<T, 3>(wb, &y, h, &mut isum);
                }
                let d = halves(&wb.d);
                for (t, acc) in acc.iter_mut().enumerate() {
                    // The -32 of every level: 32 * sum over sub-blocks of
                    // scale * (sum of the sub-block's activations), the
                    // sixteen sums being Q8_K's `bsums`, two per multiply-add.
                    let off: [__m256i; 8] = std::array::from_fn(|p| {
                        // SAFETY: 16 bytes at 16p < 128 - 15 of `scales`, and
                        // 4 bytes at 2p < 16 - 1 of `bsums`; unaligned.
                        let (sc, bs) = unsafe {
                            (
                                _mm_loadu_si128(wb.scales.as_ptr().add(16 * p).cast()),
                                y[t].bsums.as_ptr().add(2 * p).cast::<i32>().read_unaligned(),
                            )
                        };
                        _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), _mm256_set1_epi32(bs))
                    });
                    let off = off.into_iter().fold(_mm256_setzero_si256(), |a, o| _mm256_add_epi32(a, o));
                    let sum = _mm256_sub_epi32(isum[t], _mm256_slli_epi32::<5>(off));
                    let dy = _mm256_set1_ps(y[t].d);
                    *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(sum), *acc);
                }
            }
            store(acc, out);
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn avx512<const T: usize>(w: [&[Self]; 2], act: ActK, out: &mut [[f32; ROWS2]; T]) {
            // SAFETY: the caller's contract is the kernel's.
            unsafe { super::avx512::q6_gemm::<T>(w, act, out) }
        }
    }

    /// Weights `128 h + 32 V + 4 k ..` (k in 0..8) of the eight rows times
    /// `T` tokens, added to `isum`: 16-bit sums over two chunks, then one
    /// multiply-add by the sub-block's scales.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn q6_part<const T: usize, const V: usize>(wb: &BlockQ6Kx8, y: &[&BlockQ8K; T], h: usize, isum: &mut [__m256i; T]) {
        let (nib, top) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        for half in 0..2 {
            let sc = q6_scales(&wb.scales, 8 * h + 2 * V + half);
            for pair in 0..2 {
                let mut p = [_mm256_setzero_si256(); T];
                for k in 4 * half + 2 * pair..4 * half + 2 * pair + 2 {
                    // SAFETY: h < 2 and k < 8, so the chunks are below 32
                    // (ql) and 16 (qh): 32-byte loads inside the 1024 and
                    // 512 bytes; unaligned.
                    let (low, high) = unsafe {
                        (
                            _mm256_loadu_si256(wb.ql.as_ptr().add(32 * (16 * h + 8 * (V % 2) + k)).cast()),
                            _mm256_loadu_si256(wb.qh.as_ptr().add(32 * (8 * h + k)).cast()),
                        )
                    };
                    let low = _mm256_and_si256(if V >= 2 { _mm256_srli_epi16::<4>(low) } else { low }, nib);
                    // Bit pair V of each `qh` byte moved to bits 4..6.
                    let high = match V {
                        0 => _mm256_slli_epi16::<4>(high),
                        1 => _mm256_slli_epi16::<2>(high),
                        2 => high,
                        _ => _mm256_srli_epi16::<2>(high),
                    };
                    let q = _mm256_or_si256(low, _mm256_and_si256(high, top));
                    let at = 128 * h + 32 * V + 4 * k;
                    for (p, y) in p.iter_mut().zip(y) {
                        // SAFETY: at + 4 <= 128 + 96 + 28 + 4 = 256.
                        *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(q, unsafe { chunk(y, at) }));
                    }
                }
                for (isum, p) in isum.iter_mut().zip(p) {
                    *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(p, sc));
                }
            }
        }
    }

    /// Sub-block `s`'s eight scales (signed) as 16-bit pairs
    /// `(sc[j], sc[j])`, from `BlockQ6Kx8::scales`' pair order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn q6_scales(scales: &[i8; 128], s: usize) -> __m256i {
        // SAFETY: 16 bytes at 16 (s / 2) <= 112, inside `scales`; unaligned.
        let x = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(scales.as_ptr().add(16 * (s / 2)).cast()) });
        // Row j's byte 2j + s % 2 into the high byte of both of its 16-bit
        // lanes, then an arithmetic shift down extends its sign.
        const Z: i8 = -1;
        #[rustfmt::skip]
        const PICK: [[i8; 32]; 2] = [
            [Z, 0, Z, 0, Z, 2, Z, 2, Z, 4, Z, 4, Z, 6, Z, 6, Z, 8, Z, 8, Z, 10, Z, 10, Z, 12, Z, 12, Z, 14, Z, 14],
            [Z, 1, Z, 1, Z, 3, Z, 3, Z, 5, Z, 5, Z, 7, Z, 7, Z, 9, Z, 9, Z, 11, Z, 11, Z, 13, Z, 13, Z, 15, Z, 15],
        ];
        // SAFETY: a 32-byte unaligned load of one of the two patterns.
        let pick = unsafe { _mm256_loadu_si256(PICK[s % 2].as_ptr().cast()) };
        _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(x, pick))
    }

    /// Activations `at..at + 4` of `y` in every 32-bit lane.
    ///
    /// # Safety
    /// `at + 4 <= 256`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn chunk(y: &BlockQ8K, at: usize) -> __m256i {
        // SAFETY: inside `qs` by the caller's contract; unaligned read.
        _mm256_set1_epi32(unsafe { y.qs.as_ptr().add(at).cast::<i32>().read_unaligned() })
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn store<const T: usize>(acc: [__m256; T], out: &mut [[f32; ROWS]; T]) {
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: writes exactly the eight floats of `o`; unaligned.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::avx2::{unpack_scales, K4Family};
    use super::*;
    use crate::simd::x8::avx512::{halves16, join, join128};
    use core::arch::x86_64::*;

    /// Q4_K and Q5_K on sixteen rows: per sub-block and token, eight
    /// `vpdpbusd` (levels 0..32 times signed activation chunks, exact in
    /// 32 bits) and one multiply by the rows' 6-bit scales; per
    /// super-block, the mins against the activation pair sums with
    /// `vpdpwssd`, and the two f16 scales.
    ///
    /// # Safety
    /// As for [`X8KDot::avx512`]: `act` holds `T * nb` super-blocks and
    /// pair sums.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn k4_gemm<X: K4Family, const T: usize>(w: [&[X]; 2], act: ActK, out: &mut [[f32; ROWS2]; T]) {
        let nb = w[0].len();
        let ys: [*const BlockQ8K; T] = std::array::from_fn(|t| act.q.as_ptr().wrapping_add(t * nb));
        let pairs: [*const [i32; 4]; T] = std::array::from_fn(|t| act.pairs.as_ptr().wrapping_add(t * nb));
        let mut acc = [_mm512_setzero_ps(); T];
        let (mut va, mut vb) = ([0u8; 128], [0u8; 128]);
        let (nib, sixteen) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x10));
        for (b, (wa, wb)) in w[0].iter().zip(w[1]).enumerate() {
            // SAFETY: b < nb and t < T, so each pointer stays inside the
            // T * nb blocks and pair sums of the caller's contract.
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| unsafe { &*ys[t].add(b) });
            unpack_scales(wa.scales(), &mut va);
            unpack_scales(wb.scales(), &mut vb);
            let mut isum = [_mm512_setzero_si512(); T];
            for s in 0..8 {
                // Row j's scale of sub-block s in 32-bit lane j (group 1's
                // rows in lanes 8..16).
                let sc = {
                    // SAFETY: 8 bytes at 8s < 64 of each 128-byte array.
                    let (a, b) = unsafe {
                        (_mm_loadl_epi64(va.as_ptr().add(8 * s).cast()), _mm_loadl_epi64(vb.as_ptr().add(8 * s).cast()))
                    };
                    _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(a, b))
                };
                let bit = _mm512_set1_epi8(1 << s);
                let q: [__m512i; 8] = std::array::from_fn(|c| {
                    let at = 32 * (8 * (s / 2) + c);
                    // SAFETY: s < 8 and c < 8, so chunk 8 (s / 2) + c < 32:
                    // 32 bytes inside each group's 1024 bytes of `qs`.
                    let raw = unsafe { join(wa.qs().as_ptr().add(at), wb.qs().as_ptr().add(at)) };
                    let q = _mm512_and_si512(if s % 2 == 1 { _mm512_srli_epi16::<4>(raw) } else { raw }, nib);
                    match (wa.qh(), wb.qh()) {
                        (Some(ha), Some(hb)) => {
                            // SAFETY: chunk c < 8: 32 bytes inside each
                            // group's 256 bytes of `qh`.
                            let h = unsafe { join(ha.as_ptr().add(32 * c), hb.as_ptr().add(32 * c)) };
                            // The fifth bit (bit s of the qh byte) adds 16.
                            _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(h, bit), q, sixteen)
                        }
                        _ => q,
                    }
                });
                for (isum, y) in isum.iter_mut().zip(&y) {
                    let mut sum = _mm512_setzero_si512();
                    for (c, q) in q.iter().enumerate() {
                        // SAFETY: 32 s + 4 c + 4 <= 256, inside `qs`.
                        let yc = unsafe { y.qs.as_ptr().add(32 * s + 4 * c).cast::<i32>().read_unaligned() };
                        sum = _mm512_dpbusd_epi32(sum, *q, _mm512_set1_epi32(yc));
                    }
                    *isum = _mm512_add_epi32(*isum, _mm512_mullo_epi32(sum, sc));
                }
            }
            // Pair p's mins of the 16 rows as 16-bit pairs (K4Scales' order).
            // SAFETY: 16 bytes at 64 + 16p <= 112 of each 128-byte array.
            let mins: [__m512i; 4] = std::array::from_fn(|p| {
                _mm512_cvtepu8_epi16(unsafe { join128(va.as_ptr().add(64 + 16 * p), vb.as_ptr().add(64 + 16 * p)) })
            });
            let (da, dmin_a) = wa.d_dmin();
            let (db, dmin_b) = wb.d_dmin();
            let (d, dmin) = (halves16(da, db), halves16(dmin_a, dmin_b));
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as for `y` above.
                let pair = unsafe { &*pairs[t].add(b) };
                let m = (0..4)
                    .fold(_mm512_setzero_si512(), |m, p| _mm512_dpwssd_epi32(m, mins[p], _mm512_set1_epi32(pair[p])));
                let dy = _mm512_set1_ps(y[t].d);
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(isum[t]), *acc);
                *acc = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dy), _mm512_cvtepi32_ps(m), *acc);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: writes exactly the sixteen floats of `o`; unaligned.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
    }

    /// Q6_K on sixteen rows: per sub-block of 16 weights and token, four
    /// `vpdpbusd` (levels 0..64 times signed activation chunks, exact in
    /// 32 bits) and one multiply by the rows' signed scales; per
    /// super-block, the `-32` of every level against the activation sums
    /// (`bsums`) with `vpdpwssd`, and the f16 scale. The bit layout is the
    /// AVX2 kernel's (`BlockQ6Kx8`'s `avx2`).
    ///
    /// # Safety
    /// As for [`X8KDot::avx512`]: `act` holds `T * nb` super-blocks.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn q6_gemm<const T: usize>(w: [&[BlockQ6Kx8]; 2], act: ActK, out: &mut [[f32; ROWS2]; T]) {
        let nb = w[0].len();
        let ys: [*const BlockQ8K; T] = std::array::from_fn(|t| act.q.as_ptr().wrapping_add(t * nb));
        let mut acc = [_mm512_setzero_ps(); T];
        let (nib, top) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
        // A pair's 16 scale bytes (row j's two at 2j, 2j + 1) reordered to
        // the even sub-block's eight, then the odd one's.
        #[rustfmt::skip]
        let evens_odds = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (b, (wa, wb)) in w[0].iter().zip(w[1]).enumerate() {
            // SAFETY: b < nb and t < T, inside the T * nb blocks of the
            // caller's contract.
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| unsafe { &*ys[t].add(b) });
            let pair = |x: &BlockQ6Kx8, p: usize| {
                // SAFETY: 16 bytes at 16p <= 112 of the 128-byte `scales`.
                _mm_shuffle_epi8(unsafe { _mm_loadu_si128(x.scales.as_ptr().add(16 * p).cast()) }, evens_odds)
            };
            let mut isum = [_mm512_setzero_si512(); T];
            // Levels v and v + 2 share their `ql` chunks (low and high
            // nibbles) and all four share the `qh` chunks: one load of each
            // gives two sub-blocks' weights.
            for h in 0..2 {
                for v in 0..2 {
                    // Sub-blocks 8h + 2v + half (scales[0]) and
                    // 8h + 2(v + 2) + half (scales[1]): row j's scale in
                    // 32-bit lane j (group 1's rows in lanes 8..16).
                    let (pa, pb) = (pair(wa, 4 * h + v), pair(wb, 4 * h + v));
                    let (qa, qb) = (pair(wa, 4 * h + v + 2), pair(wb, 4 * h + v + 2));
                    let scales = [
                        [_mm_unpacklo_epi64(pa, pb), _mm_unpacklo_epi64(qa, qb)],
                        [_mm_unpackhi_epi64(pa, pb), _mm_unpackhi_epi64(qa, qb)],
                    ];
                    for (half, sc) in scales.into_iter().enumerate() {
                        let mut sum = [[_mm512_setzero_si512(); T]; 2];
                        for k in 4 * half..4 * half + 4 {
                            let (lo, hi) = (32 * (16 * h + 8 * v + k), 32 * (8 * h + k));
                            // SAFETY: h < 2, v < 2, k < 8: the ql chunk is
                            // below 32 and the qh chunk below 16, 32 bytes
                            // inside each group's 1024 and 512 bytes.
                            let (low, high) = unsafe {
                                (
                                    join(wa.ql.as_ptr().add(lo), wb.ql.as_ptr().add(lo)),
                                    join(wa.qh.as_ptr().add(hi), wb.qh.as_ptr().add(hi)),
                                )
                            };
                            // Bit pair v (then v + 2) of each `qh` byte
                            // moved to bits 4..6.
                            let q = [
                                _mm512_or_si512(
                                    _mm512_and_si512(low, nib),
                                    _mm512_and_si512(
                                        if v == 0 {
                                            _mm512_slli_epi16::<4>(high)
                                        } else {
                                            _mm512_slli_epi16::<2>(high)
                                        },
                                        top,
                                    ),
                                ),
                                _mm512_or_si512(
                                    _mm512_and_si512(_mm512_srli_epi16::<4>(low), nib),
                                    _mm512_and_si512(if v == 0 { high } else { _mm512_srli_epi16::<2>(high) }, top),
                                ),
                            ];
                            for (u, (q, sum)) in q.iter().zip(&mut sum).enumerate() {
                                let at = 128 * h + 32 * (v + 2 * u) + 4 * k;
                                for (sum, y) in sum.iter_mut().zip(&y) {
                                    // SAFETY: at + 4 <= 128 + 96 + 28 + 4 =
                                    // 256, inside `qs`; unaligned.
                                    let yc = unsafe { y.qs.as_ptr().add(at).cast::<i32>().read_unaligned() };
                                    *sum = _mm512_dpbusd_epi32(*sum, *q, _mm512_set1_epi32(yc));
                                }
                            }
                        }
                        for (sum, sc) in sum.iter().zip(sc) {
                            let sc = _mm512_cvtepi8_epi32(sc);
                            for (isum, sum) in isum.iter_mut().zip(sum) {
                                *isum = _mm512_add_epi32(*isum, _mm512_mullo_epi32(*sum, sc));
                            }
                        }
                    }
                }
            }
            // Pair p's scales of the 16 rows as 16-bit pairs, against the
            // pair's two activation sums: the `-32` of every level.
            // SAFETY: 16 bytes at 16p <= 112 of each 128-byte `scales`.
            let pairs: [__m512i; 8] = std::array::from_fn(|p| {
                _mm512_cvtepi8_epi16(unsafe {
                    join128(wa.scales.as_ptr().add(16 * p).cast(), wb.scales.as_ptr().add(16 * p).cast())
                })
            });
            let d = halves16(&wa.d, &wb.d);
            for (t, acc) in acc.iter_mut().enumerate() {
                let off = pairs.iter().enumerate().fold(_mm512_setzero_si512(), |o, (p, sc)| {
                    // SAFETY: 4 bytes at 2p <= 14 of the 16 `bsums`; unaligned.
                    let bs = unsafe { y[t].bsums.as_ptr().add(2 * p).cast::<i32>().read_unaligned() };
                    _mm512_dpwssd_epi32(o, *sc, _mm512_set1_epi32(bs))
                });
                let sum = _mm512_sub_epi32(isum[t], _mm512_slli_epi32::<5>(off));
                let dy = _mm512_set1_ps(y[t].d);
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(sum), *acc);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: writes exactly the sixteen floats of `o`; unaligned.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl X8KDot for BlockQ4Kx8 {}
#[cfg(not(target_arch = "x86_64"))]
impl X8KDot for BlockQ5Kx8 {}
#[cfg(not(target_arch = "x86_64"))]
impl X8KDot for BlockQ6Kx8 {
    const NEEDS_PAIRS: bool = false;
}
