//! The K-quants (Q2_K … Q6_K, Q8_K) against ggml (fixtures from
//! tools/gen_kquant_fixtures.py): quantized bytes against ggml's C
//! `quantize_row_q*_K_ref`, dequantized values against gguf-py bit for bit,
//! the scalar dots against ggml's generic C dots, and every instruction
//! set's dot against the scalar one and an f64 reference.

mod common;

use common::{dequantize, f32s, Aligned, Rng};
use qllama_kernels::formats::{cast_blocks, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, GgmlType};
use qllama_kernels::simd::scalar::SuperBlock;
use qllama_kernels::simd::Isa;
use qllama_kernels::GgmlDType;
use std::path::PathBuf;

const QK_K: usize = 256;
const WEIGHTS: [GgmlDType; 5] = [GgmlDType::Q2K, GgmlDType::Q3K, GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K];

struct Fixture {
    dtype: GgmlDType,
    input: Vec<f32>,
    /// ggml's `quantize_row_*_ref` bytes of `input`.
    quant: Vec<u8>,
    /// gguf-py's dequantization of `quant` (ggml's for Q8_K).
    dequant: Vec<f32>,
    /// ggml-quantized Q8_K activations (weight types only).
    act: Vec<u8>,
    /// ggml's generic dot of each super-block of `quant` with `act`, then
    /// of the whole row.
    dots: Vec<f32>,
    cases: Vec<(String, usize, usize)>,
}

impl Fixture {
    /// Which case value `i` belongs to, for failure messages.
    fn case_of(&self, i: usize) -> &str {
        common::case_of(&self.cases, i)
    }
}

fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(dir.join("k_index.txt")).expect("fixture index");
    let index: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let mut out = Vec::new();
    for line in index.iter().filter(|l| l[0] == "type") {
        let dtype = GgmlDType::from_name(line[1]).unwrap_or_else(|| panic!("unknown type {}", line[1]));
        let n: usize = line[3].parse().unwrap();
        let qlen: usize = line[4].parse().unwrap();
        let alen: usize = line[5].parse().unwrap();
        let nb = n / QK_K;
        let dlen = if alen > 0 { 4 * (nb + 1) } else { 0 };
        let blob = std::fs::read(dir.join(line[2])).expect("fixture file");
        assert_eq!(blob.len(), 8 * n + qlen + alen + dlen, "{}: fixture size", line[2]);
        assert_eq!(qlen, dtype.row_bytes(n).unwrap(), "{dtype}: quantized size");
        let mut at = 0;
        let mut take = |len: usize| {
            at += len;
            &blob[at - len..at]
        };
        out.push(Fixture {
            dtype,
            input: f32s(take(4 * n)),
            quant: take(qlen).to_vec(),
            dequant: f32s(take(4 * n)),
            act: take(alen).to_vec(),
            dots: f32s(take(dlen)),
            cases: index
                .iter()
                .filter(|l| l[0] == "case" && l[1] == line[1])
                .map(|l| (l[2].to_string(), l[3].parse().unwrap(), l[4].parse().unwrap()))
                .collect(),
        });
    }
    let names: Vec<_> = out.iter().map(|f| f.dtype).collect();
    for want in WEIGHTS.into_iter().chain([GgmlDType::Q8K]) {
        assert!(names.contains(&want), "no fixture for {want}");
    }
    out
}

/// Byte for byte against ggml's `quantize_row_q*_K_ref`, every super-block.
#[test]
fn quantize_matches_ggml_c_bytes() {
    for f in fixtures() {
        let ours = Aligned::quantize(f.dtype, &f.input);
        let ts = f.dtype.type_size();
        for (b, (a, g)) in ours.as_ref().chunks(ts).zip(f.quant.chunks(ts)).enumerate() {
            assert!(a == g, "{} super-block {b} (case {}): ours {a:02x?}\nggml {g:02x?}", f.dtype, f.case_of(b * QK_K));
        }
    }
}

#[test]
fn dequantize_matches_gguf() {
    for f in fixtures() {
        let quant = Aligned::from_bytes(&f.quant);
        let ours = dequantize(f.dtype, quant.as_ref(), f.input.len());
        for (i, (a, g)) in ours.iter().zip(&f.dequant).enumerate() {
            // Bit-exact; NaNs (from 0 * inf where d overflowed) only as NaN.
            assert!(
                a.to_bits() == g.to_bits() || (a.is_nan() && g.is_nan()),
                "{} value {i} (case {}): ours {a:e} ({:#x}) gguf {g:e} ({:#x})",
                f.dtype,
                f.case_of(i),
                a.to_bits(),
                g.to_bits()
            );
        }
    }
}

