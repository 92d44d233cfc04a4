//! The block formats against ggml's C reference quantizers and gguf-py
//! (fixtures from tools/gen_quant_fixtures.py): quantized bytes and
//! dequantized values bit for bit, Q8_1 against its definition, round-trip error bounds, the type table, and the scalar (and
//! every available SIMD) dot product against an f64 dot of dequantized blocks.

mod common;

use common::{dequantize, f32s, Aligned, Rng, LEGACY};
use qllama_kernels::simd::Isa;
use qllama_kernels::GgmlDType;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Fixture {
    dtype: GgmlDType,
    input: Vec<f32>,
    /// gguf-py's bytes and their dequantization (empty for Q8_1).
    quant: Vec<u8>,
    dequant: Vec<f32>,
    /// ggml's `quantize_row_*_ref` bytes (empty for F16/BF16).
    ggml: Vec<u8>,
    /// (case name, first value, number of values)
    cases: Vec<(String, usize, usize)>,
}

impl Fixture {
    /// Which case value `i` belongs to, for failure messages.
    fn case_of(&self, i: usize) -> &str {
        common::case_of(&self.cases, i)
    }
}

fn index() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(fixture_dir().join("index.txt")).expect("fixture index");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn fixtures() -> Vec<Fixture> {
    let index = index();
    let mut out = Vec::new();
    for line in index.iter().filter(|l| l[0] == "type") {
        let dtype = GgmlDType::from_name(&line[1]).unwrap_or_else(|| panic!("unknown type {}", line[1]));
        let n: usize = line[3].parse().unwrap();
        let qlen: usize = line[4].parse().unwrap();
        let clen: usize = line[5].parse().unwrap();
        let dlen = if qlen > 0 { 4 * n } else { 0 };
        let blob = std::fs::read(fixture_dir().join(&line[2])).expect("fixture file");
        assert_eq!(blob.len(), 4 * n + qlen + dlen + clen, "{}: fixture size", line[2]);
        let cases = index
            .iter()
            .filter(|l| l[0] == "case" && l[1] == line[1])
            .map(|l| (l[2].clone(), l[3].parse().unwrap(), l[4].parse().unwrap()))
            .collect();
        out.push(Fixture {
            dtype,
            input: f32s(&blob[..4 * n]),
            quant: blob[4 * n..4 * n + qlen].to_vec(),
            dequant: f32s(&blob[4 * n + qlen..4 * n + qlen + dlen]),
            ggml: blob[4 * n + qlen + dlen..].to_vec(),
            cases,
        });
    }
    let names: Vec<_> = out.iter().map(|f| f.dtype).collect();
    for want in [GgmlDType::F16, GgmlDType::BF16].into_iter().chain(LEGACY) {
        assert!(names.contains(&want), "no fixture for {want}");
    }
    out
}

/// Compare our quantization of the fixture inputs with `want`, block by
/// block; returns the blocks that differ.
fn mismatched_blocks(f: &Fixture, want: &[u8]) -> Vec<usize> {
    let ours = Aligned::quantize(f.dtype, &f.input);
    assert_eq!(ours.as_ref().len(), want.len(), "{}: quantized size", f.dtype);
    let ts = f.dtype.type_size();
    ours.as_ref().chunks(ts).zip(want.chunks(ts)).enumerate().filter(|(_, (a, g))| a != g).map(|(b, _)| b).collect()
}

fn describe(f: &Fixture, b: usize, want: &[u8]) -> String {
    let (bs, ts) = (f.dtype.block_size(), f.dtype.type_size());
    let ours = Aligned::quantize(f.dtype, &f.input[b * bs..(b + 1) * bs]);
    format!(
        "{} block {b} (case {}): ours {:02x?} want {:02x?}\ninput {:?}",
        f.dtype,
        f.case_of(b * bs),
        ours.as_ref(),
        &want[b * ts..(b + 1) * ts],
        &f.input[b * bs..(b + 1) * bs]
    )
}

