//! The row-interleaved Q4_K, Q5_K and Q6_K layouts and their kernels, checked as
//! `interleaved.rs` checks Q4_0 and Q8_0: the repacking is a lossless
//! permutation with the documented positions (quant chunks, and the
//! regrouped scales and mins), the scalar interleaved kernel equals
//! the one-row scalar dot bit for bit, and every SIMD path equals it to f32
//! rounding on random and adversarial super-blocks. The whole-matrix round
//! trip and the interleaved matmul are checked with the other types in
//! `interleaved.rs`.
//!
//! Tolerance relative to the sum of |terms| (scaled products and the mins'
//! share), so a wrong scale, min, nibble half or row fails by a whole term.

mod common;

use common::{k_magnitude, Rng};
use half::f16;
use qllama_kernels::formats::interleaved::{BlockQ4Kx8, BlockQ5Kx8, BlockQ6Kx8, Interleaved, K4Scales, ROWS};
use qllama_kernels::formats::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use qllama_kernels::simd::scalar::{self, SuperBlock};
use qllama_kernels::simd::x8;
use qllama_kernels::simd::x8k::{self, pair_sums, ActK, X8KDot};
use qllama_kernels::simd::Isa;

const TOL: f64 = 1e-5;

/// Byte patterns for every field of a super-block.
#[derive(Clone, Copy, Debug)]
enum Fill {
    Random,
    /// All 0xFF: every nibble 15, every scale and min 63.
    Ones,
    Zero,
}

fn bytes<const N: usize>(rng: &mut Rng, fill: Fill) -> [u8; N] {
    std::array::from_fn(|_| match fill {
        Fill::Random => rng.next_u64() as u8,
        Fill::Ones => 0xFF,
        Fill::Zero => 0,
    })
}

fn scale(rng: &mut Rng) -> f16 {
    f16::from_f64((rng.uniform() * 2.0 - 1.0) * 2f64.powi((rng.next_u64() % 8) as i32 - 8))
}

fn q4k(rng: &mut Rng, fill: Fill) -> BlockQ4K {
    BlockQ4K { d: scale(rng), dmin: scale(rng), scales: bytes(rng, fill), qs: bytes(rng, fill) }
}

/// `Ones` gives levels of 31, the most the 16-bit sums must hold.
fn q5k(rng: &mut Rng, fill: Fill) -> BlockQ5K {
    BlockQ5K { d: scale(rng), dmin: scale(rng), scales: bytes(rng, fill), qh: bytes(rng, fill), qs: bytes(rng, fill) }
}

/// `Ones` gives levels of 63 and scales of -1; the scale bytes also take
/// -128 and 127 at random.
fn q6k(rng: &mut Rng, fill: Fill) -> BlockQ6K {
    BlockQ6K {
        ql: bytes(rng, fill),
        qh: bytes(rng, fill),
        scales: bytes::<16>(rng, fill).map(|b| b as i8),
        d: scale(rng),
    }
}

/// Activations as the quantizer writes them (-127..=127; `Ones` gives the
/// largest magnitude of either sign), with consistent `bsums`.
fn q8k(rng: &mut Rng, fill: Fill) -> BlockQ8K {
    let qs: [i8; 256] = std::array::from_fn(|_| match fill {
        Fill::Random => (rng.next_u64() as i8).max(-127),
        Fill::Ones => [127, -127][(rng.next_u64() % 2) as usize],
        Fill::Zero => 0,
    });
    let bsums = std::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
    BlockQ8K { d: scale(rng).to_f32(), qs, bsums }
}

#[test]
fn scales_pack_and_unpack() {
    let mut rng = Rng::new(1);
    for _ in 0..50 {
        let v: [u8; 128] = std::array::from_fn(|_| (rng.next_u64() % 64) as u8);
        assert_eq!(K4Scales::unpack(&K4Scales::pack(&v)), v);
    }
}

