//! The row-interleaved layouts and their kernels: the repacking is a
//! lossless permutation with the documented byte positions, the scalar
//! interleaved kernel equals the one-row scalar kernels bit for bit, every
//! SIMD path equals it to f32 rounding on random and adversarial blocks, and
//! the interleaved matmul equals the row-major scalar matmul.
//!
//! Tolerance as in `simd.rs`: relative to the sum of the absolute values of
//! the terms, so a decoding mistake (a swapped nibble half, a lost offset, a
//! scale from the wrong row, block or token) fails by a whole term.

mod common;

use common::{Aligned, Rng};
use half::f16;
use qllama_kernels::formats::interleaved::{
    self, BlockQ4_0x8, BlockQ4_1x8, BlockQ5_0x8, BlockQ5_1x8, BlockQ8_0x8, Interleaved, FLOAT_ROWS, ROWS,
};
use qllama_kernels::formats::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use qllama_kernels::matmul::{matmul_many_with, matmul_with};
use qllama_kernels::simd::scalar::{self, BlockInts};
use qllama_kernels::simd::x8::{self, Act, ActBuf, Needs, X8Dot};
use qllama_kernels::simd::Isa;
use qllama_kernels::{GgmlDType, MatmulScratch, QMatrix};
use std::rc::Rc;

const TOL: f64 = 1e-5;

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
    // Several octaves, both signs.
    f16::from_f64((rng.uniform() * 2.0 - 1.0) * 2f64.powi((rng.next_u64() % 8) as i32 - 8))
}

fn q4(rng: &mut Rng, fill: Fill) -> BlockQ4_0 {
    let fill = match fill {
        Fill::Max => Fill::Random,
        f => f,
    };
    // Nibbles pinned at 0xF or 0x0 for the extremes.
    let qs = std::array::from_fn(|_| match fill {
        Fill::Min => 0x00,
        _ if rng.next_u64().is_multiple_of(4) => 0xFF,
        _ => byte(rng, Fill::Random),
    });
    BlockQ4_0 { d: scale(rng), qs }
}

fn q4_1(rng: &mut Rng, fill: Fill) -> BlockQ4_1 {
    let b = q4(rng, fill);
    BlockQ4_1 { d: b.d, m: scale(rng), qs: b.qs }
}

/// Fifth bits: random, all set (levels up to 31) or all clear.
fn fifth(rng: &mut Rng, fill: Fill) -> [u8; 4] {
    match fill {
        Fill::Random => rng.next_u64().to_le_bytes()[..4].try_into().unwrap(),
        Fill::Max => [0xFF; 4],
        Fill::Min => [0; 4],
    }
}

fn q5_0(rng: &mut Rng, fill: Fill) -> BlockQ5_0 {
    let b = q4(rng, fill);
    BlockQ5_0 { d: b.d, qh: fifth(rng, fill), qs: b.qs }
}

fn q5_1(rng: &mut Rng, fill: Fill) -> BlockQ5_1 {
    let b = q4(rng, fill);
    BlockQ5_1 { d: b.d, m: scale(rng), qh: fifth(rng, fill), qs: b.qs }
}

/// Activation blocks from Q8_0 ones (Q8_1 with `s = d * sum(q)`, as its
/// quantizer stores it).
trait FromQ8: x8::ActBlock + Clone {
    fn from_q8(b: BlockQ8_0) -> Self;
}

impl FromQ8 for BlockQ8_0 {
    fn from_q8(b: BlockQ8_0) -> Self {
        b
    }
}

impl FromQ8 for BlockQ8_1 {
    fn from_q8(b: BlockQ8_0) -> Self {
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        BlockQ8_1 { d: b.d, s: f16::from_f32(b.d.to_f32() * sum as f32), qs: b.qs }
    }
}