/// The fixtures must exercise what they claim to.
#[test]
fn fixtures_cover_edge_cases() {
    for f in fixtures() {
        let blocks = || f.input.chunks(QK_K);
        let t = f.dtype;
        assert!(blocks().any(|b| b.iter().all(|&v| v == 0.0)), "{t}: no zero super-block");
        assert!(blocks().any(|b| b.chunks(16).any(|s| s.iter().all(|&v| v == 0.0)) && b.iter().any(|&v| v != 0.0)));
        assert!(f.input.iter().any(|v| v.is_subnormal()), "{t}: no subnormal");
        assert!(f.input.iter().any(|v| v.abs() > 0.0 && v.abs() < 1e-15), "{t}: nothing below ggml's epsilon");
        assert!(f.input.iter().any(|v| v.abs() >= 1e30), "{t}: no huge value");
        let neg_max = |b: &[f32]| b.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m }) < 0.0;
        assert!(blocks().any(neg_max), "{t}: no super-block with a negative maximum");
        assert!(blocks().any(|b| b.iter().all(|&v| v > 0.0)), "{t}: no all-positive super-block");
        // An outlier: one value at least 100 times the block's typical size.
        let outlier = |b: &[f32]| {
            let mut a: Vec<f32> = b.iter().map(|v| v.abs()).collect();
            a.sort_by(f32::total_cmp);
            a[QK_K - 1] > 100.0 * a[QK_K / 2]
        };
        assert!(blocks().any(outlier), "{t}: no outlier");
        assert!(f.cases.iter().any(|c| c.0 == "normal" && c.2 >= 4 * QK_K), "{t}: too little random data");
        if t != GgmlDType::Q8K {
            assert_eq!(f.dots.len(), f.input.len() / QK_K + 1);
            assert!(f.dots.iter().filter(|d| d.is_finite() && **d != 0.0).count() > 10, "{t}: trivial dots");
        }
    }
}

/// Q8_K by its definition, independently of ggml: `d = max / -127` from
/// the signed maximum, `q = round-half-even(x / d)` capped at 127, and the
/// sums of each 16 `q`.
#[test]
fn q8_k_by_definition() {
    let mut rng = Rng::new(8);
    let mut x = rng.normals(QK_K * 8, 2.0);
    x[300] = -50.0;
    x[QK_K * 3..QK_K * 4].fill(0.0);
    let q = Aligned::quantize(GgmlDType::Q8K, &x);
    let blocks: &[BlockQ8K] = cast_blocks(q.as_ref());
    for (b, xb) in blocks.iter().zip(x.chunks(QK_K)) {
        let max = xb.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        if max == 0.0 {
            assert_eq!((b.d, b.qs, b.bsums), (0.0, [0; QK_K], [0; 16]));
            continue;
        }
        let iscale = -127.0 / max;
        assert_eq!(b.d, 1.0 / iscale);
        for (&q, &v) in b.qs.iter().zip(xb) {
            assert_eq!(q as f32, (iscale * v).round_ties_even().min(127.0), "{v}");
        }
        for (j, &s) in b.bsums.iter().enumerate() {
            assert_eq!(s as i32, b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum::<i32>());
        }
    }
}

/// The K entries of the type table.
#[test]
fn type_table() {
    for t in WEIGHTS {
        assert!(t.is_quantized() && t.can_quantize() && t.can_dequantize() && t.can_dot(), "{t}");
        assert_eq!((t.block_size(), t.vec_dot_type()), (QK_K, GgmlDType::Q8K), "{t}");
    }
    let q8k = GgmlDType::Q8K;
    assert!(q8k.can_quantize() && q8k.can_dequantize() && !q8k.can_dot(), "Q8_K is activation-only");
    let sizes: Vec<_> = WEIGHTS.iter().chain([&q8k]).map(|t| t.type_size()).collect();
    assert_eq!(sizes, [84, 110, 144, 176, 210, 292]);
    assert_eq!(GgmlDType::from_name("Q4_K"), Some(GgmlDType::Q4K));
    assert_eq!(GgmlDType::Q6K.name(), "q6_K");
}

// ---- dot products ----

/// The library's integer view of a weight super-block, from raw bytes.
fn view(t: GgmlDType, b: &[u8]) -> ([i8; QK_K], [i32; 16], [i32; 16], f32, f32, usize) {
    fn get<T: SuperBlock + GgmlType>(b: &[u8]) -> ([i8; QK_K], [i32; 16], [i32; 16], f32, f32, usize) {
        let blk = &cast_blocks::<T>(b)[0];
        let (sc, m) = blk.scales_mins();
        (blk.ints(), sc, m, blk.d(), blk.dmin(), T::SUB)
    }
    match t {
        GgmlDType::Q2K => get::<BlockQ2K>(b),
        GgmlDType::Q3K => get::<BlockQ3K>(b),
        GgmlDType::Q4K => get::<BlockQ4K>(b),
        GgmlDType::Q5K => get::<BlockQ5K>(b),
        GgmlDType::Q6K => get::<BlockQ6K>(b),
        _ => unreachable!(),
    }
}