/// Byte for byte against ggml's own `quantize_row_*_ref` (Q8_1 included).
#[test]
fn quantize_matches_ggml_c_bytes() {
    let mut checked = 0;
    for f in fixtures().iter().filter(|f| !f.ggml.is_empty()) {
        if let Some(&b) = mismatched_blocks(f, &f.ggml).first() {
            panic!("{}", describe(f, b, &f.ggml));
        }
        checked += 1;
    }
    assert_eq!(checked, LEGACY.len());
}

/// Byte for byte against gguf-py. The one place gguf-py departs from ggml
/// is a Q4_0/Q5_0 block of all -0.0: ggml's `max` starts at +0.0 and stays
/// there, so d = +0/-8 = -0, while numpy picks the first -0.0, giving +0.
/// We follow ggml there (both dequantize to zeros).
#[test]
fn quantize_matches_gguf_bytes() {
    for f in fixtures().iter().filter(|f| !f.quant.is_empty()) {
        for b in mismatched_blocks(f, &f.quant) {
            let bs = f.dtype.block_size();
            let block = &f.input[b * bs..(b + 1) * bs];
            let known = matches!(f.dtype, GgmlDType::Q4_0 | GgmlDType::Q5_0)
                && block.iter().all(|v| v.to_bits() == 0x8000_0000)
                && f.ggml.get(b * f.dtype.type_size()..(b + 1) * f.dtype.type_size())
                    != f.quant.get(b * f.dtype.type_size()..(b + 1) * f.dtype.type_size());
            assert!(known, "{}", describe(f, b, &f.quant));
        }
    }
}

#[test]
fn dequantize_matches_gguf() {
    for f in fixtures().into_iter().filter(|f| !f.quant.is_empty()) {
        let quant = Aligned::from_bytes(&f.quant);
        let ours = dequantize(f.dtype, quant.as_ref(), f.input.len());
        for (i, (a, g)) in ours.iter().zip(&f.dequant).enumerate() {
            // Bit-exact, NaN payloads included; NaNs made by arithmetic
            // (0 * inf in blocks whose f16 scale overflowed) only as NaN.
            let same = a.to_bits() == g.to_bits() || (f.dtype.is_quantized() && a.is_nan() && g.is_nan());
            assert!(
                same,
                "{} value {i} (case {}): ours {a:e} ({:#x}) gguf {g:e} ({:#x})",
                f.dtype,
                f.case_of(i),
                a.to_bits(),
                g.to_bits()
            );
        }
    }
}

/// The fixtures must exercise what they claim to: catches a generator that
/// silently produced only trivial data.
#[test]
fn fixtures_cover_edge_cases() {
    for f in fixtures() {
        if !f.dtype.is_quantized() {
            continue;
        }
        let bs = f.dtype.block_size();
        assert!(f.input.len() % bs == 0);
        let blocks = f.input.chunks(bs);
        assert!(blocks.clone().any(|b| b.iter().all(|&v| v == 0.0)), "{}: no zero block", f.dtype);
        assert!(f.input.iter().any(|v| v.is_subnormal()), "{}: no subnormal", f.dtype);
        assert!(f.input.iter().any(|v| v.abs() >= 1e30), "{}: no huge value", f.dtype);
        let neg_max = |b: &[f32]| {
            let m = b.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            m < 0.0
        };
        assert!(blocks.clone().any(neg_max), "{}: no block with a negative maximum", f.dtype);
        let d_overflow =
            f.ggml.chunks(f.dtype.type_size()).any(|b| half::f16::from_le_bytes([b[0], b[1]]).is_infinite());
        assert!(d_overflow, "{}: no block whose f16 scale overflows", f.dtype);
    }
}

