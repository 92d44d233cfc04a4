//! Attention's row kernels (`simd::attn`) on every instruction set against
//! an f64 reference, for every length around the vector widths.

mod common;

use common::Rng;
use half::f16;
use qllama_kernels::simd::attn::{self, AttnKernels, CacheElem};
use qllama_kernels::simd::Isa;

fn check<T: AttnKernels>(make: fn(f32) -> T) {
    let mut rng = Rng::new(17);
    for n in (0..=70).chain([127, 128, 129, 256]) {
        let q = rng.normals(n, 1.0);
        let k: Vec<T> = rng.normals(n, 1.0).into_iter().map(make).collect();
        let out0 = rng.normals(n, 1.0);
        let a = rng.normal() as f32;
        let want: f64 = q.iter().zip(&k).map(|(&x, y)| x as f64 * CacheElem::to_f32(*y) as f64).sum();
        let mag: f64 = q.iter().zip(&k).map(|(&x, y)| (x as f64 * CacheElem::to_f32(*y) as f64).abs()).sum();
        for isa in Isa::available() {
            let got = attn::dot(isa, &q, &k) as f64;
            assert!((got - want).abs() <= 1e-6 * mag + 1e-30, "{} n={n}: dot {got} vs {want}", isa.name());
            let mut out = out0.clone();
            attn::axpy(isa, a, &k, &mut out);
            for (i, (o, (o0, v))) in out.iter().zip(out0.iter().zip(&k)).enumerate() {
                let w = *o0 as f64 + a as f64 * CacheElem::to_f32(*v) as f64;
                assert!((*o as f64 - w).abs() <= 1e-6 * (w.abs() + 1.0), "{} n={n} axpy[{i}]: {o} vs {w}", isa.name());
            }
        }
    }
}

#[test]
fn f16_rows_match_reference() {
    check::<f16>(f16::from_f32);
}

#[test]
fn f32_rows_match_reference() {
    check::<f32>(|x| x);
}

/// The query tiles on every instruction set against an f64 reference, for
/// every tile height, the row lengths with vector tiles (32, 64, 128) and
/// one without (48), with strided rows as the KV cache and batch lay them
/// out.
fn check_tiles<T: AttnKernels>(make: fn(f32) -> T) {
    use attn::Rows;
    let mut rng = Rng::new(23);
    for len in [32, 48, 64, 128] {
        for m in 1..=attn::TILE {
            for n in [1, 7, 33] {
                let (qs, ks, ss) = (len + 5, 3 * len, n + 3);
                let q = rng.normals(m * qs, 1.0);
                let k: Vec<T> = rng.normals(n * ks, 1.0).into_iter().map(make).collect();
                let kf = |p: usize, i: usize| CacheElem::to_f32(k[p * ks + i]) as f64;
                let (qr, kr, sr) = (
                    Rows { count: m, len, stride: qs },
                    Rows { count: n, len, stride: ks },
                    Rows { count: m, len: n, stride: ss },
                );
                let a = rng.normals(m * ss, 1.0);
                let os = len + 1;
                let or = Rows { count: m, len, stride: os };
                for isa in Isa::available() {
                    let mut scores = vec![f32::NAN; m * ss];
                    attn::dot_tile(isa, &q, qr, &k, kr, 0.5, &mut scores, sr);
                    let mut out = vec![f32::NAN; m * os];
                    attn::axpy_tile(isa, &a, sr, &k, kr, &mut out, or);
                    for j in 0..m {
                        for p in 0..n {
                            let terms = (0..len).map(|i| q[j * qs + i] as f64 * kf(p, i));
                            let (want, mag) = (0.5 * terms.clone().sum::<f64>(), terms.map(f64::abs).sum::<f64>());
                            let got = scores[j * ss + p] as f64;
                            assert!(
                                (got - want).abs() <= 1e-6 * mag,
                                "{} len={len} m={m} n={n} score[{j}][{p}]",
                                isa.name()
                            );
                        }
                        for i in 0..len {
                            let terms = (0..n).map(|p| a[j * ss + p] as f64 * kf(p, i));
                            let (want, mag) = (terms.clone().sum::<f64>(), terms.map(f64::abs).sum::<f64>());
                            let got = out[j * os + i] as f64;
                            assert!(
                                (got - want).abs() <= 1e-6 * mag,
                                "{} len={len} m={m} n={n} out[{j}][{i}]",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn f16_tiles_match_reference() {
    check_tiles::<f16>(f16::from_f32);
}

#[test]
fn f32_tiles_match_reference() {
    check_tiles::<f32>(|x| x);
}
