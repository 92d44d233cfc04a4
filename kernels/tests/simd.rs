//! Every SIMD dot product against the scalar reference, on every instruction
//! set this CPU has (`Isa::available()`), on random and adversarial blocks.
//!
//! The tolerance is relative to the sum of the absolute values of the terms
//! (`mag`), not to the result, so that cancelling sums are judged fairly:
//! `|simd - scalar| <= TOL * mag`. Any decoding mistake (a swapped nibble
//! half, a lost fifth bit, a wrong offset or scale) moves the result by a
//! whole term, far beyond that. Under QEMU for aarch64 the same file runs
//! with and without dotprod (tools/test-aarch64.sh). The multi-token K-quant
//! kernels (`simd::rowtile`) are checked here too, from the same cases.

mod common;

use common::{k_magnitude, Aligned};
use half::{bf16, f16};
use qllama_kernels::formats::*;
use qllama_kernels::matmul::matmul_with;
use qllama_kernels::simd::rowtile::{row_tile, RowTile, TILE};
use qllama_kernels::simd::scalar::SuperBlock;
use qllama_kernels::simd::{self, scalar, Isa};
use qllama_kernels::{GgmlDType, GgmlType, MatmulScratch, QMatrix};

/// Relative to `mag`: f32 rounding of a few hundred block sums in either
/// order stays well inside this.
const TOL: f64 = 1e-5;

/// SplitMix64: deterministic, and good enough to pick test bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn sign(&mut self) -> f32 {
        if self.next() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

/// How the quantized bytes of a case are chosen.
#[derive(Clone, Copy, Debug)]
enum Bytes {
    Random,
    /// All zero: nibbles 0, no fifth bits, q = 0.
    Zero,
    /// All 0xFF: nibbles 15, every fifth bit, q = -1.
    Ones,
    /// All 0x7F: q = 127 (nibbles 15 and 7).
    Max,
    /// All 0x80: q = -128 (nibbles 0 and 8).
    Min,
    /// Each byte one of the four extremes above.
    Extremes,
}

/// How the f16 scales of a case are chosen.
#[derive(Clone, Copy, Debug)]
enum Scales {
    /// Either sign, 2^-10 .. 2.
    Random,
    /// Either sign, up to f16's largest finite value.
    Large,
    /// Negative only, so nothing cancels through the scales.
    Negative,
    /// Subnormal f16 values.
    Tiny,
    Zero,
}

impl Bytes {
    const ALL: [Bytes; 6] = [Bytes::Random, Bytes::Zero, Bytes::Ones, Bytes::Max, Bytes::Min, Bytes::Extremes];

    fn byte(self, rng: &mut Rng) -> u8 {
        match self {
            Bytes::Random => rng.next() as u8,
            Bytes::Zero => 0x00,
            Bytes::Ones => 0xFF,
            Bytes::Max => 0x7F,
            Bytes::Min => 0x80,
            Bytes::Extremes => [0x00, 0xFF, 0x7F, 0x80][rng.below(4) as usize],
        }
    }
}

impl Scales {
    const ALL: [Scales; 5] = [Scales::Random, Scales::Large, Scales::Negative, Scales::Tiny, Scales::Zero];

    fn scale(self, rng: &mut Rng) -> f16 {
        match self {
            Scales::Random => f16::from_f32(rng.sign() * (2f32).powf(rng.unit() * 11.0 - 10.0)),
            Scales::Large => f16::from_f32(rng.sign() * (1000.0 + rng.unit() * 64504.0)),
            Scales::Negative => f16::from_f32(-(2f32).powf(rng.unit() * 11.0 - 10.0)),
            Scales::Tiny => f16::from_bits(1 + rng.below(0x3FF) as u16),
            Scales::Zero => f16::ZERO,
        }
    }
}

/// A block type as the test sees it: generated from a byte and a scale
/// source, and decoded independently of the library into integers and
/// scales, to size the tolerance.
trait TestBlock: Copy {
    fn make(rng: &mut Rng, bytes: Bytes, scales: Scales) -> Self;
    /// The 32 integers the block's values are `d * q (+ m)` of.
    fn ints(&self) -> [i32; 32];
    fn d(&self) -> f32;
    /// `m` for offset weights, `s` for Q8_1 activations, else 0.
    fn extra(&self) -> f32;
    /// Q8 only: -128 becomes -127.
    fn raise_min(&mut self) {
        unreachable!("only Q8 activations are clamped")
    }
}