/// Q8_1 is not in gguf-py: it is Q8_0's `d` and `qs` plus
/// `s = f16(sum(qs) * d)`, with `d = amax / 127` in f32 (quantize_row_q8_1_ref).
#[test]
fn q8_1_is_q8_0_plus_sum() {
    let f = fixtures().into_iter().find(|f| f.dtype == GgmlDType::Q8_0).unwrap();
    assert!(!f.quant.is_empty());
    let mut rng = Rng::new(81);
    let mut input = f.input.clone();
    input.extend(rng.normals(32 * 64, 3.0));
    let q8_0 = Aligned::quantize(GgmlDType::Q8_0, &input);
    let q8_1 = Aligned::quantize(GgmlDType::Q8_1, &input);
    assert_eq!(&q8_0.as_ref()[..f.quant.len()], &f.quant[..], "Q8_0 matches gguf first");
    for (i, ((b0, b1), x)) in q8_0.as_ref().chunks(34).zip(q8_1.as_ref().chunks(36)).zip(input.chunks(32)).enumerate() {
        assert_eq!(b0[..2], b1[..2], "block {i}: d");
        assert_eq!(b0[2..], b1[4..], "block {i}: qs");
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let sum: i32 = b1[4..].iter().map(|&q| q as i8 as i32).sum();
        let s = half::f16::from_f32(sum as f32 * d);
        assert_eq!(b1[2..4], s.to_le_bytes(), "block {i}: s for sum {sum}, d {d:e}");
    }
}

/// Error of quantize → dequantize on ordinary data, against each format's
/// step size. The f16 rounding of d (and m) adds up to 2^-11 relative.
#[test]
fn round_trip_error_is_bounded() {
    let mut rng = Rng::new(7);
    for scale in [1e-3, 1.0, 50.0] {
        let x = rng.normals(32 * 256, scale);
        for dtype in LEGACY.into_iter().chain([GgmlDType::F16, GgmlDType::BF16]) {
            let q = Aligned::quantize(dtype, &x);
            let y = dequantize(dtype, q.as_ref(), x.len());
            let bs = dtype.block_size();
            for (b, (xb, yb)) in x.chunks(bs).zip(y.chunks(bs)).enumerate() {
                let amax = xb.iter().fold(0.0f64, |a, &v| a.max(v.abs() as f64));
                let min = xb.iter().fold(f64::MAX, |a, &v| a.min(v as f64));
                let max = xb.iter().fold(f64::MIN, |a, &v| a.max(v as f64));
                let bound = match dtype {
                    // Symmetric: the value opposite in sign to the maximum
                    // may be clamped a whole step away.
                    GgmlDType::Q4_0 => amax / 8.0 + 8.0 * f16_err(amax / 8.0),
                    GgmlDType::Q5_0 => amax / 16.0 + 16.0 * f16_err(amax / 16.0),
                    // Offset: half a step, plus the f16 errors of d and m.
                    GgmlDType::Q4_1 => (max - min) / 30.0 + 15.0 * f16_err((max - min) / 15.0) + f16_err(min),
                    GgmlDType::Q5_1 => (max - min) / 62.0 + 31.0 * f16_err((max - min) / 31.0) + f16_err(min),
                    GgmlDType::Q8_0 | GgmlDType::Q8_1 => amax / 254.0 + 127.0 * f16_err(amax / 127.0),
                    GgmlDType::F16 => f16_err(amax),
                    GgmlDType::BF16 => amax * 2f64.powi(-8),
                    _ => unreachable!(),
                };
                for (j, (&xv, &yv)) in xb.iter().zip(yb).enumerate() {
                    let err = (xv as f64 - yv as f64).abs();
                    assert!(
                        err <= bound * (1.0 + 1e-5),
                        "{dtype} scale {scale} block {b}[{j}]: {xv} -> {yv}, error {err:e} > {bound:e}"
                    );
                }
            }
            // Symmetric formats put the largest magnitude exactly on the
            // extreme level, up to the f16 rounding of d.
            let levels = match dtype {
                GgmlDType::Q4_0 => 8.0,
                GgmlDType::Q5_0 => 16.0,
                GgmlDType::Q8_0 | GgmlDType::Q8_1 => 127.0,
                _ => continue,
            };
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let i = (0..32).fold(0, |bi, i| if xb[i].abs() > xb[bi].abs() { i } else { bi });
                let err = (xb[i] as f64 - yb[i] as f64).abs();
                let bound = levels * f16_err(xb[i].abs() as f64 / levels);
                assert!(err <= bound * (1.0 + 1e-5), "{dtype}: max {} came back as {}", xb[i], yb[i]);
            }
        }
    }
}

/// Largest error of rounding `v` to f16 (half an ulp; 2^-25 among the
/// subnormals), for |v| below f16's maximum.
fn f16_err(v: f64) -> f64 {
    (v.abs() * 2f64.powi(-11)).max(2f64.powi(-25))
}

