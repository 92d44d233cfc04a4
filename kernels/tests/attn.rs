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