fn raise_min(qs: &mut [i8; 32]) {
    qs.iter_mut().for_each(|q| *q = (*q).max(-127));
}

fn bytes<const N: usize>(rng: &mut Rng, b: Bytes) -> [u8; N] {
    std::array::from_fn(|_| b.byte(rng))
}

fn nibble_ints(qs: &[u8; 16]) -> [i32; 32] {
    std::array::from_fn(|j| if j < 16 { qs[j] & 0x0F } else { qs[j - 16] >> 4 } as i32)
}

fn fifth_bit_ints(qs: &[u8; 16], qh: [u8; 4]) -> [i32; 32] {
    let n = nibble_ints(qs);
    let h = u32::from_le_bytes(qh);
    std::array::from_fn(|j| n[j] | (((h >> j) & 1) << 4) as i32)
}

impl TestBlock for BlockQ4_0 {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), qs: bytes(rng, b) }
    }
    fn ints(&self) -> [i32; 32] {
        nibble_ints(&self.qs).map(|q| q - 8)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn extra(&self) -> f32 {
        0.0
    }
}

impl TestBlock for BlockQ4_1 {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), m: s.scale(rng), qs: bytes(rng, b) }
    }
    fn ints(&self) -> [i32; 32] {
        nibble_ints(&self.qs)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn extra(&self) -> f32 {
        self.m.to_f32()
    }
}

impl TestBlock for BlockQ5_0 {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), qh: bytes(rng, b), qs: bytes(rng, b) }
    }
    fn ints(&self) -> [i32; 32] {
        fifth_bit_ints(&self.qs, self.qh).map(|q| q - 16)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn extra(&self) -> f32 {
        0.0
    }
}

impl TestBlock for BlockQ5_1 {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), m: s.scale(rng), qh: bytes(rng, b), qs: bytes(rng, b) }
    }
    fn ints(&self) -> [i32; 32] {
        fifth_bit_ints(&self.qs, self.qh)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn extra(&self) -> f32 {
        self.m.to_f32()
    }
}

impl TestBlock for BlockQ8_0 {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), qs: bytes::<32>(rng, b).map(|q| q as i8) }
    }
    fn ints(&self) -> [i32; 32] {
        self.qs.map(i32::from)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn extra(&self) -> f32 {
        0.0
    }
    fn raise_min(&mut self) {
        raise_min(&mut self.qs)
    }
}

impl TestBlock for BlockQ8_1 {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        // `s` is whatever the block says: the kernels must use it as stored.
        Self { d: s.scale(rng), s: s.scale(rng), qs: bytes::<32>(rng, b).map(|q| q as i8) }
    }
    fn ints(&self) -> [i32; 32] {
        self.qs.map(i32::from)
    }
    fn d(&self) -> f32 {
        self.d.to_f32()
    }
    fn extra(&self) -> f32 {
        self.s.to_f32()
    }
    fn raise_min(&mut self) {
        raise_min(&mut self.qs)
    }
}

/// Block counts: empty, odd and even (the kernels pair blocks), and a
/// 4096-wide row.
const BLOCK_COUNTS: [usize; 7] = [0, 1, 2, 3, 7, 33, 128];

type Dot<X, Y> = fn(Isa, &[X], &[Y]) -> f32;