#[test]
fn interleaving_is_the_documented_permutation() {
    let mut rng = Rng::new(3);
    let rows: [BlockQ4K; ROWS] = std::array::from_fn(|_| q4k(&mut rng, Fill::Random));
    let x = BlockQ4Kx8::from_rows(std::array::from_fn(|j| &rows[j]));
    let v = K4Scales::unpack(&x.scales);
    for (j, row) in rows.iter().enumerate() {
        assert_eq!((x.d[j], x.dmin[j]), (row.d, row.dmin));
        let (sc, m) = row.scales_mins();
        for s in 0..8 {
            let (at_sc, at_m) = K4Scales::at(s, j);
            assert_eq!((v[at_sc] as i32, v[at_m] as i32), (sc[s], m[s]), "row {j} sub-block {s}");
        }
        for i in 0..128 {
            assert_eq!(x.qs[(i / 4 * ROWS + j) * 4 + i % 4], row.qs[i], "row {j} byte {i}");
        }
    }
    assert_eq!(x.to_rows(), rows);
    // The documented places of the scales: sub-blocks side by side, mins
    // in pairs.
    assert_eq!(K4Scales::at(3, 5), (29, 64 + 16 + 10 + 1));

    // Q5_K: Q4_K's places, and the fifth bits chunked the same way, so that
    // weight `32 s + 4 c + k` finds its bit in bit `s` of chunk `c`.
    let rows: [BlockQ5K; ROWS] = std::array::from_fn(|_| q5k(&mut rng, Fill::Random));
    let x = BlockQ5Kx8::from_rows(std::array::from_fn(|j| &rows[j]));
    let v = K4Scales::unpack(&x.scales);
    for (j, row) in rows.iter().enumerate() {
        assert_eq!((x.d[j], x.dmin[j]), (row.d, row.dmin));
        let (sc, m) = row.scales_mins();
        for s in 0..8 {
            let (at_sc, at_m) = K4Scales::at(s, j);
            assert_eq!((v[at_sc] as i32, v[at_m] as i32), (sc[s], m[s]), "row {j} sub-block {s}");
        }
        for i in 0..128 {
            assert_eq!(x.qs[(i / 4 * ROWS + j) * 4 + i % 4], row.qs[i], "row {j} qs byte {i}");
        }
        for i in 0..32 {
            assert_eq!(x.qh[(i / 4 * ROWS + j) * 4 + i % 4], row.qh[i], "row {j} qh byte {i}");
        }
        for (e, &want) in row.ints().iter().enumerate() {
            let (s, c, k) = (e / 32, e % 32 / 4, e % 4);
            let nibble = x.qs[((8 * (s / 2) + c) * ROWS + j) * 4 + k] >> (4 * (s % 2)) & 0xF;
            let bit = x.qh[(c * ROWS + j) * 4 + k] >> s & 1;
            assert_eq!((nibble | bit << 4) as i8, want, "row {j} weight {e}");
        }
    }
    assert_eq!(x.to_rows(), rows);

    let rows: [BlockQ6K; ROWS] = std::array::from_fn(|_| q6k(&mut rng, Fill::Random));
    let x = BlockQ6Kx8::from_rows(std::array::from_fn(|j| &rows[j]));
    for (j, row) in rows.iter().enumerate() {
        assert_eq!(x.d[j], row.d);
        for s in 0..16 {
            assert_eq!(x.scales[16 * (s / 2) + 2 * j + s % 2], row.scales[s], "row {j} sub-block {s}");
        }
        for i in 0..128 {
            assert_eq!(x.ql[(i / 4 * ROWS + j) * 4 + i % 4], row.ql[i], "row {j} ql byte {i}");
        }
        for i in 0..64 {
            assert_eq!(x.qh[(i / 4 * ROWS + j) * 4 + i % 4], row.qh[i], "row {j} qh byte {i}");
        }
    }
    assert_eq!(x.to_rows(), rows);
}