/// Weights may hold -128; activations hold -127..=127, as the quantizer
/// writes them (the SIMD kernels rely on it).
fn q8(rng: &mut Rng, fill: Fill, activation: bool) -> BlockQ8_0 {
    let lo = if activation { -127 } else { -128 };
    BlockQ8_0 { d: scale(rng), qs: std::array::from_fn(|_| (byte(rng, fill) as i8).max(lo)) }
}

#[test]
fn interleaving_is_the_documented_permutation() {
    let mut rng = Rng::new(3);
    let rows: [BlockQ4_0; ROWS] = std::array::from_fn(|_| q4(&mut rng, Fill::Random));
    let x = BlockQ4_0x8::from_rows(std::array::from_fn(|j| &rows[j]));
    for j in 0..ROWS {
        assert_eq!(x.d[j], rows[j].d);
        for i in 0..16 {
            // Byte i of row j is in chunk i / 4, at row j's four bytes.
            assert_eq!(x.qs[(i / 4 * ROWS + j) * 4 + i % 4], rows[j].qs[i], "row {j} byte {i}");
        }
    }
    assert_eq!(x.to_rows(), rows);
    let rows: [BlockQ8_0; ROWS] = std::array::from_fn(|_| q8(&mut rng, Fill::Random, false));
    let x = BlockQ8_0x8::from_rows(std::array::from_fn(|j| &rows[j]));
    assert_eq!(x.qs[(7 * ROWS + 5) * 4 + 3], rows[5].qs[31]);
    assert_eq!(x.to_rows(), rows);
    // Q5: each row's fifth bits regrouped so that bit 8k + c is weight
    // 4c + k's (byte k of chunk c).
    let rows: [BlockQ5_1; ROWS] = std::array::from_fn(|_| q5_1(&mut rng, Fill::Random));
    let x = BlockQ5_1x8::from_rows(std::array::from_fn(|j| &rows[j]));
    for j in 0..ROWS {
        assert_eq!(x.m[j], rows[j].m);
        let (src, dst) =
            (u32::from_le_bytes(rows[j].qh), u32::from_le_bytes(x.qh[4 * j..4 * j + 4].try_into().unwrap()));
        for (c, k) in (0..8).flat_map(|c| (0..4).map(move |k| (c, k))) {
            assert_eq!(dst >> (8 * k + c) & 1, src >> (4 * c + k) & 1, "row {j} chunk {c} byte {k}");
        }
    }
    assert_eq!(x.to_rows(), rows);
}

#[test]
fn whole_matrix_round_trip() {
    let mut rng = Rng::new(5);
    let cases = [
        (GgmlDType::Q4_0, 24, 96),
        (GgmlDType::Q8_0, 16, 64),
        (GgmlDType::Q4_0, 8, 32),
        (GgmlDType::Q4_1, 16, 64),
        (GgmlDType::Q5_0, 16, 64),
        (GgmlDType::Q5_1, 24, 96),
        (GgmlDType::Q4K, 8, 256),
        (GgmlDType::Q4K, 24, 768),
        (GgmlDType::Q5K, 8, 256),
        (GgmlDType::Q5K, 24, 768),
        (GgmlDType::Q6K, 8, 256),
        (GgmlDType::Q6K, 24, 768),
        (GgmlDType::F16, 16, 4),
        (GgmlDType::F16, 48, 66),
        (GgmlDType::BF16, 16, 64),
        (GgmlDType::F32, 32, 6),
    ];
    for (dtype, rows, cols) in cases {
        let src = Aligned::quantize(dtype, &rng.normals(rows * cols, 1.0));
        let mut packed = Aligned::zeroed(src.as_ref().len());
        let mut back = Aligned::zeroed(src.as_ref().len());
        interleaved::interleave(dtype, rows, src.as_ref(), packed.as_mut());
        assert_ne!(packed.as_ref(), src.as_ref(), "{dtype}: repacking changed nothing");
        interleaved::deinterleave(dtype, rows, packed.as_ref(), back.as_mut());
        assert_eq!(back.as_ref(), src.as_ref(), "{dtype} {rows}x{cols}");
    }
    assert!(!interleaved::can_interleave(GgmlDType::Q4_0, 12, 32));
    assert!(interleaved::can_interleave(GgmlDType::Q4_1, 16, 32));
    assert!(!interleaved::can_interleave(GgmlDType::Q5_0, 12, 32));
    assert!(interleaved::can_interleave(GgmlDType::F16, 16, 32));
    assert!(!interleaved::can_interleave(GgmlDType::F16, 16, 33));
    assert!(!interleaved::can_interleave(GgmlDType::BF16, 8, 32));
    assert!(interleaved::can_interleave(GgmlDType::F32, 32, 2));
    assert!(interleaved::can_interleave(GgmlDType::Q4K, 16, 256));
    assert!(!interleaved::can_interleave(GgmlDType::Q4K, 12, 256));
    assert!(interleaved::can_interleave(GgmlDType::Q5K, 16, 256));
    assert!(!interleaved::can_interleave(GgmlDType::Q5K, 12, 256));
    assert!(!interleaved::can_interleave(GgmlDType::Q3K, 16, 256));
}

