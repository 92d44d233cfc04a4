//! The multi-token (tiled) AVX2 kernels against the scalar one-token
//! reference, on random and adversarial blocks, and the batched `matmul`
//! path they serve against the scalar `matmul`.
//!
//! Tolerance as in `simd.rs`: relative to the sum of the absolute values of
//! the terms, so a decoding mistake (a swapped nibble half, a lost offset,
//! a scale from the wrong block or token) fails by a whole term.
#![cfg(target_arch = "x86_64")]

mod common;

use common::{Aligned, Rng};
use half::f16;
use qllama_kernels::formats::{BlockQ4_0, BlockQ8_0};
use qllama_kernels::matmul::{matmul_with, tiled};
use qllama_kernels::simd::{scalar, Isa};
use qllama_kernels::{GgmlDType, MatmulScratch, QMatrix};

const TOL: f64 = 1e-5;

/// Block contents: uniformly random, or pinned at an extreme.
#[derive(Clone, Copy, Debug)]
enum Fill {
    Random,
    Max,
    Min,
}

fn byte(rng: &mut Rng, fill: Fill) -> u8 {
    match fill {
        Fill::Random => rng.next_u64() as u8,
        Fill::Max => 0x7F,
        Fill::Min => 0x80,
    }
}

fn scale(rng: &mut Rng) -> f16 {
    // Scales over several octaves, both signs.
    let v = (rng.uniform() * 2.0 - 1.0) * 2f64.powi((rng.next_u64() % 8) as i32 - 8);
    f16::from_f64(v)
}

fn q4(rng: &mut Rng, fill: Fill) -> BlockQ4_0 {
    BlockQ4_0 { d: scale(rng), qs: std::array::from_fn(|_| byte(rng, fill)) }
}

/// Weights may hold -128; activations hold -127..=127, as the quantizer
/// writes them (the SIMD kernels rely on it).
fn q8(rng: &mut Rng, fill: Fill, activation: bool) -> BlockQ8_0 {
    let lo = if activation { -127 } else { -128 };
    BlockQ8_0 { d: scale(rng), qs: std::array::from_fn(|_| (byte(rng, fill) as i8).max(lo)) }
}

fn q4_ints(b: &BlockQ4_0) -> [i32; 32] {
    std::array::from_fn(|j| if j < 16 { b.qs[j] & 0x0F } else { b.qs[j - 16] >> 4 } as i32 - 8)
}

fn q8_ints(b: &BlockQ8_0) -> [i32; 32] {
    b.qs.map(|q| q as i32)
}

/// Sum of |terms| of a dot product, to size the tolerance.
fn magnitude<W>(w: &[W], y: &[BlockQ8_0], ints: fn(&W) -> [i32; 32], d: fn(&W) -> f16) -> f64 {
    w.iter()
        .zip(y)
        .map(|(wb, yb)| {
            let s: i64 = ints(wb).iter().zip(q8_ints(yb)).map(|(a, b)| (*a as i64 * b as i64).abs()).sum();
            s as f64 * (d(wb).to_f64() * yb.d.to_f64()).abs()
        })
        .sum()
}

fn check_tile<W: Copy>(
    kernel: tiled::TileDot<W>,
    reference: fn(&[W], &[BlockQ8_0]) -> f32,
    make: impl Fn(&mut Rng, Fill) -> W,
    ints: fn(&W) -> [i32; 32],
    d: fn(&W) -> f16,
) {
    let mut rng = Rng::new(7);
    for nb in [1, 2, 3, 8, 33, 128] {
        for (wf, yf) in
            [(Fill::Random, Fill::Random), (Fill::Max, Fill::Min), (Fill::Min, Fill::Min), (Fill::Max, Fill::Max)]
        {
            for _ in 0..4 {
                let w: Vec<W> = (0..nb).map(|_| make(&mut rng, wf)).collect();
                // Token 2 pinned at the extreme, the others random.
                let ys: Vec<Vec<BlockQ8_0>> = (0..tiled::TILE)
                    .map(|t| (0..nb).map(|_| q8(&mut rng, if t == 2 { yf } else { Fill::Random }, true)).collect())
                    .collect();
                let yds: Vec<Vec<f32>> = ys.iter().map(|y| y.iter().map(|b| b.d.to_f32()).collect()).collect();
                let tile =
                    tiled::Tile { y: std::array::from_fn(|t| &ys[t][..]), yd: std::array::from_fn(|t| &yds[t][..]) };
                let got = kernel(&w, &tile);
                for t in 0..tiled::TILE {
                    let want = reference(&w, &ys[t]);
                    let mag = magnitude(&w, &ys[t], ints, d);
                    let err = (got[t] as f64 - want as f64).abs();
                    assert!(
                        err <= TOL * mag + 1e-30,
                        "nb={nb} {wf:?}/{yf:?} token {t}: tiled {} scalar {want} (mag {mag})",
                        got[t]
                    );
                }
            }
        }
    }
}

#[test]
fn tiled_q4_0_matches_scalar() {
    let Some(k) = tiled::q4_0_q8_0() else { return eprintln!("no AVX2: skipped") };
    check_tile(k, scalar::vec_dot_q4_0_q8_0, q4, q4_ints, |b| b.d);
}

#[test]
fn tiled_q8_0_matches_scalar() {
    let Some(k) = tiled::q8_0_q8_0() else { return eprintln!("no AVX2: skipped") };
    check_tile(k, scalar::vec_dot_q8_0_q8_0, |r, f| q8(r, f, false), q8_ints, |b| b.d);
}

/// The batched path (full tiles plus leftover tokens) against the scalar
/// matmul, for token counts around the tile size.
#[test]
fn batched_matmul_matches_scalar() {
    if !Isa::Avx2.supported() {
        return eprintln!("no AVX2: skipped");
    }
    let mut rng = Rng::new(11);
    let (rows, cols) = (70, 256);
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
        let w = Aligned::quantize(dtype, &rng.normals(rows * cols, 0.05));
        let m = QMatrix::new(dtype, rows, cols, w.as_ref()).unwrap();
        for n in [1, 3, 4, 5, 8, 11] {
            let x = rng.normals(n * cols, 1.0);
            let (mut want, mut got) = (vec![0.0; n * rows], vec![0.0; n * rows]);
            matmul_with(Isa::Scalar, &m, &x, n, &mut want, &mut MatmulScratch::default());
            matmul_with(Isa::Avx2, &m, &x, n, &mut got, &mut MatmulScratch::default());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // |terms| here are at most about cols · 0.05·4 · 4: an
                // absolute bound of 1e-5 of that is ample for f32 order.
                assert!((g - w).abs() <= 2e-3, "{dtype} n={n} out[{i}]: avx2 {g} scalar {w}");
            }
        }
    }
}
