//! The multi-token ("row tile") kernels for K-quant weights: each token's
//! result against the scalar one-token reference on random and adversarial
//! super-blocks, and the row-major matmul that uses them against the scalar
//! matmul.
//!
//! Tolerance as in `simd.rs`: relative to the sum of the absolute values of
//! the terms, so a decoding mistake (a lost high bit, a wrong offset, scale or
//! min, a result written to the wrong token) fails by a whole term.

mod common;

use common::{Aligned, Rng};
use half::f16;
use qllama_kernels::formats::*;
use qllama_kernels::matmul::matmul_with;
use qllama_kernels::simd::rowtile::{row_tile, RowTile, TILE};
use qllama_kernels::simd::scalar::{self, SuperBlock};
use qllama_kernels::simd::Isa;
use qllama_kernels::{GgmlDType, MatmulScratch, QMatrix};

const TOL: f64 = 1e-5;

const K_TYPES: [GgmlDType; 5] = [GgmlDType::Q2K, GgmlDType::Q3K, GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K];

/// How the quantized bytes (levels, high bits, packed scales and mins) of a
/// super-block are chosen.
#[derive(Clone, Copy, Debug)]
enum Bytes {
    Random,
    Zero,
    /// Every level and scale at its largest, every high bit set.
    Ones,
    /// 0x7F: i8 scales and activations at +127.
    Max,
    /// 0x80: i8 scales and activations at -128.
    Min,
    /// Each byte one of the four extremes above.
    Extremes,
}

impl Bytes {
    const ALL: [Bytes; 6] = [Bytes::Random, Bytes::Zero, Bytes::Ones, Bytes::Max, Bytes::Min, Bytes::Extremes];

    fn fill(self, rng: &mut Rng, out: &mut [u8]) {
        for b in out {
            *b = match self {
                Bytes::Random => rng.next_u64() as u8,
                Bytes::Zero => 0x00,
                Bytes::Ones => 0xFF,
                Bytes::Max => 0x7F,
                Bytes::Min => 0x80,
                Bytes::Extremes => [0x00, 0xFF, 0x7F, 0x80][(rng.next_u64() % 4) as usize],
            };
        }
    }
}

/// How the f16 super-block scales `d` and `dmin` are chosen.
#[derive(Clone, Copy, Debug)]
enum Scales {
    /// Either sign, 2^-10 .. 2.
    Random,
    /// Either sign, up to f16's largest finite value.
    Large,
    /// Subnormal f16 values.
    Tiny,
    Zero,
}

impl Scales {
    const ALL: [Scales; 4] = [Scales::Random, Scales::Large, Scales::Tiny, Scales::Zero];

    fn scale(self, rng: &mut Rng) -> f16 {
        let sign = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
        match self {
            Scales::Random => f16::from_f32(sign * 2f32.powf(rng.uniform() as f32 * 11.0 - 10.0)),
            Scales::Large => f16::from_f32(sign * (1000.0 + rng.uniform() as f32 * 64504.0)),
            Scales::Tiny => f16::from_bits(1 + (rng.next_u64() % 0x3FF) as u16),
            Scales::Zero => f16::ZERO,
        }
    }
}

/// A K-quant super-block whose bytes come from a pattern, with finite
/// f16 scales put in afterwards.
trait TestK: SuperBlock + GgmlType + Copy {
    const DTYPE_: GgmlDType;
    fn set_scales(&mut self, d: f16, dmin: f16);
    fn reference(x: &[Self], y: &[BlockQ8K]) -> f32;

    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        let mut bytes = Aligned::zeroed(std::mem::size_of::<Self>());
        b.fill(rng, bytes.as_mut());
        let mut x = cast_blocks::<Self>(bytes.as_ref())[0];
        x.set_scales(s.scale(rng), s.scale(rng));
        x
    }
}

macro_rules! test_k {
    ($x:ty, $dtype:expr, $reference:path, |$b:ident, $d:ident, $dmin:ident| $set:block) => {
        impl TestK for $x {
            const DTYPE_: GgmlDType = $dtype;
            fn set_scales(&mut self, $d: f16, $dmin: f16) {
                let $b = self;
                $set
            }
            fn reference(x: &[Self], y: &[BlockQ8K]) -> f32 {
                $reference(x, y)
            }
        }
    };
}