/// The float layouts put row `j`'s value `k` of each 16-row block where
/// `float_at` says: value by value for F16 and F32, in pairs for BF16
/// (the kernels' lanes depend on it).
#[test]
fn float_layouts_place_values_as_documented() {
    let (rows, cols) = (32, 6);
    for dtype in [GgmlDType::F16, GgmlDType::BF16, GgmlDType::F32] {
        // Integers below 256, exact in every float type.
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let q = Aligned::quantize(dtype, &src);
        let mut packed = Aligned::zeroed(q.as_ref().len());
        interleaved::interleave(dtype, rows, q.as_ref(), packed.as_mut());
        let mut got = vec![0.0; rows * cols];
        dtype.dequantize_row(packed.as_ref(), &mut got);
        for b in 0..rows / FLOAT_ROWS {
            for j in 0..FLOAT_ROWS {
                for k in 0..cols {
                    let at = b * FLOAT_ROWS * cols + interleaved::float_at(dtype, j, k);
                    assert_eq!(
                        got[at],
                        ((b * FLOAT_ROWS + j) * cols + k) as f32,
                        "{dtype} block {b} row {j} value {k}"
                    );
                }
            }
        }
    }
    assert_eq!(interleaved::float_at(GgmlDType::F16, 3, 5), 16 * 5 + 3);
    assert_eq!(interleaved::float_at(GgmlDType::BF16, 3, 5), 32 * 2 + 2 * 3 + 1);
}

/// Float weights and activations that are small integers: every product
/// and partial sum is exact in f32 whatever the order, so each path (the
/// widening FMA kernels, `vdpbf16ps`, the reference) must equal the
/// row-major scalar matmul bit for bit, and a value taken from the wrong
/// row, pair or token cannot hide in the rounding.
#[test]
fn float_kernels_are_exact_on_integer_values() {
    let mut rng = Rng::new(17);
    let (rows, cols) = (48, 1024);
    let int = |rng: &mut Rng| (rng.next_u64() % 17) as f32 - 8.0;
    for dtype in [GgmlDType::F16, GgmlDType::BF16, GgmlDType::F32] {
        let w = Aligned::quantize(dtype, &(0..rows * cols).map(|_| int(&mut rng)).collect::<Vec<_>>());
        let mut packed = Aligned::zeroed(w.as_ref().len());
        interleaved::interleave(dtype, rows, w.as_ref(), packed.as_mut());
        let plain = QMatrix::new(dtype, rows, cols, w.as_ref()).unwrap();
        let inter = QMatrix::interleaved(dtype, rows, cols, packed.as_ref()).unwrap();
        for n in [1, 2, 3, 5, 6, 7, 8, 9, 13] {
            let x: Vec<f32> = (0..n * cols).map(|_| int(&mut rng)).collect();
            let mut want = vec![0.0; n * rows];
            matmul_with(Isa::Scalar, &plain, &x, n, &mut want, &mut MatmulScratch::default());
            for isa in Isa::available() {
                let mut got = vec![0.0; n * rows];
                matmul_with(isa, &inter, &x, n, &mut got, &mut MatmulScratch::default());
                assert_eq!(got, want, "{dtype} {} n={n}", isa.name());
            }
        }
    }
}

