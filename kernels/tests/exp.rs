//! `simd::exp`: the vectorizable `exp` against f64's, and softmax and
//! SwiGLU on every instruction set against f64 references, bit-identical
//! across the sets.

mod common;

use common::Rng;
use qllama_kernels::simd::exp::{exp, softmax, swiglu};
use qllama_kernels::simd::Isa;

/// Distance in units of the last place of `want` (as f32).
fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
    (got as f64 - want).abs() / ulp
}

#[test]
fn exp_is_within_two_ulp_over_its_range() {
    let mut worst = (0.0, 0.0f32);
    // Every 1/4096 of the range, plus the points where the reduction
    // switches n (multiples of ln 2 / 2).
    let steps = (-87.3f64 * 4096.0) as i64..=(88.3 * 4096.0) as i64;
    let grid = steps.map(|i| (i as f64 / 4096.0) as f32);
    let switches = (-251..=254).map(|k| (k as f64 * std::f64::consts::LN_2 / 2.0) as f32);
    for x in grid.chain(switches).chain([0.0, -0.0, 1e-30, -1e-30, 88.3, -87.3]) {
        let e = ulps(exp(x), (x as f64).exp());
        if e > worst.0 {
            worst = (e, x);
        }
    }
    assert!(worst.0 <= 2.0, "exp is {} ulp off at {}", worst.0, worst.1);
}

#[test]
fn exp_clamps_instead_of_overflowing() {
    for x in [-1e4f32, -100.0, -88.0, f32::NEG_INFINITY] {
        let e = exp(x);
        assert!(e > 0.0 && e < 1.3e-38, "exp({x}) = {e}");
    }
    for x in [89.0f32, 100.0, 1e4, f32::INFINITY] {
        let e = exp(x);
        assert!(e.is_finite() && e > 2e38, "exp({x}) = {e}");
    }
}

#[test]
fn softmax_matches_f64_on_every_set() {
    let mut rng = Rng::new(5);
    for n in (0..=70).chain([255, 256, 257, 1000]) {
        for scale in [0.1, 3.0, 40.0] {
            let x = rng.normals(n, scale);
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let mut first: Option<Vec<f32>> = None;
            for isa in Isa::available() {
                let mut got = x.clone();
                softmax(isa, &mut got);
                for (i, ((&g, &w), &v)) in got.iter().zip(&e).zip(&x).enumerate() {
                    let w = w / sum;
                    // x - max is rounded to f32 first, a relative error of
                    // 2^-24 |x - max| in the exponential.
                    let tol = (1e-6 + 1.2e-7 * (max - v as f64)) * w + 1e-30;
                    assert!((g as f64 - w).abs() <= tol, "{} n={n} [{i}]: {g} vs {w}", isa.name());
                }
                match &first {
                    None => first = Some(got),
                    Some(f) => assert!(
                        f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{} differs from the first set, n={n}",
                        isa.name()
                    ),
                }
            }
        }
    }
}

#[test]
fn swiglu_matches_f64_on_every_set() {
    let mut rng = Rng::new(6);
    for n in (0..=40).chain([4096, 4097]) {
        let mut gate0 = rng.normals(n, 4.0);
        // Values far out on both sides, where e^-g under- or overflows.
        if n > 3 {
            gate0[..4].copy_from_slice(&[-120.0, 120.0, -90.0, 0.0]);
        }
        let up = rng.normals(n, 1.0);
        let mut first: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            let mut got = gate0.clone();
            swiglu(isa, &mut got, &up);
            for (i, ((&g, &x), &u)) in got.iter().zip(&gate0).zip(&up).enumerate() {
                let (x, u) = (x as f64, u as f64);
                let w = x / (1.0 + (-x).exp()) * u;
                assert!((g as f64 - w).abs() <= 1e-6 * w.abs() + 1e-30, "{} n={n} [{i}]: {g} vs {w}", isa.name());
            }
            match &first {
                None => first = Some(got),
                Some(f) => {
                    assert!(f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{} differs", isa.name())
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "different lengths")]
fn swiglu_refuses_rows_of_different_lengths() {
    swiglu(Isa::Scalar, &mut [1.0, 2.0], &[1.0]);
}