test_k!(BlockQ2K, GgmlDType::Q2K, scalar::vec_dot_q2_k_q8_k, |b, d, dmin| { (b.d, b.dmin) = (d, dmin) });
test_k!(BlockQ3K, GgmlDType::Q3K, scalar::vec_dot_q3_k_q8_k, |b, d, _dmin| { b.d = d });
test_k!(BlockQ4K, GgmlDType::Q4K, scalar::vec_dot_q4_k_q8_k, |b, d, dmin| { (b.d, b.dmin) = (d, dmin) });
test_k!(BlockQ5K, GgmlDType::Q5K, scalar::vec_dot_q5_k_q8_k, |b, d, dmin| { (b.d, b.dmin) = (d, dmin) });
test_k!(BlockQ6K, GgmlDType::Q6K, scalar::vec_dot_q6_k_q8_k, |b, d, _dmin| { b.d = d });

/// Q8_K activations with `bsums` consistent with `qs`, as the quantizer
/// writes them.
fn q8k(rng: &mut Rng, b: Bytes) -> BlockQ8K {
    let mut qs = [0u8; 256];
    b.fill(rng, &mut qs);
    let qs = qs.map(|q| q as i8);
    let bsums = std::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
    BlockQ8K { d: Scales::Random.scale(rng).to_f32(), qs, bsums }
}

/// Sum of |terms| of `x · y`: scaled products and the mins' share.
fn magnitude<X: SuperBlock>(x: &[X], y: &[BlockQ8K]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| {
            let (q, (s, m)) = (a.ints(), a.scales_mins());
            let ints: i64 = (0..256).map(|e| (s[e / X::SUB] as i64 * q[e] as i64 * b.qs[e] as i64).abs()).sum();
            let mins: i64 = (0..16).map(|j| (b.bsums[j] as i64 * m[j * 16 / X::SUB] as i64).abs()).sum();
            let dy = b.d as f64;
            (a.d() as f64 * dy).abs() * ints as f64 + (a.dmin() as f64 * dy).abs() * mins as f64
        })
        .sum()
}

/// The tile kernel for `dtype` on every instruction set this CPU has that
/// has one.
fn kernels(dtype: GgmlDType) -> Vec<(Isa, RowTile)> {
    Isa::available().into_iter().filter_map(|isa| row_tile(isa, dtype).map(|k| (isa, k))).collect()
}