/// f64 dot of the dequantized weights with the dequantized activations, and
/// a bound on what f32 arithmetic may lose computing it super-block by
/// super-block in any order: a few roundings per term (d·dy, the lanes, the
/// min term) and one per running-sum step, relative to the sum of |terms|.
fn reference_dot(t: GgmlDType, w: &[u8], a: &[u8]) -> (f64, f64) {
    let (wts, nb) = (t.type_size(), w.len() / t.type_size());
    let wd = dequantize(t, w, nb * QK_K);
    let ad = dequantize(GgmlDType::Q8K, a, nb * QK_K);
    let dot: f64 = wd.iter().zip(&ad).map(|(&x, &y)| x as f64 * y as f64).sum();
    let mut mag = 0.0f64;
    for (wb, ab) in w.chunks(wts).zip(cast_blocks::<BlockQ8K>(a)) {
        let (q, sc, m, d, dmin, sub) = view(t, wb);
        let dy = ab.d as f64;
        let sumi: f64 = (0..QK_K).map(|e| (sc[e / sub] as f64 * q[e] as f64 * ab.qs[e] as f64).abs()).sum();
        let summs: f64 = (0..16).map(|j| (ab.bsums[j] as f64 * m[j * 16 / sub] as f64).abs()).sum();
        mag += (d as f64 * dy).abs() * sumi + (dmin as f64 * dy).abs() * summs;
    }
    let eps = 2f64.powi(-24);
    (dot, (nb as f64 + 40.0) * 2.0 * eps * mag + f64::MIN_POSITIVE)
}

fn check_dot(t: GgmlDType, w: &[u8], a: &[u8], what: &str) {
    let (w, a) = (Aligned::from_bytes(w), Aligned::from_bytes(a));
    let (want, tol) = reference_dot(t, w.as_ref(), a.as_ref());
    let scalar = t.vec_dot(Isa::Scalar, w.as_ref(), a.as_ref());
    for isa in Isa::available() {
        let got = t.vec_dot(isa, w.as_ref(), a.as_ref()) as f64;
        assert!(
            (got - want).abs() <= tol,
            "{t} on {} ({what}): got {got:e}, f64 reference {want:e}, tolerance {tol:e}, scalar {scalar:e}",
            isa.name()
        );
    }
}

/// Our scalar dot against ggml's generic C dot on the same bytes, block by
/// block and over the whole row: within the f32 rounding bound, and in fact
/// bit for bit (the reference follows ggml's operation order, and the one
/// FMA its -march=native build makes in the Q2_K dot).
#[test]
fn scalar_dot_matches_ggml_generic() {
    for f in fixtures().into_iter().filter(|f| f.dtype != GgmlDType::Q8K) {
        let t = f.dtype;
        let (w, a) = (Aligned::from_bytes(&f.quant), Aligned::from_bytes(&f.act));
        let (wts, ats, nb) = (t.type_size(), GgmlDType::Q8K.type_size(), f.input.len() / QK_K);
        let (mut exact, mut finite) = (0, 0);
        for b in 0..=nb {
            let (wr, ar) =
                if b < nb { (b * wts..(b + 1) * wts, b * ats..(b + 1) * ats) } else { (0..nb * wts, 0..nb * ats) };
            let (wb, ab) = (Aligned::from_bytes(&w.as_ref()[wr]), Aligned::from_bytes(&a.as_ref()[ar]));
            let ours = t.vec_dot(Isa::Scalar, wb.as_ref(), ab.as_ref());
            let ggml = f.dots[b];
            let what =
                if b < nb { format!("super-block {b} (case {})", f.case_of(b * QK_K)) } else { "whole row".into() };
            if !ggml.is_finite() {
                // d overflowed to inf in the "huge" case.
                assert!(
                    ours.to_bits() == ggml.to_bits() || (ours.is_nan() && ggml.is_nan()),
                    "{t} {what}: {ours} vs {ggml}"
                );
                continue;
            }
            finite += 1;
            exact += (ours.to_bits() == ggml.to_bits()) as usize;
            let (_, tol) = reference_dot(t, wb.as_ref(), ab.as_ref());
            assert!(((ours - ggml) as f64).abs() <= tol, "{t} {what}: ours {ours:e} ggml {ggml:e} tolerance {tol:e}");
        }
        assert_eq!(exact, finite, "{t}: only {exact} of {finite} finite dots bit-exact with ggml's generic");
    }
}