/// The type table against gguf-py's (ids, block and type sizes), our names,
/// and `row_bytes` refusing partial blocks and overflow.
#[test]
fn type_table() {
    let mut seen = 0;
    for line in index().iter().filter(|l| l[0] == "typeinfo") {
        let t = GgmlDType::from_name(&line[1]).unwrap_or_else(|| panic!("{} missing from the table", line[1]));
        let id: u32 = line[2].parse().unwrap();
        let bs: usize = line[3].parse().unwrap();
        let mut ts: usize = line[4].parse().unwrap();
        if t == GgmlDType::Q8_1 && ts == 40 {
            // gguf-py 0.19 still lists Q8_1 with f32 d and s (40 bytes);
            // ggml-common.h static-asserts 2 * f16 + 32 = 36, as does newer
            // gguf-py. Our block is ggml's.
            ts = 36;
        }
        assert_eq!((t.id(), t.block_size(), t.type_size()), (id, bs, ts), "{t}");
        assert_eq!(GgmlDType::from_id(id), Some(t));
        seen += 1;
    }
    assert_eq!(seen, GgmlDType::ALL.len(), "every type checked against gguf-py");

    for t in GgmlDType::ALL {
        assert_eq!(GgmlDType::from_name(&t.name().to_uppercase()), Some(t));
        assert_eq!(t.to_string(), t.name());
        let (bs, ts) = (t.block_size(), t.type_size());
        assert_eq!(t.row_bytes(0), Some(0));
        assert_eq!(t.row_bytes(bs * 7), Some(ts * 7), "{t}");
        if bs > 1 {
            assert_eq!(t.row_bytes(bs * 7 + 1), None, "{t}: partial block");
            assert_eq!(t.row_bytes(bs - 1), None, "{t}: partial block");
        }
        // Bytes overflow only where a block is bigger than its count of
        // values (the float types); otherwise the largest count fits.
        let n = usize::MAX / bs * bs;
        if ts > bs {
            assert_eq!(t.row_bytes(n), None, "{t}: overflow");
            assert_eq!(t.row_bytes((usize::MAX / ts + 1) * bs), None, "{t}: overflow");
        } else {
            assert_eq!(t.row_bytes(n), Some(n / bs * ts), "{t}");
        }
        assert_eq!(t.bits_per_weight(), 8.0 * ts as f64 / bs as f64);
    }
    let names: Vec<_> = GgmlDType::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
            "q8_K", "bf16"
        ]
    );
    assert_eq!(GgmlDType::from_id(4), None, "ids 4 and 5 (Q4_2, Q4_3) were removed");
    assert_eq!(GgmlDType::from_id(5), None);
    assert_eq!(GgmlDType::from_name("q4_3"), None);
    for t in LEGACY {
        assert!(t.is_quantized() && t.can_quantize() && t.can_dequantize() && t.can_dot());
    }
    let vd = |t: GgmlDType| t.vec_dot_type();
    assert_eq!(
        [vd(GgmlDType::Q4_0), vd(GgmlDType::Q4_1), vd(GgmlDType::Q5_0), vd(GgmlDType::Q5_1), vd(GgmlDType::Q8_0)],
        [GgmlDType::Q8_0, GgmlDType::Q8_1, GgmlDType::Q8_0, GgmlDType::Q8_1, GgmlDType::Q8_0]
    );
    assert!(!GgmlDType::F32.is_quantized() && !GgmlDType::F16.is_quantized() && !GgmlDType::BF16.is_quantized());
}

// ---- dot products ----

