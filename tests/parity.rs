//! Parity with Hugging Face transformers on tiny random Llama checkpoints
//! (tests/fixtures/parity/<case>/, made by tools/gen_parity_fixtures.py):
//! MHA with an odd vocabulary, GQA 4:1 with rope theta 500000 and tied
//! embeddings, MQA with three layers and linear rope scaling.
//!
//! Each checkpoint is converted with `qllama convert` (the library function)
//! and run through our decoder; transformers' float32 logits at every
//! position of prompts of 1, 7 and 64 tokens are the reference.

use qllama::convert::{convert, ConvertOptions, OutType};
use qllama::model::{BatchToken, KvType, LogitRows, Model};
use std::path::{Path, PathBuf};

const PROMPT_LENGTHS: [usize; 3] = [1, 7, 64];

struct Expected {
    tokens: Vec<u32>,
    /// [n, vocab], row-major.
    logits: Vec<f32>,
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(case)
}

fn expected(case: &str, n: usize) -> Expected {
    let bytes = std::fs::read(fixture(case).join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tokens = st.tensor(&format!("tokens_{n}")).unwrap();
    assert_eq!(tokens.dtype(), safetensors::Dtype::I64);
    let tokens =
        tokens.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32).collect::<Vec<_>>();
    let logits = st.tensor(&format!("logits_{n}")).unwrap();
    assert_eq!(logits.dtype(), safetensors::Dtype::F32);
    assert_eq!(logits.shape()[0], n);
    let logits = logits.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    Expected { tokens, logits }
}

fn convert_case(case: &str, out_type: OutType, dir: &Path) -> Model {
    let out = dir.join(format!("{case}-{}.gguf", out_type.name()));
    let opts = ConvertOptions { dir: fixture(case), out: out.clone(), out_type, force: true, progress: false };
    convert(&opts).unwrap();
    Model::open(&out).unwrap()
}

/// Logits of every position, the prompt evaluated as one batch.
fn run_batch(model: &Model, tokens: &[u32], kv_type: KvType) -> Vec<f32> {
    let n = tokens.len();
    let mut kv = model.new_kv_cache(n, 1, kv_type).unwrap();
    let mut s = model.new_scratch(n, n);
    let batch: Vec<_> = tokens.iter().enumerate().map(|(pos, &token)| BatchToken { token, pos, seq: 0 }).collect();
    model.forward(&batch, &mut kv, &mut s, LogitRows::All).unwrap();
    (0..n).flat_map(|i| s.logits(i).to_vec()).collect()
}

/// Logits of every position, one token at a time through the cache.
fn run_single(model: &Model, tokens: &[u32], kv_type: KvType) -> Vec<f32> {
    let n = tokens.len();
    let mut kv = model.new_kv_cache(n, 1, kv_type).unwrap();
    let mut s = model.new_scratch(1, n);
    let mut out = Vec::new();
    for (pos, &token) in tokens.iter().enumerate() {
        model.forward(&[BatchToken { token, pos, seq: 0 }], &mut kv, &mut s, LogitRows::Last).unwrap();
        out.extend_from_slice(s.logits(0));
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// sqrt(Σ(a-b)²) / sqrt(Σb²)
fn relative_rms(a: &[f32], reference: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(reference).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = reference.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Relative RMS logit error we allow for Q8_0 against F32, for `n_layer`
/// layers.
///
/// Q8_0 stores each block of 32 values as round(x / d) with d = amax / 127,
/// so each value is off by at most d/2, uniformly: RMS error d / sqrt(12).
/// Relative to the block's RMS σ that is (amax/σ) / (127 · sqrt(12)). For
/// these Gaussian weights amax/σ of 32 samples stays below 3.5 (ε_w ≤ 0.80%);
/// activations, also quantized to Q8_0 before each dot product, can be more
/// peaked, and amax/σ ≤ sqrt(32) for any block (ε_a ≤ 1.29%). One matmul's
/// output then carries ε_mm = sqrt(ε_w² + ε_a²) ≤ 1.52% relative error.
/// Every layer has 7 quantized matmuls, plus the embedding rows and the output
/// head: 7L + 2 roughly independent error sources that add in quadrature, so
/// the logits carry about sqrt(7L + 2) · ε_mm. We allow twice that for the
/// amplification of early errors by later layers (for 2 layers: 12.2%). A
/// wrong scale, a swapped block or a bad dot product gives errors near 100%.
fn q8_0_bound(n_layer: usize) -> f64 {
    let eps_w = 3.5 / (127.0 * 12f64.sqrt());
    let eps_a = 32f64.sqrt() / (127.0 * 12f64.sqrt());
    let eps_mm = (eps_w * eps_w + eps_a * eps_a).sqrt();
    2.0 * ((7 * n_layer + 2) as f64).sqrt() * eps_mm
}

fn check_case(case: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f32_model = convert_case(case, OutType::F32, dir.path());
    let q8_model = convert_case(case, OutType::Q8_0, dir.path());
    let n_vocab = f32_model.hp.n_vocab;
    for n in PROMPT_LENGTHS {
        let want = expected(case, n);
        assert_eq!(want.logits.len(), n * n_vocab, "{case}: fixture vocabulary");

        // F32 weights, F32 cache: transformers' logits at every position.
        let batched = run_batch(&f32_model, &want.tokens, KvType::F32);
        let d = max_abs_diff(&batched, &want.logits);
        eprintln!("{case} n={n}: f32 max |Δlogit| vs transformers = {d:.2e}");
        assert!(d <= 1e-3, "{case} n={n}: max |Δlogit| {d} > 1e-3");

        // Token by token through the cache gives the same logits.
        let single = run_single(&f32_model, &want.tokens, KvType::F32);
        let d = max_abs_diff(&single, &batched);
        assert!(d <= 1e-5, "{case} n={n}: token-by-token differs from batch by {d}");

        // Q8_0: relative RMS error against our F32 run.
        let q8 = run_batch(&q8_model, &want.tokens, KvType::F32);
        let err = relative_rms(&q8, &batched);
        let bound = q8_0_bound(f32_model.hp.n_layer);
        eprintln!("{case} n={n}: q8_0 relative RMS logit error {:.3}% (bound {:.1}%)", 100.0 * err, 100.0 * bound);
        assert!(err < bound, "{case} n={n}: q8_0 relative RMS error {err} above {bound}");
    }
}

#[test]
fn parity_mha_odd_vocab() {
    check_case("mha");
}

#[test]
fn parity_gqa_theta_500k_tied() {
    check_case("gqa");
}

#[test]
fn parity_mqa_linear_rope_scaling() {
    check_case("mqa");
}

/// The cases cover what they claim (guards against a regenerated fixture
/// silently dropping a feature).
#[test]
fn fixtures_cover_the_cases() {
    let dir = tempfile::tempdir().unwrap();
    let hp = |case| convert_case(case, OutType::F32, dir.path()).hp;
    let (mha, gqa, mqa) = (hp("mha"), hp("gqa"), hp("mqa"));
    assert_eq!((mha.n_head, mha.n_head_kv, mha.n_vocab % 2), (4, 4, 1));
    assert_eq!((gqa.n_head, gqa.n_head_kv, gqa.rope_freq_base), (8, 2, 500000.0));
    assert_eq!((mqa.n_head, mqa.n_head_kv, mqa.rope_scale, mqa.n_layer), (4, 1, 2.0, 3));
    assert!(convert_case("gqa", OutType::F32, dir.path()).weights.tied);
    for h in [&mha, &gqa, &mqa] {
        assert_eq!(h.head_dim(), 16);
        assert!(h.n_layer >= 2);
    }
}