fn check<X: X8KDot, const T: usize>(
    make: fn(&mut Rng, Fill) -> X::Source,
    one_row: fn(&[X::Source], &[BlockQ8K]) -> f32,
) {
    let mut rng = Rng::new(7 + T as u64);
    for nb in [1, 2, 3, 16] {
        for (wf, yf) in [
            (Fill::Random, Fill::Random),
            (Fill::Ones, Fill::Ones),
            (Fill::Ones, Fill::Random),
            (Fill::Zero, Fill::Ones),
        ] {
            let rows: Vec<Vec<X::Source>> = (0..ROWS).map(|_| (0..nb).map(|_| make(&mut rng, wf)).collect()).collect();
            let w: Vec<X> = (0..nb).map(|b| X::from_rows(std::array::from_fn(|j| &rows[j][b]))).collect();
            // The last token follows `yf`, the others are random.
            let y: Vec<BlockQ8K> =
                (0..T * nb).map(|i| q8k(&mut rng, if i / nb == T - 1 { yf } else { Fill::Random })).collect();
            let pairs: Vec<[i32; 4]> = y.iter().map(pair_sums).collect();
            let act = ActK { q: &y, pairs: &pairs };

            let mut reference = [[0.0; ROWS]; T];
            x8k::reference::<X, T>(&w, act, &mut reference);
            for t in 0..T {
                for j in 0..ROWS {
                    let want = one_row(&rows[j], &y[t * nb..(t + 1) * nb]);
                    assert_eq!(reference[t][j].to_bits(), want.to_bits(), "nb={nb} row {j} token {t}");
                }
            }
            for isa in Isa::available() {
                let mut got = [[0.0; ROWS]; T];
                x8k::gemm::<X, T>(isa, &w, act, &mut got);
                for t in 0..T {
                    for j in 0..ROWS {
                        let err = (got[t][j] as f64 - reference[t][j] as f64).abs();
                        let mag = k_magnitude(&rows[j], &y[t * nb..(t + 1) * nb]);
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
            // the one-group kernel twice), the second group from another
            // draw against the same activations.
            let rows2: Vec<Vec<X::Source>> = (0..ROWS).map(|_| (0..nb).map(|_| make(&mut rng, wf)).collect()).collect();
            let w2: Vec<X> = (0..nb).map(|b| X::from_rows(std::array::from_fn(|j| &rows2[j][b]))).collect();
            let mut reference2 = [[0.0; ROWS]; T];
            x8k::reference::<X, T>(&w2, act, &mut reference2);
            for isa in Isa::available() {
                let mut got = [[0.0; x8::ROWS2]; T];
                x8k::gemm2::<X, T>(isa, [&w, &w2], act, &mut got);
                for t in 0..T {
                    for (g, (rows, want)) in [(&rows, &reference), (&rows2, &reference2)].into_iter().enumerate() {
                        for j in 0..ROWS {
                            let (got, want) = (got[t][g * ROWS + j], want[t][j]);
                            let mag = k_magnitude(&rows[j], &y[t * nb..(t + 1) * nb]);
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

/// [`check`] for every tile length the matmul uses.
fn check_tiles<X: X8KDot>(make: fn(&mut Rng, Fill) -> X::Source, one_row: fn(&[X::Source], &[BlockQ8K]) -> f32) {
    check::<X, 1>(make, one_row);
    check::<X, 2>(make, one_row);
    check::<X, 3>(make, one_row);
    check::<X, 4>(make, one_row);
    check::<X, 5>(make, one_row);
    check::<X, 8>(make, one_row);
}

#[test]
fn q4_kx8_kernels_match_the_reference() {
    check_tiles::<BlockQ4Kx8>(q4k, scalar::vec_dot_q4_k_q8_k);
}

#[test]
fn q5_kx8_kernels_match_the_reference() {
    check_tiles::<BlockQ5Kx8>(q5k, scalar::vec_dot_q5_k_q8_k);
}

#[test]
fn q6_kx8_kernels_match_the_reference() {
    check_tiles::<BlockQ6Kx8>(q6k, scalar::vec_dot_q6_k_q8_k);
}

/// The pair sums are the 32-weight sub-block sums, two to a word.
#[test]
fn pair_sums_are_sub_block_sums() {
    let mut rng = Rng::new(9);
    let y = q8k(&mut rng, Fill::Ones);
    let p = pair_sums(&y);
    for s in 0..8 {
        let want: i32 = y.qs[32 * s..32 * s + 32].iter().map(|&q| q as i32).sum();
        let got = (p[s / 2] >> (16 * (s % 2))) as i16;
        assert_eq!(got as i32, want, "sub-block {s}");
    }
}
