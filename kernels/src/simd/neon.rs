//! NEON kernels (aarch64), with an SDOT path behind a runtime check. Every
//! function here is checked against `scalar` in tests, under QEMU both with
//! dotprod (the default `max` CPU) and without (`cortex-a53`).
//!
//! NEON is part of the aarch64 baseline, so the plain kernels need no
//! feature check. SDOT (`dotprod`) is optional: its intrinsic `vdotq_s32` is
//! not stable, so the instruction is written with `asm!` inside a
//! `#[target_feature(enable = "neon,dotprod")]` function, called only after
//! `is_aarch64_feature_detected!("dotprod")`. The quantized loop is written
//! once (a macro) and compiled twice, once per multiply primitive.
//!
//! Unlike x86, NEON multiplies signed bytes by signed bytes, so weights are
//! unpacked to their centred signed values and every dot is exact for any
//! bit pattern, including -128 in both operands.
//!
//! The K-quants (Q2_K … Q6_K · Q8_K) go through the same loop: a
//! super-block is eight groups of 32 weights, unpacked to signed bytes like
//! the legacy blocks, dotted with the activations per sub-block and scaled by
//! the integer sub-block scales in i32 (exact), so only `d * dy` and the mins'
//! `dmin * dy * (bsums · mins)` are applied in f32.

use crate::formats::*;
use crate::simd::scalar::SuperBlock;
use core::arch::aarch64::*;
use core::arch::asm;
use half::{bf16, f16};

// ---------------------------------------------------------------------------
// Loads and unpacking.

#[inline]
#[target_feature(enable = "neon")]
fn load_i8x32(q: &[i8; 32]) -> [int8x16_t; 2] {
    // SAFETY: each load reads 16 bytes inside `q` (offsets 0 and 16).
    unsafe { [vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))] }
}

#[inline]
#[target_feature(enable = "neon")]
fn load_u8x16(q: &[u8; 16]) -> uint8x16_t {
    // SAFETY: reads exactly the 16 bytes of `q`.
    unsafe { vld1q_u8(q.as_ptr()) }
}

/// Eight 16-bit floats (f16 or bf16 bits) as one vector.
#[inline]
#[target_feature(enable = "neon")]
fn load_u16x8<T: Copy>(v: &[T; 8]) -> uint16x8_t {
    const { assert!(std::mem::size_of::<T>() == 2) };
    // SAFETY: `T` is 2 bytes (checked at compile time), so this reads exactly
    // the 16 bytes of `v`; `T` (f16/bf16) is 2-byte aligned like u16.
    unsafe { vld1q_u16(v.as_ptr().cast()) }
}

/// 32 4-bit weights as bytes 0..16: low nibbles are weights 0..16, high
/// nibbles 16..32, matching ggml's layout.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; 16]) -> [uint8x16_t; 2] {
    let v = load_u8x16(qs);
    [vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v)]
}

/// The fifth bits of Q5 weights, as 0x10 in byte j where bit j of `qh` is set.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: [u8; 4]) -> [uint8x16_t; 2] {
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201));
    let spread = |a: u8, b: u8| vcombine_u8(vdup_n_u8(a), vdup_n_u8(b));
    let pick = |v| vandq_u8(vtstq_u8(v, bit), vdupq_n_u8(0x10));
    [pick(spread(qh[0], qh[1])), pick(spread(qh[2], qh[3]))]
}

/// Q5 weights as bytes 0..32.
#[inline]
#[target_feature(enable = "neon")]
fn q5_weights(qs: &[u8; 16], qh: [u8; 4]) -> [uint8x16_t; 2] {
    let (n, h) = (nibbles(qs), fifth_bits(qh));
    [vorrq_u8(n[0], h[0]), vorrq_u8(n[1], h[1])]
}

// K-quant unpacking: each super-block as eight groups of 32 weights, as
// unsigned bytes (the format's signed levels plus its offset, below 128).
// Group `g` holds weights `32 g .. 32 g + 32`, which the formats store in one
// 32-byte range each (see `formats::k_quants`' packing functions).

type Groups = [[uint8x16_t; 2]; 8];

#[inline]
#[target_feature(enable = "neon")]
fn load_u8x32(q: &[u8; 32]) -> [uint8x16_t; 2] {
    // SAFETY: each load reads 16 bytes inside `q` (offsets 0 and 16).
    unsafe { [vld1q_u8(q.as_ptr()), vld1q_u8(q.as_ptr().add(16))] }
}