/// Checks `simd_dot` on every available instruction set against `reference`
/// over every byte pattern, scale pattern and block count. `uses_extra`:
/// the weight type's `m` multiplies the activations' `s`. `y_no_min`: the
/// activations of a signed-by-signed dot hold -127..=127, as the Q8
/// quantizer writes (the kernels' documented assumption); -128 is still used
/// in the weights.
fn check_q<X: TestBlock, Y: TestBlock>(
    name: &str,
    simd_dot: Dot<X, Y>,
    reference: fn(&[X], &[Y]) -> f32,
    uses_extra: bool,
    y_no_min: bool,
) {
    let mut rng = Rng(0x5EED ^ name.len() as u64);
    let mut checked = 0;
    for &xb in &Bytes::ALL {
        for &yb in &Bytes::ALL {
            for &sc in &Scales::ALL {
                for &n in &BLOCK_COUNTS {
                    let x: Vec<X> = (0..n).map(|_| X::make(&mut rng, xb, sc)).collect();
                    let mut y: Vec<Y> = (0..n).map(|_| Y::make(&mut rng, yb, Scales::Random)).collect();
                    if y_no_min {
                        y.iter_mut().for_each(|b| b.raise_min());
                    }
                    let mag: f64 = x
                        .iter()
                        .zip(&y)
                        .map(|(a, b)| {
                            let ints: i64 = a.ints().iter().zip(b.ints()).map(|(&p, q)| (p * q).abs() as i64).sum();
                            let extra = if uses_extra { (a.extra() as f64 * b.extra() as f64).abs() } else { 0.0 };
                            (a.d() as f64 * b.d() as f64).abs() * ints as f64 + extra
                        })
                        .sum();
                    let want = reference(&x, &y) as f64;
                    for isa in Isa::available() {
                        let got = simd_dot(isa, &x, &y) as f64;
                        let err = (got - want).abs();
                        assert!(
                            err <= TOL * mag,
                            "{name} on {}: {got} vs scalar {want} (error {err:e}, allowed {:e}); \
                             {n} blocks, x bytes {xb:?}, y bytes {yb:?}, scales {sc:?}",
                            isa.name(),
                            TOL * mag
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    eprintln!("{name}: {checked} cases on {:?}", Isa::available());
}

#[test]
fn simd_paths_are_under_test() {
    let avail = Isa::available();
    eprintln!("available: {avail:?}");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
        assert!(avail.contains(&Isa::Avx2));
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert!(avail.contains(&Isa::Neon));
        eprintln!("dotprod: {}", std::arch::is_aarch64_feature_detected!("dotprod"));
    }
}

#[test]
fn unsupported_isa_panics_instead_of_running() {
    let x = [BlockQ8_0 { d: f16::ONE, qs: [1; 32] }];
    for isa in [Isa::Avx2, Isa::Avx512, Isa::Neon] {
        if !isa.supported() {
            let r = std::panic::catch_unwind(|| simd::vec_dot_q8_0_q8_0(isa, &x, &x));
            assert!(r.is_err(), "{} ran on a CPU without it", isa.name());
        }
    }
}

#[test]
fn q4_0_q8_0() {
    check_q::<BlockQ4_0, BlockQ8_0>("q4_0·q8_0", simd::vec_dot_q4_0_q8_0, scalar::vec_dot_q4_0_q8_0, false, false);
}

#[test]
fn q4_1_q8_1() {
    check_q::<BlockQ4_1, BlockQ8_1>("q4_1·q8_1", simd::vec_dot_q4_1_q8_1, scalar::vec_dot_q4_1_q8_1, true, false);
}

#[test]
fn q5_0_q8_0() {
    check_q::<BlockQ5_0, BlockQ8_0>("q5_0·q8_0", simd::vec_dot_q5_0_q8_0, scalar::vec_dot_q5_0_q8_0, false, false);
}

#[test]
fn q5_1_q8_1() {
    check_q::<BlockQ5_1, BlockQ8_1>("q5_1·q8_1", simd::vec_dot_q5_1_q8_1, scalar::vec_dot_q5_1_q8_1, true, false);
}

#[test]
fn q8_0_q8_0() {
    check_q::<BlockQ8_0, BlockQ8_0>("q8_0·q8_0", simd::vec_dot_q8_0_q8_0, scalar::vec_dot_q8_0_q8_0, false, true);
}

#[test]
fn q8_1_q8_1() {
    check_q::<BlockQ8_1, BlockQ8_1>("q8_1·q8_1", simd::vec_dot_q8_1_q8_1, scalar::vec_dot_q8_1_q8_1, false, true);
}

/// The Q8 kernels on NEON are exact for -128 in both operands too.
#[cfg(target_arch = "aarch64")]
#[test]
fn q8_0_q8_0_with_min_activations_on_neon() {
    let x = [BlockQ8_0 { d: f16::ONE, qs: [-128; 32] }; 3];
    let want = scalar::vec_dot_q8_0_q8_0(&x, &x);
    assert_eq!(want, 3.0 * 32.0 * 16384.0);
    assert_eq!(simd::vec_dot_q8_0_q8_0(Isa::Neon, &x, &x), want);
}

// ---------------------------------------------------------------------------
// K-quant dots (Q2_K … Q6_K · Q8_K), same method: every field of a
// super-block (levels, high bits, packed scales and mins) from one byte
// pattern, `d` and `dmin` from one scale pattern. The library's decoding
// (`SuperBlock`) only sizes the tolerance here; tests/k_quants.rs checks it
// and the scalar dots against ggml.

/// A K-quant weight block made from a byte and a scale pattern.
trait TestKBlock: SuperBlock + Copy {
    fn make(rng: &mut Rng, bytes: Bytes, scales: Scales) -> Self;
}

impl TestKBlock for BlockQ2K {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { scales: bytes(rng, b), qs: bytes(rng, b), d: s.scale(rng), dmin: s.scale(rng) }
    }
}

impl TestKBlock for BlockQ3K {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { hmask: bytes(rng, b), qs: bytes(rng, b), scales: bytes(rng, b), d: s.scale(rng) }
    }
}

impl TestKBlock for BlockQ4K {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), dmin: s.scale(rng), scales: bytes(rng, b), qs: bytes(rng, b) }
    }
}