/// Eight weight rows of `nb` blocks, interleaved, and `T` activation rows.
struct Case<X: X8Dot> {
    rows: Vec<Vec<X::Source>>,
    w: Vec<X>,
    y: Vec<X::Act>,
    /// `y` packed as the kernels read it, with every part.
    packed: Rc<ActBuf>,
}

impl<X: X8Dot> Case<X>
where
    X::Act: FromQ8,
{
    fn new(rng: &mut Rng, nb: usize, t: usize, make: &dyn Fn(&mut Rng) -> X::Source, yfill: Fill) -> Self {
        let rows: Vec<Vec<X::Source>> = (0..ROWS).map(|_| (0..nb).map(|_| make(rng)).collect()).collect();
        let w = (0..nb).map(|b| X::from_rows(std::array::from_fn(|j| &rows[j][b]))).collect();
        // The last token pinned at the extreme, the others random.
        let y: Vec<X::Act> = (0..t * nb)
            .map(|i| X::Act::from_q8(q8(rng, if i / nb == t - 1 { yfill } else { Fill::Random }, true)))
            .collect();
        let mut packed = ActBuf::default();
        packed.pack(&y, t, t, Needs { offset: true, pairs: true, bias: true, s: true }, X::BIAS);
        Case { rows, w, y, packed: Rc::new(packed) }
    }

    /// No weights, and this case's activations.
    fn clone_act(&self) -> Self {
        Case { rows: vec![], w: vec![], y: self.y.clone(), packed: self.packed.clone() }
    }

    fn act(&self) -> Act<'_> {
        self.act_blocks(0..self.w.len())
    }

    /// The activations of blocks `blocks` only.
    fn act_blocks(&self, blocks: std::ops::Range<usize>) -> Act<'_> {
        let t = self.y.len() / self.w.len().max(1);
        self.packed.tile(0..t, blocks)
    }

    /// Sum of |terms| of row j's dot with token t.
    fn magnitude(&self, j: usize, t: usize) -> f64 {
        let nb = self.w.len();
        (0..nb)
            .map(|b| {
                let (wb, yb) = (&self.rows[j][b], &self.y[t * nb + b]);
                let s: i64 = wb.ints().iter().zip(&yb.ints()).map(|(&a, &q)| (a as i64 * q as i64).abs()).sum();
                s as f64 * (wb.d() as f64 * yb.d() as f64).abs()
                    + (X::row_min(wb) as f64 * x8::ActBlock::s(yb) as f64).abs()
            })
            .sum()
    }
}