/// Per-block view of raw block bytes (ggml layouts), independent of the
/// library's own decoders: returns (d, m, s, values as integers) where the
/// block's values are `d * q + m`, and `s` is Q8_1's stored sum.
fn decode(t: GgmlDType, b: &[u8]) -> (f64, f64, f64, [i32; 32]) {
    let h = |i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f64();
    let nib = |qs: &[u8], i: usize| {
        if i < 16 {
            (qs[i] & 15) as i32
        } else {
            (qs[i - 16] >> 4) as i32
        }
    };
    let hi = |qh: &[u8], i: usize| ((u32::from_le_bytes(qh.try_into().unwrap()) >> i) & 1) as i32;
    match t {
        GgmlDType::Q4_0 => (h(0), 0.0, 0.0, std::array::from_fn(|i| nib(&b[2..], i) - 8)),
        GgmlDType::Q4_1 => (h(0), h(2), 0.0, std::array::from_fn(|i| nib(&b[4..], i))),
        GgmlDType::Q5_0 => (h(0), 0.0, 0.0, std::array::from_fn(|i| (nib(&b[6..], i) | hi(&b[2..6], i) << 4) - 16)),
        GgmlDType::Q5_1 => (h(0), h(2), 0.0, std::array::from_fn(|i| nib(&b[8..], i) | hi(&b[4..8], i) << 4)),
        GgmlDType::Q8_0 => (h(0), 0.0, 0.0, std::array::from_fn(|i| b[2 + i] as i8 as i32)),
        GgmlDType::Q8_1 => (h(0), 0.0, h(2), std::array::from_fn(|i| b[4 + i] as i8 as i32)),
        _ => unreachable!(),
    }
}

/// f64 dot of the dequantized blocks, and a bound on what f32 arithmetic
/// may lose computing it block by block (any summation order): a few
/// roundings per block term plus the running sum's, relative to the sum of
/// |terms|. For offset weights ggml uses the activations' stored `s` in
/// place of `d * sum(q)`; that difference is exact and known, so it is
/// added to the bound rather than hidden.
fn reference_dot(wt: GgmlDType, w: &[u8], a: &[u8]) -> (f64, f64) {
    let at = wt.vec_dot_type();
    let (wts, ats) = (wt.type_size(), at.type_size());
    let nb = w.len() / wts;
    let (mut dot, mut mag, mut s_err) = (0.0f64, 0.0f64, 0.0f64);
    for (wb, ab) in w.chunks(wts).zip(a.chunks(ats)) {
        let (dw, m, _, qw) = decode(wt, wb);
        let (da, _, s, qa) = decode(at, ab);
        let mut sum_wa = 0.0;
        for i in 0..32 {
            sum_wa += (dw * qw[i] as f64 + m) * (da * qa[i] as f64);
        }
        dot += sum_wa;
        let sumi: i64 = qw.iter().zip(&qa).map(|(&x, &y)| x as i64 * y as i64).sum();
        mag += (dw * da * sumi as f64).abs() + (m * s).abs();
        if m != 0.0 {
            let sum_qa: i64 = qa.iter().map(|&q| q as i64).sum();
            s_err += (m * (s - da * sum_qa as f64)).abs();
        }
    }
    let eps = 2f64.powi(-24);
    (dot, (nb as f64 + 40.0) * 2.0 * eps * mag + s_err * (1.0 + 1e-9) + f64::MIN_POSITIVE)
}

fn check_dot(wt: GgmlDType, w: &[u8], a: &[u8], what: &str) {
    let w = Aligned::from_bytes(w);
    let a = Aligned::from_bytes(a);
    let (want, tol) = reference_dot(wt, w.as_ref(), a.as_ref());
    for isa in Isa::available() {
        let got = wt.vec_dot(isa, w.as_ref(), a.as_ref()) as f64;
        assert!(
            (got - want).abs() <= tol,
            "{wt} x {} on {} ({what}): got {got:e}, f64 reference {want:e}, tolerance {tol:e}",
            wt.vec_dot_type(),
            isa.name()
        );
    }
}

#[test]
fn vec_dot_matches_f64_reference_on_random_data() {
    let mut rng = Rng::new(2024);
    for wt in LEGACY {
        for n_blocks in [1, 2, 3, 7, 8, 16, 33, 128] {
            for (ws, xs) in [(1.0, 1.0), (0.02, 3.0), (100.0, 1e-3)] {
                let w = rng.normals(32 * n_blocks, ws);
                let x = rng.normals(32 * n_blocks, xs);
                let wq = Aligned::quantize(wt, &w);
                let xq = Aligned::quantize(wt.vec_dot_type(), &x);
                check_dot(wt, wq.as_ref(), xq.as_ref(), &format!("{n_blocks} random blocks, scales {ws} {xs}"));
            }
        }
    }
}