#[test]
fn vec_dot_matches_f64_reference_on_quantized_data() {
    let mut rng = Rng::new(2025);
    for t in WEIGHTS {
        for n_blocks in [1, 2, 3, 11, 16] {
            for (ws, xs) in [(1.0, 1.0), (0.02, 3.0), (100.0, 1e-3)] {
                let w = rng.normals(QK_K * n_blocks, ws);
                let mut x = rng.normals(QK_K * n_blocks, xs);
                for v in x.iter_mut().step_by(37) {
                    *v *= 20.0;
                }
                let wq = Aligned::quantize(t, &w);
                let xq = Aligned::quantize(GgmlDType::Q8K, &x);
                check_dot(t, wq.as_ref(), xq.as_ref(), &format!("{n_blocks} blocks, scales {ws} {xs}"));
            }
        }
    }
}

/// Blocks a quantizer would not make but a file may hold: random bytes
/// (any scales, mins and levels, negative Q6_K scales), all bits set, all
/// clear; activations with every q in -127..=127 (as the quantizer writes)
/// and consistent bsums.
#[test]
fn vec_dot_matches_f64_reference_on_adversarial_blocks() {
    let mut rng = Rng::new(77);
    let f16_bytes = |rng: &mut Rng| {
        let e = -14.0 + 18.0 * rng.uniform() as f32;
        let s = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
        half::f16::from_f32(s * 2f32.powf(e)).to_le_bytes()
    };
    for t in WEIGHTS {
        let ts = t.type_size();
        // Offsets of d (and dmin) in each layout.
        let scale_at: &[usize] = match t {
            GgmlDType::Q2K => &[80, 82],
            GgmlDType::Q3K => &[108],
            GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
            _ => &[208],
        };
        for n_blocks in [1, 4, 9] {
            for pattern in ["random", "all_ones", "all_zero_bits"] {
                let mut w = rng.bytes(ts * n_blocks);
                for b in w.chunks_mut(ts) {
                    match pattern {
                        "all_ones" => b.fill(0xFF),
                        "all_zero_bits" => b.fill(0),
                        _ => {}
                    }
                    for &o in scale_at {
                        b[o..o + 2].copy_from_slice(&f16_bytes(&mut rng));
                    }
                }
                let mut a = Aligned::zeroed(292 * n_blocks);
                let blocks = qllama_kernels::formats::cast_blocks_mut::<BlockQ8K>(a.as_mut());
                for blk in blocks.iter_mut() {
                    blk.d = (rng.uniform() as f32 - 0.5) * 0.1;
                    for q in blk.qs.iter_mut() {
                        *q = if pattern == "all_ones" { 127 } else { (rng.next_u64() % 255) as i8 as i32 as i8 };
                        if *q == -128 {
                            *q = -127;
                        }
                    }
                    blk.bsums = std::array::from_fn(|j| blk.qs[16 * j..16 * j + 16].iter().map(|&q| q as i16).sum());
                }
                check_dot(t, &w, a.as_ref(), &format!("{n_blocks} {pattern} blocks"));
            }
        }
    }
}

/// Every instruction set against the scalar reference on the fixtures'
/// blocks (real quantizer output, edge cases included) where finite.
#[test]
fn vec_dot_isas_agree_on_fixtures() {
    for f in fixtures().into_iter().filter(|f| f.dtype != GgmlDType::Q8K) {
        let t = f.dtype;
        let (wts, ats) = (t.type_size(), GgmlDType::Q8K.type_size());
        for (b, (wb, ab)) in f.quant.chunks(wts).zip(f.act.chunks(ats)).enumerate() {
            if !f.dots[b].is_finite() {
                continue;
            }
            check_dot(t, wb, ab, &format!("fixture super-block {b} (case {})", f.case_of(b * QK_K)));
        }
    }
}

/// Round-trip error on normal data, relative to its standard deviation:
/// each format must land in its known band (ggml's own numbers for these
/// quantizers), so a quantizer that is exact on the fixtures but broken on
/// other data cannot pass.
#[test]
fn round_trip_rmse_in_known_band() {
    let mut rng = Rng::new(3);
    let x = rng.normals(QK_K * 64, 1.0);
    for (t, lo, hi) in [
        (GgmlDType::Q2K, 0.15, 0.35),
        (GgmlDType::Q3K, 0.08, 0.20),
        (GgmlDType::Q4K, 0.04, 0.11),
        (GgmlDType::Q5K, 0.02, 0.055),
        (GgmlDType::Q6K, 0.008, 0.03),
        (GgmlDType::Q8K, 0.002, 0.01),
    ] {
        let q = Aligned::quantize(t, &x);
        let y = dequantize(t, q.as_ref(), x.len());
        let mse: f64 = x.iter().zip(&y).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>() / x.len() as f64;
        let rmse = mse.sqrt();
        assert!((lo..hi).contains(&rmse), "{t}: RMSE {rmse} outside {lo}..{hi}");
    }
}