fn check<X: X8Dot, const T: usize>(
    make: &dyn Fn(&mut Rng, Fill) -> X::Source,
    one_row: fn(&[X::Source], &[X::Act]) -> f32,
) where
    X::Act: FromQ8,
{
    let mut rng = Rng::new(7 + T as u64);
    for nb in [1, 2, 3, 8, 33] {
        for (wf, yf) in
            [(Fill::Random, Fill::Random), (Fill::Max, Fill::Min), (Fill::Min, Fill::Min), (Fill::Max, Fill::Max)]
        {
            let case = Case::<X>::new(&mut rng, nb, T, &|r| make(r, wf), yf);
            let mut reference = [[0.0; ROWS]; T];
            x8::reference::<X, T>(&case.w, case.act(), &mut reference);
            for t in 0..T {
                for j in 0..ROWS {
                    let want = one_row(&case.rows[j], &case.y[t * nb..(t + 1) * nb]);
                    assert_eq!(reference[t][j].to_bits(), want.to_bits(), "nb={nb} row {j} token {t}");
                }
            }
            for isa in Isa::available() {
                let mut got = [[0.0; ROWS]; T];
                x8::gemm::<X, T>(isa, &case.w, case.act(), &mut got);
                for t in 0..T {
                    for j in 0..ROWS {
                        let err = (got[t][j] as f64 - reference[t][j] as f64).abs();
                        let mag = case.magnitude(j, t);
                        assert!(
                            err <= TOL * mag + 1e-30,
                            "{} nb={nb} {wf:?}/{yf:?} row {j} token {t}: {} vs reference {} (mag {mag})",
                            isa.name(),
                            got[t][j],
                            reference[t][j]
                        );
                    }
                }
            }
            // Two groups at once (one AVX-512 VNNI kernel over 16 rows, or
            // the one-group kernel twice): the second group's weights from
            // another draw, against the same activations.
            let drawn = Case::<X>::new(&mut rng, nb, T, &|r| make(r, wf), yf);
            let other = Case { rows: drawn.rows, w: drawn.w, ..case.clone_act() };
            let mut reference2 = [[0.0; ROWS]; T];
            x8::reference::<X, T>(&other.w, other.act(), &mut reference2);
            for isa in Isa::available() {
                // In two slices of blocks, the second adding to the first
                // (as the matmul walk runs them).
                let mut got = [[0.0; x8::ROWS2]; T];
                let (a, b) = (0..nb / 2, nb / 2..nb);
                x8::gemm2::<X, T>(isa, [&case.w[a.clone()], &other.w[a.clone()]], case.act_blocks(a), &mut got);
                x8::gemm2::<X, T>(isa, [&case.w[b.clone()], &other.w[b.clone()]], case.act_blocks(b), &mut got);
                for t in 0..T {
                    for (g, (c, want)) in [(&case, &reference), (&other, &reference2)].into_iter().enumerate() {
                        for j in 0..ROWS {
                            let (got, want) = (got[t][g * ROWS + j], want[t][j]);
                            let mag = c.magnitude(j, t);
                            assert!(
                                (got as f64 - want as f64).abs() <= TOL * mag + 1e-30,
                                "{} two groups nb={nb} {wf:?}/{yf:?} group {g} row {j} token {t}: {got} vs {want}",
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
fn q4_0x8_kernels_match_the_reference() {
    check_levels::<BlockQ4_0x8>(&|r: &mut Rng, f: Fill| q4(r, f), scalar::vec_dot_q4_0_q8_0);
}

/// [`check`] for the tile lengths the 4- and 5-bit types run at: up to
/// the AVX2 tile (4) and the VNNI tile (8).
fn check_levels<X: X8Dot>(make: &dyn Fn(&mut Rng, Fill) -> X::Source, one_row: fn(&[X::Source], &[X::Act]) -> f32)
where
    X::Act: FromQ8,
{
    check::<X, 1>(make, one_row);
    check::<X, 2>(make, one_row);
    check::<X, 3>(make, one_row);
    check::<X, 4>(make, one_row);
    check::<X, 8>(make, one_row);
}

#[test]
fn q4_1x8_kernels_match_the_reference() {
    check_levels::<BlockQ4_1x8>(&|r: &mut Rng, f: Fill| q4_1(r, f), scalar::vec_dot_q4_1_q8_1);
}

#[test]
fn q5_0x8_kernels_match_the_reference() {
    check_levels::<BlockQ5_0x8>(&|r: &mut Rng, f: Fill| q5_0(r, f), scalar::vec_dot_q5_0_q8_0);
}

#[test]
fn q5_1x8_kernels_match_the_reference() {
    check_levels::<BlockQ5_1x8>(&|r: &mut Rng, f: Fill| q5_1(r, f), scalar::vec_dot_q5_1_q8_1);
}

#[test]
fn q8_0x8_kernels_match_the_reference() {
    let make = |r: &mut Rng, f: Fill| q8(r, f, false);
    check::<BlockQ8_0x8, 1>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 2>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 3>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 4>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 5>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 6>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 7>(&make, scalar::vec_dot_q8_0_q8_0);
    check::<BlockQ8_0x8, 8>(&make, scalar::vec_dot_q8_0_q8_0);
}

/// The interleaved matmul (tiles, leftover tokens, token chunks, uneven
/// task splits) against the row-major scalar matmul.
#[test]
fn interleaved_matmul_matches_row_major() {
    let mut rng = Rng::new(11);
    for (rows, cols, counts) in [(72usize, 256, &[1, 2, 3, 4, 5, 7, 9, 17][..]), (40, 4096, &[1, 66][..])] {
        use GgmlDType::*;
        for dtype in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K, F16, BF16, F32] {
            // The float layouts come in blocks of 16 rows (the others keep
            // an odd number of 8-row groups here).
            let rows = if dtype.is_quantized() { rows } else { rows.next_multiple_of(FLOAT_ROWS) };
            let w = Aligned::quantize(dtype, &rng.normals(rows * cols, 0.05));
            let mut packed = Aligned::zeroed(w.as_ref().len());
            interleaved::interleave(dtype, rows, w.as_ref(), packed.as_mut());
            let plain = QMatrix::new(dtype, rows, cols, w.as_ref()).unwrap();
            let inter = QMatrix::interleaved(dtype, rows, cols, packed.as_ref()).unwrap();
            for &n in counts {
                let x = rng.normals(n * cols, 1.0);
                let mut want = vec![0.0; n * rows];
                matmul_with(Isa::Scalar, &plain, &x, n, &mut want, &mut MatmulScratch::default());
                for isa in Isa::available() {
                    let mut got = vec![0.0; n * rows];
                    matmul_with(isa, &inter, &x, n, &mut got, &mut MatmulScratch::default());
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        // |terms| are at most about cols * 0.2 * 4 here; f32
                        // reordering stays far below this bound.
                        let bound = 1e-6 * cols as f32;
                        assert!((g - w).abs() <= bound, "{dtype} {} n={n} out[{i}]: {g} vs {w}", isa.name());
                    }
                }
            }
        }
    }
    // Only types and row counts with an interleaved layout are accepted.
    let w = Aligned::zeroed(16 * 110);
    assert!(QMatrix::interleaved(GgmlDType::Q4_0, 8, 32, &w.as_ref()[..8 * 18]).is_ok());
    assert!(QMatrix::interleaved(GgmlDType::Q3K, 16, 256, &w.as_ref()[..16 * 110]).is_err());
    assert!(QMatrix::interleaved(GgmlDType::F16, 16, 31, &w.as_ref()[..16 * 62]).is_err());
    assert!(QMatrix::interleaved(GgmlDType::Q4_0, 4, 32, &w.as_ref()[..4 * 18]).is_err());
}

/// Row views of an interleaved matrix would be scrambled, so they panic.
#[test]
#[should_panic(expected = "not contiguous")]
fn rows_of_an_interleaved_matrix_are_refused() {
    let w = Aligned::zeroed(8 * 18);
    let m = QMatrix::interleaved(GgmlDType::Q4_0, 8, 32, w.as_ref()).unwrap();
    let _ = m.row(0);
}

/// Several products on one input (`matmul_many`: Q, K, V or gate, up), with
/// weight types that share activations and types that do not, interleaved
/// and row-major, runs of one type and layout (which run side by side) and
/// single ones, equal the products one by one, bit for bit.
#[test]
fn products_sharing_activations_match_products_one_by_one() {
    let mut rng = Rng::new(13);
    let (rows, cols) = (48, 512);
    for n in [1, 9] {
        let x = rng.normals(n * cols, 1.0);
        use GgmlDType::*;
        let types = [
            (Q8_0, true),
            (Q8_0, true),
            (Q8_0, false),
            (Q4_0, true),
            (Q4_0, true),
            (Q4_0, true),
            (Q4K, false),
            (Q4K, true),
            (Q4K, true),
            (Q6K, true),
            (Q4_1, false),
            (Q4_1, false),
            (Q4_1, true),
            (Q5_1, true),
            (Q5_0, true),
            (Q5_0, false),
            (F16, true),
            (F16, true),
            (F16, false),
            (BF16, true),
            (BF16, false),
            (BF16, true),
            (F32, true),
        ];
        let mut weights = vec![];
        for &(dtype, interleave) in &types {
            let w = Aligned::quantize(dtype, &rng.normals(rows * cols, 0.05));
            let data = if interleave {
                let mut packed = Aligned::zeroed(w.as_ref().len());
                interleaved::interleave(dtype, rows, w.as_ref(), packed.as_mut());
                packed
            } else {
                w
            };
            weights.push((dtype, interleave, data));
        }
        fn matrix((dtype, interleave, data): &(GgmlDType, bool, Aligned), rows: usize, cols: usize) -> QMatrix<'_> {
            if *interleave {
                QMatrix::interleaved(*dtype, rows, cols, data.as_ref()).unwrap()
            } else {
                QMatrix::new(*dtype, rows, cols, data.as_ref()).unwrap()
            }
        }
        for isa in Isa::available() {
            let want: Vec<Vec<f32>> = weights
                .iter()
                .map(|w| {
                    let mut out = vec![0.0; n * rows];
                    matmul_with(isa, &matrix(w, rows, cols), &x, n, &mut out, &mut MatmulScratch::default());
                    out
                })
                .collect();
            let mut outs = vec![vec![f32::NAN; n * rows]; weights.len()];
            let mut products: Vec<(QMatrix, &mut [f32])> =
                weights.iter().zip(outs.iter_mut()).map(|(w, o)| (matrix(w, rows, cols), o.as_mut_slice())).collect();
            matmul_many_with(isa, &mut products, &x, n, &mut MatmulScratch::default());
            for (i, (got, want)) in outs.iter().zip(&want).enumerate() {
                let same = got.iter().zip(want).all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same, "{} n={n} product {i} ({:?}) differs from its own matmul", isa.name(), types[i]);
            }
        }
    }
}

/// A token's outputs from the float kernels do not depend on the batch it
/// came in: each lane sums in chunk order for any tile length, so the
/// decoder's token-by-token logits equal its batched ones.
#[test]
fn float_outputs_do_not_depend_on_the_batch() {
    let mut rng = Rng::new(19);
    let (rows, cols) = (32, 512);
    for dtype in [GgmlDType::F16, GgmlDType::BF16, GgmlDType::F32] {
        let w = Aligned::quantize(dtype, &rng.normals(rows * cols, 0.05));
        let mut packed = Aligned::zeroed(w.as_ref().len());
        interleaved::interleave(dtype, rows, w.as_ref(), packed.as_mut());
        let m = QMatrix::interleaved(dtype, rows, cols, packed.as_ref()).unwrap();
        let n = 11;
        let x = rng.normals(n * cols, 1.0);
        for isa in Isa::available() {
            let mut batch = vec![0.0; n * rows];
            matmul_with(isa, &m, &x, n, &mut batch, &mut MatmulScratch::default());
            for t in 0..n {
                let mut one = vec![0.0; rows];
                matmul_with(isa, &m, &x[t * cols..][..cols], 1, &mut one, &mut MatmulScratch::default());
                assert_eq!(one, batch[t * rows..][..rows], "{dtype} {} token {t}", isa.name());
            }
        }
    }
}