/// Blocks a quantizer would not make but a file may hold: random bytes
/// (Q8 values of -128, mixed-sign scales, any nibbles), extreme values
/// everywhere, and offset blocks whose `m` dominates.
#[test]
fn vec_dot_matches_f64_reference_on_adversarial_blocks() {
    let mut rng = Rng::new(99);
    // A finite f16 with the given exponent range, random sign and mantissa.
    let scale = |rng: &mut Rng, lo: f32, hi: f32| {
        let e = lo + (hi - lo) * rng.uniform() as f32;
        let s = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
        half::f16::from_f32(s * 2f32.powf(e)).to_le_bytes()
    };
    for wt in LEGACY {
        let at = wt.vec_dot_type();
        let (wts, ats) = (wt.type_size(), at.type_size());
        for n_blocks in [1, 5, 32, 67] {
            for pattern in ["random", "all_ones", "all_zero_bits", "max_m"] {
                let mut w = rng.bytes(wts * n_blocks);
                let mut a = rng.bytes(ats * n_blocks);
                for b in w.chunks_mut(wts) {
                    match pattern {
                        "all_ones" => b.fill(0xFF),
                        "all_zero_bits" => b.fill(0),
                        _ => {}
                    }
                    b[..2].copy_from_slice(&scale(&mut rng, -12.0, 4.0));
                    if matches!(wt, GgmlDType::Q4_1 | GgmlDType::Q5_1) {
                        let (lo, hi) = if pattern == "max_m" { (8.0, 14.0) } else { (-12.0, 4.0) };
                        b[2..4].copy_from_slice(&scale(&mut rng, lo, hi));
                    }
                }
                for b in a.chunks_mut(ats) {
                    if pattern == "all_ones" {
                        b.fill(0xFF); // -1 everywhere
                    }
                    // Activations come from our quantizer, which never makes
                    // -128 (ggml's SIMD sign tricks rely on that); weights
                    // from a file may hold it, and are left as they are.
                    for q in &mut b[ats - 32..] {
                        if *q == 0x80 {
                            *q = 0x81;
                        }
                    }
                    b[..2].copy_from_slice(&scale(&mut rng, -12.0, 4.0));
                    if at == GgmlDType::Q8_1 {
                        // A consistent `s` (as the quantizer writes it): d * sum(q).
                        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                        let sum: i32 = b[4..].iter().map(|&q| q as i8 as i32).sum();
                        b[2..4].copy_from_slice(&half::f16::from_f32(d * sum as f32).to_le_bytes());
                    }
                }
                check_dot(wt, &w, &a, &format!("{n_blocks} {pattern} blocks"));
            }
        }
        // Extremes a quantizer does produce: every weight at the top or
        // bottom level against activations at ±127.
        for (wv, xv) in [(1.0f32, 1.0f32), (-1.0, 1.0), (1.0, -1.0)] {
            let mut w = vec![wv; 32 * 9];
            w[0] = -wv * 0.999; // keeps offset formats' range non-trivial
            let x = vec![xv; 32 * 9];
            let wq = Aligned::quantize(wt, &w);
            let xq = Aligned::quantize(at, &x);
            check_dot(wt, wq.as_ref(), xq.as_ref(), &format!("constant {wv} x {xv}"));
        }
    }
}

/// The f64 reference itself must agree with the library's dequantizer
/// (it decodes bytes on its own, so this checks both decoders).
#[test]
fn reference_decoder_agrees_with_dequantize() {
    let mut rng = Rng::new(5);
    for t in LEGACY {
        let x = rng.normals(32 * 16, 2.0);
        let q = Aligned::quantize(t, &x);
        let y = dequantize(t, q.as_ref(), x.len());
        for (b, (qb, yb)) in q.as_ref().chunks(t.type_size()).zip(y.chunks(32)).enumerate() {
            let (d, m, _, qs) = decode(t, qb);
            for i in 0..32 {
                let want = qs[i] as f64 * d + m;
                let tol = (qs[i] as f64 * d).abs().max(m.abs()) * 1e-6;
                assert!((want - yb[i] as f64).abs() <= tol, "{t} block {b}[{i}]: {want} vs {}", yb[i]);
            }
        }
    }
}
