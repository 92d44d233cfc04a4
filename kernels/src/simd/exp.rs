//! The forward pass's element-wise functions built on `exp`: the softmax
//! over attention scores and SwiGLU's SiLU. libm's `expf` is one scalar
//! call per value (about 3% of a 7B prompt, in attention's softmax); here
//! one branch-free body, which the compiler turns into vector code, is
//! compiled once per instruction set. Every set computes the same
//! operations in the same order, so all give identical bits (tested, with
//! the accuracy against f64, in `kernels/tests/exp.rs`).

use super::Isa;

/// `e^x` within 2 ulp of the exact value for `x` in [-87.3, 88.3], and
/// clamped to that range outside it (so it never returns 0 or infinity:
/// `exp(-1000)` is about 1.2e-38). Cephes' `expf`: `x = n ln2 + r` with
/// `|r| <= ln2 / 2`, a degree-6 polynomial for `e^r`, and `2^n` built from
/// its exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer (to nearest) and leaves it in
    // the low mantissa bits: bits(v) = 0x4B40_0000 + n for |n| < 2^22.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.33, 88.3);
    let v = x * std::f32::consts::LOG2_E + SHIFT;
    let n = v - SHIFT;
    // ln 2 in two parts, the first exact in few bits, so n * LN2_HI is exact.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^n: n + 127 in the exponent field (n is in -126..=127 after the clamp).
    let scale = f32::from_bits(v.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    e * scale
}

/// Lanes of the partial maxima and sums: the same 16 on every set, so the
/// results agree bit for bit.
const LANES: usize = 16;

/// `x = softmax(x)`, in place: `e^(x - max) / sum`.
#[inline(always)]
fn softmax_body(x: &mut [f32]) {
    let (chunks, tail) = x.as_chunks::<LANES>();
    let mut m = [f32::NEG_INFINITY; LANES];
    for c in chunks {
        for i in 0..LANES {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    let max = m.iter().chain(tail).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let (chunks, tail) = x.as_chunks_mut::<LANES>();
    let mut s = [0.0f32; LANES];
    for c in chunks {
        for i in 0..LANES {
            c[i] = exp(c[i] - max);
            s[i] += c[i];
        }
    }
    let mut sum = 0.0;
    for v in tail.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / (s.iter().sum::<f32>() + sum);
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `gate = silu(gate) * up`, where `silu(g) = g / (1 + e^-g)`.
#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu of rows of different lengths");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// Per-set copies of a body: the same source, compiled with the set's
/// features so that the compiler's vector code uses its registers.
macro_rules! per_isa {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name(isa: Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match isa {
                    // SAFETY: the CPU has the set (checked in the guard).
                    Isa::Avx512 if super::cpu_has(Isa::Avx512) => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 if super::cpu_has(Isa::Avx2) => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            // NEON is part of the aarch64 baseline, so the plain build
            // already vectorizes with it.
            let _ = isa;
            $body($($arg),*)
        }
    };
}

per_isa!(
    /// `x = softmax(x)` in place (an empty slice is left alone).
    softmax(x: &mut [f32]) => softmax_body
);

per_isa!(
    /// `gate = silu(gate) * up`, element by element.
    ///
    /// # Panics
    /// If the two differ in length.
    swiglu(gate: &mut [f32], up: &[f32]) => swiglu_body
);