impl TestKBlock for BlockQ5K {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        Self { d: s.scale(rng), dmin: s.scale(rng), scales: bytes(rng, b), qh: bytes(rng, b), qs: bytes(rng, b) }
    }
}

impl TestKBlock for BlockQ6K {
    fn make(rng: &mut Rng, b: Bytes, s: Scales) -> Self {
        // Scale bytes 0x80 give -128, the most negative i8 scale.
        Self { ql: bytes(rng, b), qh: bytes(rng, b), scales: bytes::<16>(rng, b).map(|v| v as i8), d: s.scale(rng) }
    }
}

/// Q8_K activations with `bsums` consistent with `qs` (as the quantizer
/// writes them; the SIMD paths may use either). -128 is allowed: every
/// K-quant weight is small enough for the products to stay exact.
fn q8k(rng: &mut Rng, b: Bytes) -> BlockQ8K {
    let qs = bytes::<256>(rng, b).map(|q| q as i8);
    let bsums = std::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
    BlockQ8K { d: Scales::Random.scale(rng).to_f32(), qs, bsums }
}

/// Super-block counts: empty, odd and even, and a 4096-wide row.
const K_BLOCK_COUNTS: [usize; 6] = [0, 1, 2, 3, 7, 16];

/// As `check_q`, for K-quant weights: every instruction set against the
/// scalar reference within `TOL` of the sum of |terms| (scaled products and
/// the mins' `dmin * dy * bsum * min`).
fn check_k<X: TestKBlock>(name: &str, simd_dot: Dot<X, BlockQ8K>, reference: fn(&[X], &[BlockQ8K]) -> f32) {
    let mut rng = Rng(0x4B ^ name.len() as u64);
    let mut checked = 0;
    for &xb in &Bytes::ALL {
        for &yb in &Bytes::ALL {
            for &sc in &Scales::ALL {
                for &n in &K_BLOCK_COUNTS {
                    let x: Vec<X> = (0..n).map(|_| X::make(&mut rng, xb, sc)).collect();
                    let y: Vec<BlockQ8K> = (0..n).map(|_| q8k(&mut rng, yb)).collect();
                    let mag = k_magnitude(&x, &y);
                    let want = reference(&x, &y) as f64;
                    for isa in Isa::available() {
                        let got = simd_dot(isa, &x, &y) as f64;
                        let err = (got - want).abs();
                        assert!(
                            err <= TOL * mag,
                            "{name} on {}: {got} vs scalar {want} (error {err:e}, allowed {:e}); \
                             {n} super-blocks, x bytes {xb:?}, y bytes {yb:?}, scales {sc:?}",
                            isa.name(),
                            TOL * mag
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    eprintln!("{name}: {checked} cases on {:?}", Isa::available());
}

#[test]
fn q2_k_q8_k() {
    check_k::<BlockQ2K>("q2_K·q8_K", simd::vec_dot_q2_k_q8_k, scalar::vec_dot_q2_k_q8_k);
}

#[test]
fn q3_k_q8_k() {
    check_k::<BlockQ3K>("q3_K·q8_K", simd::vec_dot_q3_k_q8_k, scalar::vec_dot_q3_k_q8_k);
}

#[test]
fn q4_k_q8_k() {
    check_k::<BlockQ4K>("q4_K·q8_K", simd::vec_dot_q4_k_q8_k, scalar::vec_dot_q4_k_q8_k);
}

#[test]
fn q5_k_q8_k() {
    check_k::<BlockQ5K>("q5_K·q8_K", simd::vec_dot_q5_k_q8_k, scalar::vec_dot_q5_k_q8_k);
}

#[test]
fn q6_k_q8_k() {
    check_k::<BlockQ6K>("q6_K·q8_K", simd::vec_dot_q6_k_q8_k, scalar::vec_dot_q6_k_q8_k);
}

// ---------------------------------------------------------------------------
// K-quant row tiles (`simd::rowtile`): one weight row against TILE activation
// rows, each token's result against the scalar one-token dot, from the same
// cases as the K-quant dots; and the row-major matmul that uses them.

/// The tile kernel for `dtype` on every instruction set this CPU has that
/// has one.
fn tile_kernels(dtype: GgmlDType) -> Vec<(Isa, RowTile)> {
    Isa::available().into_iter().filter_map(|isa| row_tile(isa, dtype).map(|k| (isa, k))).collect()
}

/// The tile's tokens take different byte patterns (rotating through
/// `Bytes::ALL`), so results landing on the wrong token are caught too.
fn check_tile<X: TestKBlock + GgmlType>(reference: fn(&[X], &[BlockQ8K]) -> f32) {
    let dtype = X::DTYPE;
    let kernels = tile_kernels(dtype);
    let mut rng = Rng(0x7117 ^ dtype as u64);
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
                            let want = reference(&x, yt) as f64;
                            let allowed = TOL * k_magnitude(&x, yt);
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

const K_TYPES: [GgmlDType; 5] = [GgmlDType::Q2K, GgmlDType::Q3K, GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K];

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
            assert!(!tile_kernels(dtype).is_empty());
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
fn k_quant_tiles() {
    check_tile::<BlockQ2K>(scalar::vec_dot_q2_k_q8_k);
    check_tile::<BlockQ3K>(scalar::vec_dot_q3_k_q8_k);
    check_tile::<BlockQ4K>(scalar::vec_dot_q4_k_q8_k);
    check_tile::<BlockQ5K>(scalar::vec_dot_q5_k_q8_k);
    check_tile::<BlockQ6K>(scalar::vec_dot_q6_k_q8_k);
}

/// A tile of the wrong length is refused, not read out of bounds.
#[test]
#[should_panic(expected = "tile of 4 activation rows")]
fn short_tile_panics() {
    let Some(kernel) = row_tile(Isa::Avx2, GgmlDType::Q4K) else {
        panic!("tile of 4 activation rows (no AVX2 here: nothing to check)");
    };
    let x = [BlockQ4K::make(&mut Rng(1), Bytes::Random, Scales::Random); 2];
    let y: Vec<BlockQ8K> = (0..TILE * 2 - 1).map(|_| q8k(&mut Rng(2), Bytes::Random)).collect();
    kernel(as_bytes(&x), as_bytes(&y), &mut [0.0; TILE]);
}

/// The row-major matmul (tiles of 4 tokens, then one-token leftovers, over
/// uneven row chunks) on every instruction set against the scalar matmul.
fn check_matmul<X: SuperBlock + GgmlType>() {
    let dtype = X::DTYPE;
    let mut rng = common::Rng::new(0x6D6D ^ dtype as u64);
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
                        let allowed = TOL * k_magnitude(row, act);
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

// ---------------------------------------------------------------------------
// Float dots.

/// Row lengths around every vector width and unroll (4..128 values) and a
/// 4096-wide row with a ragged tail.
const LENGTHS: [usize; 20] = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 129, 4096, 4096 + 37];

/// How float values are drawn (magnitudes chosen so no product overflows).
#[derive(Clone, Copy, Debug)]
enum Values {
    Random,
    /// Up to 2^14 in magnitude.
    Large,
    /// Near the type's smallest normal and below.
    Tiny,
    /// Pairs that cancel: a run of +v then -v.
    Cancelling,
    Zero,
}

fn float_values(rng: &mut Rng, kind: Values, n: usize, tiny: f32) -> Vec<f32> {
    (0..n)
        .map(|i| match kind {
            Values::Random => rng.sign() * rng.unit() * 4.0,
            Values::Large => rng.sign() * rng.unit() * 16384.0,
            Values::Tiny => rng.sign() * rng.unit() * tiny,
            Values::Cancelling => {
                if i % 2 == 0 {
                    1.5
                } else {
                    -1.5
                }
            }
            Values::Zero => 0.0,
        })
        .collect()
}

fn check_float<T: Copy>(
    name: &str,
    from: fn(f32) -> T,
    to: fn(T) -> f32,
    tiny: f32,
    simd_dot: Dot<T, T>,
    reference: fn(&[T], &[T]) -> f32,
) {
    let mut rng = Rng(0xF10A7 ^ name.len() as u64);
    let kinds = [Values::Random, Values::Large, Values::Tiny, Values::Cancelling, Values::Zero];
    let mut checked = 0;
    for &kx in &kinds {
        for &ky in &kinds {
            for &n in &LENGTHS {
                let x: Vec<T> = float_values(&mut rng, kx, n, tiny).into_iter().map(from).collect();
                let y: Vec<T> = float_values(&mut rng, ky, n, tiny).into_iter().map(from).collect();
                let mag: f64 = x.iter().zip(&y).map(|(&a, &b)| (to(a) as f64 * to(b) as f64).abs()).sum();
                let want = reference(&x, &y) as f64;
                for isa in Isa::available() {
                    let got = simd_dot(isa, &x, &y) as f64;
                    let err = (got - want).abs();
                    // Products of tiny values underflow to f32 subnormals on
                    // either side; allow that absolute slack too.
                    let allowed = TOL * mag + n as f64 * f32::from_bits(1) as f64;
                    assert!(
                        err <= allowed,
                        "{name} on {}: {got} vs scalar {want} (error {err:e}, allowed {allowed:e}); \
                         length {n}, x {kx:?}, y {ky:?}",
                        isa.name()
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{name}: {checked} cases on {:?}", Isa::available());
}

#[test]
fn f32_dot() {
    check_float::<f32>("f32", |v| v, |v| v, 1e-37, simd::vec_dot_f32, scalar::vec_dot_f32);
}

#[test]
fn f16_dot() {
    check_float::<f16>("f16", f16::from_f32, f16::to_f32, 1e-4, simd::vec_dot_f16, scalar::vec_dot_f16);
}

#[test]
fn bf16_dot() {
    check_float::<bf16>("bf16", bf16::from_f32, bf16::to_f32, 1e-37, simd::vec_dot_bf16, scalar::vec_dot_bf16);
}

/// Activation quantization (`simd::quantize_q8`, ggml's Q8_0 rounding)
/// equals the scalar reference bit for bit on every set: random blocks at
/// several scales, exact halves (where `roundf` rounds away from zero and a
/// round-to-even would not), signed zeros, an all-zero block and subnormal
/// values (an infinite inverse scale).
#[test]
fn q8_activation_quantization_matches_scalar() {
    let mut rng = Rng(17);
    let mut blocks: Vec<[f32; 32]> = Vec::new();
    for e in [-20, -3, 0, 5, 30] {
        for _ in 0..20 {
            blocks.push(std::array::from_fn(|_| rng.sign() * rng.unit() * 2f32.powi(e)));
        }
    }
    // amax 127 makes d = 1, so x / d hits halves exactly: +-0.5, +-1.5, ...
    for start in [0, 31, 62, 95] {
        blocks.push(std::array::from_fn(|i| {
            if i == 0 {
                127.0
            } else {
                (if i % 2 == 0 { -1.0 } else { 1.0 }) * ((start + i) as f32 + 0.5).min(126.5)
            }
        }));
    }
    blocks.push([0.0; 32]);
    blocks.push(std::array::from_fn(|i| if i % 2 == 0 { -0.0 } else { 1e-3 }));
    // Subnormal inputs: d is subnormal too and 1/d overflows to infinity.
    blocks.push(std::array::from_fn(|i| (i as f32 - 15.5) * 1e-39));
    for x in &blocks {
        let want = simd::quantize_q8(Isa::Scalar, x);
        for isa in Isa::available() {
            let got = simd::quantize_q8(isa, x);
            assert_eq!((got.0.to_bits(), got.1), (want.0.to_bits(), want.1), "{} on {x:?}", isa.name());
        }
    }
    // The halves did round away from zero.
    let (_, q) = simd::quantize_q8(Isa::Scalar, &blocks[100]);
    assert_eq!(&q[..4], &[127, 2, -3, 4]);
}