/// Every tile kernel against the scalar dot, token by token. The tile's
/// tokens take different byte patterns (rotating through `Bytes::ALL`), so
/// results landing on the wrong token are caught too.
fn check_tile<X: TestK>() {
    let dtype = X::DTYPE_;
    let kernels = kernels(dtype);
    let mut rng = Rng::new(0x7117 ^ dtype as u64);
    let mut checked = 0;
    for &xb in &Bytes::ALL {
        for first in 0..Bytes::ALL.len() {
            for &sc in &Scales::ALL {
                for nb in [1, 2, 3, 16] {
                    let x: Vec<X> = (0..nb).map(|_| X::make(&mut rng, xb, sc)).collect();
                    let y: Vec<BlockQ8K> = (0..TILE * nb)
                        .map(|i| q8k(&mut rng, Bytes::ALL[(first + i / nb) % Bytes::ALL.len()]))
                        .collect();
                    for &(isa, kernel) in &kernels {
                        let mut got = [f32::NAN; TILE];
                        kernel(as_bytes(&x), as_bytes(&y), &mut got);
                        for (t, &got) in got.iter().enumerate() {
                            let yt = &y[t * nb..(t + 1) * nb];
                            let want = X::reference(&x, yt) as f64;
                            let allowed = TOL * magnitude(&x, yt);
                            let err = (got as f64 - want).abs();
                            assert!(
                                err <= allowed,
                                "{dtype} tile on {}: token {t}: {got} vs scalar {want} (error {err:e}, allowed \
                                 {allowed:e}); {nb} super-blocks, x bytes {xb:?}, scales {sc:?}, first y bytes {:?}",
                                isa.name(),
                                Bytes::ALL[first]
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{dtype}: {checked} token results on {:?}", kernels.iter().map(|k| k.0).collect::<Vec<_>>());
}

/// Which instruction sets have tile kernels: every K-quant on AVX2 (and on
/// AVX-512, which runs the AVX2 ones), nothing on scalar or NEON, nothing
/// for types without one. Guards the other tests against silently checking
/// nothing on an x86-64 machine.
#[test]
fn tile_kernels_are_under_test() {
    for dtype in K_TYPES {
        assert!(row_tile(Isa::Scalar, dtype).is_none());
        assert!(row_tile(Isa::Neon, dtype).is_none());
        let want = cfg!(target_arch = "x86_64") && Isa::Avx2.supported();
        assert_eq!(row_tile(Isa::Avx2, dtype).is_some(), want, "{dtype}");
        if want {
            assert!(!kernels(dtype).is_empty());
        }
    }
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::F32, GgmlDType::F16] {
        for isa in Isa::available() {
            assert!(row_tile(isa, dtype).is_none(), "{dtype} on {}", isa.name());
        }
    }
    if !Isa::Avx2.supported() {
        eprintln!("no AVX2 on this CPU: no tile kernels to test");
    }
}

#[test]
fn q2_k_tile() {
    check_tile::<BlockQ2K>();
}

#[test]
fn q3_k_tile() {
    check_tile::<BlockQ3K>();
}

#[test]
fn q4_k_tile() {
    check_tile::<BlockQ4K>();
}

#[test]
fn q5_k_tile() {
    check_tile::<BlockQ5K>();
}

#[test]
fn q6_k_tile() {
    check_tile::<BlockQ6K>();
}

/// A tile of the wrong length is refused, not read out of bounds.
#[test]
#[should_panic(expected = "tile of 4 activation rows")]
fn short_tile_panics() {
    let Some(kernel) = row_tile(Isa::Avx2, GgmlDType::Q4K) else {
        panic!("tile of 4 activation rows (no AVX2 here: nothing to check)");
    };
    let x = [BlockQ4K::make(&mut Rng::new(1), Bytes::Random, Scales::Random); 2];
    let y: Vec<BlockQ8K> = (0..TILE * 2 - 1).map(|_| q8k(&mut Rng::new(2), Bytes::Random)).collect();
    kernel(as_bytes(&x), as_bytes(&y), &mut [0.0; TILE]);
}

/// The row-major matmul (tiles of 4 tokens, then one-token leftovers, over
/// uneven row chunks) on every instruction set against the scalar matmul.
fn check_matmul<X: TestK>() {
    let dtype = X::DTYPE_;
    let mut rng = Rng::new(0x6D6D ^ dtype as u64);
    for (rows, cols) in [(37, 256), (70, 768)] {
        let w = Aligned::quantize(dtype, &rng.normals(rows * cols, 0.05));
        let m = QMatrix::new(dtype, rows, cols, w.as_ref()).unwrap();
        let blocks: &[X] = cast_blocks(w.as_ref());
        for n in [4, 5, 9] {
            let x = rng.normals(n * cols, 1.0);
            let mut want = vec![0.0; n * rows];
            matmul_with(Isa::Scalar, &m, &x, n, &mut want, &mut MatmulScratch::default());
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; n * rows];
                matmul_with(isa, &m, &x, n, &mut got, &mut MatmulScratch::default());
                for t in 0..n {
                    // The activations as matmul quantizes them, to size the
                    // tolerance.
                    let act = Aligned::quantize(GgmlDType::Q8K, &x[t * cols..(t + 1) * cols]);
                    let act: &[BlockQ8K] = cast_blocks(act.as_ref());
                    for (r, row) in blocks.chunks(cols / 256).enumerate() {
                        let (g, w) = (got[t * rows + r], want[t * rows + r]);
                        let allowed = TOL * magnitude(row, act);
                        assert!(
                            ((g - w) as f64).abs() <= allowed,
                            "{dtype} {rows}x{cols} on {} n={n} token {t} row {r}: {g} vs scalar {w} (allowed {allowed:e})",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn k_quant_matmul_matches_scalar() {
    check_matmul::<BlockQ2K>();
    check_matmul::<BlockQ3K>();
    check_matmul::<BlockQ4K>();
    check_matmul::<BlockQ5K>();
    check_matmul::<BlockQ6K>();
}