/// `(v >> shift) & mask` in every byte.
#[inline]
#[target_feature(enable = "neon")]
fn shift_mask(v: [uint8x16_t; 2], shift: usize, mask: u8) -> [uint8x16_t; 2] {
    // USHL by a negative count shifts right; `shift` is a constant once the
    // group loops are unrolled.
    let (n, m) = (vdupq_n_s8(-(shift as i8)), vdupq_n_u8(mask));
    [vandq_u8(vshlq_u8(v[0], n), m), vandq_u8(vshlq_u8(v[1], n), m)]
}

/// `w`, plus `add` in each byte whose `bits` byte has bit `bit` set.
#[inline]
#[target_feature(enable = "neon")]
fn with_bit(w: [uint8x16_t; 2], bits: [uint8x16_t; 2], bit: usize, add: u8) -> [uint8x16_t; 2] {
    let (b, a) = (vdupq_n_u8(1 << bit), vdupq_n_u8(add));
    let pick = |w, v| vorrq_u8(w, vandq_u8(vtstq_u8(v, b), a));
    [pick(w[0], bits[0]), pick(w[1], bits[1])]
}

/// 2-bit planes (Q2_K, Q3_K's low bits): group `4 h + s` is bits `2 s` of
/// bytes `32 h ..`.
#[inline]
#[target_feature(enable = "neon")]
fn planes_2bit(qs: &[u8; 64]) -> Groups {
    let halves = qs.as_chunks::<32>().0;
    let v = [load_u8x32(&halves[0]), load_u8x32(&halves[1])];
    std::array::from_fn(|g| shift_mask(v[g / 4], 2 * (g % 4), 3))
}

/// Q4_K and Q5_K nibbles: group `2 c` is the low nibbles of bytes `32 c ..`,
/// group `2 c + 1` the high ones.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles_k(qs: &[u8; 128]) -> Groups {
    let chunks = qs.as_chunks::<32>().0;
    std::array::from_fn(|g| shift_mask(load_u8x32(&chunks[g / 2]), 4 * (g % 2), 0x0F))
}

#[inline]
#[target_feature(enable = "neon")]
fn levels_q2k(x: &BlockQ2K) -> Groups {
    planes_2bit(&x.qs)
}

/// Q3_K: the third bit of weight `32 g + i` is bit `g` of `hmask[i]`.
#[inline]
#[target_feature(enable = "neon")]
fn levels_q3k(x: &BlockQ3K) -> Groups {
    let (low, hm) = (planes_2bit(&x.qs), load_u8x32(&x.hmask));
    std::array::from_fn(|g| with_bit(low[g], hm, g, 4))
}

#[inline]
#[target_feature(enable = "neon")]
fn levels_q4k(x: &BlockQ4K) -> Groups {
    nibbles_k(&x.qs)
}

/// Q5_K: the fifth bit of weight `32 g + i` is bit `g` of `qh[i]`.
#[inline]
#[target_feature(enable = "neon")]
fn levels_q5k(x: &BlockQ5K) -> Groups {
    let (low, qh) = (nibbles_k(&x.qs), load_u8x32(&x.qh));
    std::array::from_fn(|g| with_bit(low[g], qh, g, 16))
}

/// Q6_K: group `4 h + s` takes nibble `s / 2` of `ql` bytes
/// `64 h + 32 (s % 2) ..` and bits `2 s` of `qh` bytes `32 h ..` on top.
#[inline]
#[target_feature(enable = "neon")]
fn levels_q6k(x: &BlockQ6K) -> Groups {
    let ql = x.ql.as_chunks::<32>().0;
    let qh = x.qh.as_chunks::<32>().0;
    let qh = [load_u8x32(&qh[0]), load_u8x32(&qh[1])];
    std::array::from_fn(|g| {
        let (h, s) = (g / 4, g % 4);
        let low = shift_mask(load_u8x32(&ql[2 * h + s % 2]), 4 * (s / 2), 0x0F);
        let high = shift_mask(qh[h], 2 * s, 3);
        [vsliq_n_u8::<4>(low[0], high[0]), vsliq_n_u8::<4>(low[1], high[1])]
    })
}

/// Unsigned weights minus `off`, as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn centred(w: [uint8x16_t; 2], off: i8) -> [int8x16_t; 2] {
    let o = vdupq_n_s8(off);
    [vsubq_s8(vreinterpretq_s8_u8(w[0]), o), vsubq_s8(vreinterpretq_s8_u8(w[1]), o)]
}

/// Unsigned weights below 128, as signed bytes (no offset).
#[inline]
#[target_feature(enable = "neon")]
fn signed(w: [uint8x16_t; 2]) -> [int8x16_t; 2] {
    [vreinterpretq_s8_u8(w[0]), vreinterpretq_s8_u8(w[1])]
}

// ---------------------------------------------------------------------------
// Quantized dots. Expects `dot32(a, b)` and `dot16(a, b)` in scope: the 32
// (16) products of signed bytes summed into four i32 lanes, exactly. Blocks
// alternate between two accumulators so consecutive FMAs do not wait on
// each other.

macro_rules! q_dot_kernels {
    ($(#[$attr:meta])*) => {
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q4_0_q8_0, BlockQ4_0, BlockQ8_0, |x, y| {
            let s = dot32(centred(nibbles(&x.qs), 8), load_i8x32(&y.qs));
            (s, x.d.to_f32() * y.d.to_f32(), 0.0)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q4_1_q8_1, BlockQ4_1, BlockQ8_1, |x, y| {
            let s = dot32(signed(nibbles(&x.qs)), load_i8x32(&y.qs));
            (s, x.d.to_f32() * y.d.to_f32(), x.m.to_f32() * y.s.to_f32())
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0, |x, y| {
            let s = dot32(centred(q5_weights(&x.qs, x.qh), 16), load_i8x32(&y.qs));
            (s, x.d.to_f32() * y.d.to_f32(), 0.0)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1, |x, y| {
            let s = dot32(signed(q5_weights(&x.qs, x.qh)), load_i8x32(&y.qs));
            (s, x.d.to_f32() * y.d.to_f32(), x.m.to_f32() * y.s.to_f32())
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q8_0_q8_0, BlockQ8_0, BlockQ8_0, |x, y| {
            let s = dot32(load_i8x32(&x.qs), load_i8x32(&y.qs));
            (s, x.d.to_f32() * y.d.to_f32(), 0.0)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q8_1_q8_1, BlockQ8_1, BlockQ8_1, |x, y| {
            let s = dot32(load_i8x32(&x.qs), load_i8x32(&y.qs));
            (s, x.d.to_f32() * y.d.to_f32(), 0.0)
        });

        /// One K-quant super-block: `w` are its groups, `off` above the
        /// signed levels. The sub-block scales multiply the integer sums in
        /// i32 (exact: |sum| < 2^28 for every format); the mins come in
        /// through the activations' `bsums`, as in ggml.
        #[inline]
        $(#[$attr])*
        fn k_block<X: SuperBlock>(x: &X, y: &BlockQ8K, w: Groups, off: i8) -> (int32x4_t, f32, f32) {
            let (sc, m) = x.scales_mins();
            let q8 = y.qs.as_chunks::<32>().0;
            let mut s = vdupq_n_s32(0);
            for (g, (w, q)) in w.into_iter().zip(q8).enumerate() {
                let (w, q) = (centred(w, off), load_i8x32(q));
                s = if X::SUB == 32 {
                    vmlaq_n_s32(s, dot32(w, q), sc[g])
                } else {
                    vmlaq_n_s32(vmlaq_n_s32(s, dot16(w[0], q[0]), sc[2 * g]), dot16(w[1], q[1]), sc[2 * g + 1])
                };
            }
            let mins = if X::HAS_MIN {
                // bsums cover 16 weights; a 32-weight sub-block spans two.
                let summs: i32 = (0..16).map(|j| y.bsums[j] as i32 * m[j * 16 / X::SUB]).sum();
                -(x.dmin() * y.d) * summs as f32
            } else {
                0.0
            };
            (s, x.d() * y.d, mins)
        }
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q2_k_q8_k, BlockQ2K, BlockQ8K, |x, y| {
            k_block(x, y, levels_q2k(x), 0)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q3_k_q8_k, BlockQ3K, BlockQ8K, |x, y| {
            k_block(x, y, levels_q3k(x), 4)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q4_k_q8_k, BlockQ4K, BlockQ8K, |x, y| {
            k_block(x, y, levels_q4k(x), 0)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q5_k_q8_k, BlockQ5K, BlockQ8K, |x, y| {
            k_block(x, y, levels_q5k(x), 0)
        });
        q_dot_kernels!(@one [$(#[$attr])*] vec_dot_q6_k_q8_k, BlockQ6K, BlockQ8K, |x, y| {
            k_block(x, y, levels_q6k(x), 32)
        });
    };
    (@one [$(#[$attr:meta])*] $name:ident, $x:ty, $y:ty, |$xb:ident, $yb:ident| $block:block) => {
        $(#[$attr])*
        pub fn $name(x: &[$x], y: &[$y]) -> f32 {
            debug_assert_eq!(x.len(), y.len());
            /// Integer sums, scale and additive term of one block pair.
            #[inline]
            $(#[$attr])*
            fn block($xb: &$x, $yb: &$y) -> (int32x4_t, f32, f32) $block

            let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut extra = 0.0f32;
            let (xp, xr) = x.as_chunks::<2>();
            let (yp, yr) = y.as_chunks::<2>();
            for (xs, ys) in xp.iter().zip(yp) {
                let (s0, d0, m0) = block(&xs[0], &ys[0]);
                let (s1, d1, m1) = block(&xs[1], &ys[1]);
                acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(s0), vdupq_n_f32(d0));
                acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(s1), vdupq_n_f32(d1));
                extra += m0 + m1;
            }
            if let (Some(xl), Some(yl)) = (xr.first(), yr.first()) {
                let (s, d, m) = block(xl, yl);
                acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(s), vdupq_n_f32(d));
                extra += m;
            }
            vaddvq_f32(vaddq_f32(acc0, acc1)) + extra
        }
    };
}

/// Plain NEON: widening multiplies, then pairwise widening adds.
mod plain {
    use super::*;

    #[inline]
    #[target_feature(enable = "neon")]
    fn dot32(a: [int8x16_t; 2], b: [int8x16_t; 2]) -> int32x4_t {
        // Each i16 product fits (|a·b| <= 2^14); add them widened to i32 so
        // that two -128·-128 products cannot overflow.
        let mut s = vpaddlq_s16(vmull_s8(vget_low_s8(a[0]), vget_low_s8(b[0])));
        s = vpadalq_s16(s, vmull_high_s8(a[0], b[0]));
        s = vpadalq_s16(s, vmull_s8(vget_low_s8(a[1]), vget_low_s8(b[1])));
        vpadalq_s16(s, vmull_high_s8(a[1], b[1]))
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn dot16(a: int8x16_t, b: int8x16_t) -> int32x4_t {
        vpadalq_s16(vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b))), vmull_high_s8(a, b))
    }

    q_dot_kernels!(#[target_feature(enable = "neon")]);
}

/// SDOT (ARMv8.2 dotprod): four i8 products summed into each i32 lane.
mod sdot {
    use super::*;

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn dot32(a: [int8x16_t; 2], b: [int8x16_t; 2]) -> int32x4_t {
        let mut acc = vdupq_n_s32(0);
        // SAFETY: SDOT works on registers only (no memory, stack or flags),
        // and this function is compiled for, and only called on, CPUs with
        // dotprod (the caller checks `is_aarch64_feature_detected!`).
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a0:v}.16b, {b0:v}.16b",
                "sdot {acc:v}.4s, {a1:v}.16b, {b1:v}.16b",
                acc = inout(vreg) acc,
                a0 = in(vreg) a[0], b0 = in(vreg) b[0],
                a1 = in(vreg) a[1], b1 = in(vreg) b[1],
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }

    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn dot16(a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = vdupq_n_s32(0);
        // SAFETY: as in `dot32`.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }

    q_dot_kernels!(#[target_feature(enable = "neon,dotprod")]);
}

fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// The public quantized dots: SDOT where the CPU has it, plain NEON otherwise.
macro_rules! pick_dotprod {
    ($($name:ident: $x:ty, $y:ty;)*) => {$(
        /// # Safety
        /// The CPU must have NEON (every aarch64 CPU does).
        #[target_feature(enable = "neon")]
        pub fn $name(x: &[$x], y: &[$y]) -> f32 {
            if has_dotprod() {
                // SAFETY: the CPU has dotprod (checked just above), the only
                // feature the SDOT kernel needs beyond the NEON baseline.
                unsafe { sdot::$name(x, y) }
            } else {
                plain::$name(x, y)
            }
        }
    )*};
}

pick_dotprod! {
    vec_dot_q4_0_q8_0: BlockQ4_0, BlockQ8_0;
    vec_dot_q4_1_q8_1: BlockQ4_1, BlockQ8_1;
    vec_dot_q5_0_q8_0: BlockQ5_0, BlockQ8_0;
    vec_dot_q5_1_q8_1: BlockQ5_1, BlockQ8_1;
    vec_dot_q8_0_q8_0: BlockQ8_0, BlockQ8_0;
    vec_dot_q8_1_q8_1: BlockQ8_1, BlockQ8_1;
    vec_dot_q2_k_q8_k: BlockQ2K, BlockQ8K;
    vec_dot_q3_k_q8_k: BlockQ3K, BlockQ8K;
    vec_dot_q4_k_q8_k: BlockQ4K, BlockQ8K;
    vec_dot_q5_k_q8_k: BlockQ5K, BlockQ8K;
    vec_dot_q6_k_q8_k: BlockQ6K, BlockQ8K;
}

// ---------------------------------------------------------------------------
// Float dots: eight values per load (two f32x4), four accumulators.

#[inline]
#[target_feature(enable = "neon")]
fn load_f32(v: &[f32; 8]) -> [float32x4_t; 2] {
    // SAFETY: each load reads 16 bytes inside `v` (offsets 0 and 16 bytes).
    unsafe { [vld1q_f32(v.as_ptr()), vld1q_f32(v.as_ptr().add(4))] }
}

#[inline]
#[target_feature(enable = "neon")]
fn load_f16(v: &[f16; 8]) -> [float32x4_t; 2] {
    let h = load_u16x8(v);
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: FCVTL/FCVTL2 (f16 to f32, exact) are base ARMv8 AdvSIMD and
    // touch registers only; `out` keeps `lo` apart from the input `h`, which
    // the second instruction still reads. (The f16 vector types and their
    // conversion intrinsics are not stable.)
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h, lo = out(vreg) lo, hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    [lo, hi]
}

#[inline]
#[target_feature(enable = "neon")]
fn load_bf16(v: &[bf16; 8]) -> [float32x4_t; 2] {
    // bf16 is the top half of an f32: widen with a 16-bit shift (exact).
    let h = load_u16x8(v);
    [vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))), vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h))]
}

macro_rules! float_dot_kernels {
    ($($name:ident: $t:ty, $load:ident;)*) => {$(
        /// Dot product of two rows of equal length.
        ///
        /// # Safety
        /// The CPU must have NEON (every aarch64 CPU does).
        #[target_feature(enable = "neon")]
        pub fn $name(x: &[$t], y: &[$t]) -> f32 {
            debug_assert_eq!(x.len(), y.len());
            let mut acc = [vdupq_n_f32(0.0); 4];
            let (xc, xt) = x.as_chunks::<16>();
            let (yc, yt) = y.as_chunks::<16>();
            for (a, b) in xc.iter().zip(yc) {
                let (a, b) = (a.as_chunks::<8>().0, b.as_chunks::<8>().0);
                let (a0, b0, a1, b1) = ($load(&a[0]), $load(&b[0]), $load(&a[1]), $load(&b[1]));
                acc[0] = vfmaq_f32(acc[0], a0[0], b0[0]);
                acc[1] = vfmaq_f32(acc[1], a0[1], b0[1]);
                acc[2] = vfmaq_f32(acc[2], a1[0], b1[0]);
                acc[3] = vfmaq_f32(acc[3], a1[1], b1[1]);
            }
            let (xv, xs) = xt.as_chunks::<8>();
            let (yv, ys) = yt.as_chunks::<8>();
            for (a, b) in xv.iter().zip(yv) {
                let (a, b) = ($load(a), $load(b));
                acc[0] = vfmaq_f32(acc[0], a[0], b[0]);
                acc[1] = vfmaq_f32(acc[1], a[1], b[1]);
            }
            let tail: f32 = xs.iter().zip(ys).map(|(a, b)| f32::from(*a) * f32::from(*b)).sum();
            vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]))) + tail
        }
    )*};
}

float_dot_kernels! {
    vec_dot_f32: f32, load_f32;
    vec_dot_f16: f16, load_f16;
    vec_dot_bf16: bf16, load_bf16;
}
