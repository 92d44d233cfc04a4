//! K-quant mixes (`--type q4_k_m` and friends) against llama.cpp:
//! - the per-tensor policy against `llama-quantize`'s choices on two models
//!   (fixture from tools/gen_kquant_mix_fixture.py, including rows that are
//!   not whole super-blocks and a 16-layer model);
//! - `convert` of tiny-llama2 against llama.cpp's Q4_K_M/Q5_K_M/Q6_K files in
//!   ../shared/models/tiny-llama2-gguf (types, and for Q4_K_M the data);
//! - `quantize` of llama.cpp's F16 file gives the same file as `convert`.

use qllama::convert::policy::{allows_quantization, tensor_type, ModelInfo};
use qllama::convert::requant::requantize;
use qllama::convert::{convert, ConvertOptions, OutType};
use qllama::gguf::{GgufFile, GgufValue};
use qllama::kernels::GgmlDType;
use std::path::{Path, PathBuf};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models")
}
fn llama_cpp(t: &str) -> PathBuf {
    shared().join(format!("tiny-llama2-gguf/tiny-llama2-{t}.gguf"))
}

fn run_convert(out: &Path, t: OutType) {
    let opts = ConvertOptions {
        dir: shared().join("tiny-llama2"),
        out: out.to_path_buf(),
        out_type: t,
        force: false,
        progress: false,
    };
    convert(&opts).unwrap();
}

fn dtype(name: &str) -> GgmlDType {
    GgmlDType::from_name(name).unwrap_or_else(|| panic!("unknown type {name}"))
}

/// `llama-quantize`'s name for a type (the `ftype` argument it takes).
fn llama_quantize_name(t: OutType) -> String {
    t.name().to_uppercase()
}

/// The policy gives every tensor the type llama-quantize gave it, for every
/// mix on both recorded models.
#[test]
fn policy_matches_llama_quantize() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kquant_mixes/types.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for (model_name, m) in fixture["models"].as_object().unwrap() {
        let n = |k: &str| m[k].as_u64().unwrap() as usize;
        let info = ModelInfo {
            n_layer: n("n_layer"),
            n_head: n("n_head"),
            n_head_kv: n("n_head_kv"),
            tied_output: m["tied_output"].as_bool().unwrap(),
        };
        let tensors = m["tensors"].as_object().unwrap();
        let mixes = m["types"].as_object().unwrap();
        for t in OutType::ALL.into_iter().filter(|t| t.dtype().is_quantized()) {
            let rec = &mixes[&llama_quantize_name(t)];
            assert_eq!(rec["file_type"].as_u64(), Some(t.file_type() as u64), "{model_name} {t:?}");
            let want = rec["tensors"].as_object().unwrap();
            assert_eq!(want.len(), tensors.len());
            for (name, tensor) in tensors {
                let ne: Vec<usize> =
                    tensor["ne"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let ours = if allows_quantization(name, ne.len()) {
                    tensor_type(t, &info, name, ne[0])
                } else {
                    dtype(tensor["f16_type"].as_str().unwrap())
                };
                assert_eq!(ours, dtype(want[name].as_str().unwrap()), "{model_name} {t:?} {name}");
                checked += 1;
            }
        }
    }
    // 2 models × 12 quantized types × (39 or 146 tensors).
    assert_eq!(checked, 12 * (39 + 146));
}

/// Tensor name → type.
fn types_of(f: &GgufFile) -> std::collections::BTreeMap<String, GgmlDType> {
    f.tensors().iter().map(|t| (t.name.clone(), t.dtype)).collect()
}

/// `convert` to each mix llama.cpp's files exist for gives llama.cpp's
/// per-tensor types and file type; `quantize` of llama.cpp's F16 file gives
/// the same tensors as `convert`.
#[test]
fn mixes_match_llama_cpp_files() {
    let tmp = tempfile::tempdir().unwrap();
    for (t, file) in
        [(OutType::Q4_K_M, "q4_k_m"), (OutType::Q5_K_M, "q5_k_m"), (OutType::Q6_K, "q6_k"), (OutType::Q4_0, "q4_0")]
    {
        let out = tmp.path().join(format!("{file}.gguf"));
        run_convert(&out, t);
        let ours = GgufFile::open(&out).unwrap();
        let reference = GgufFile::open(llama_cpp(file)).unwrap();
        assert_eq!(types_of(&ours), types_of(&reference), "{t:?}");
        assert_eq!(ours.get("general.file_type"), reference.get("general.file_type"), "{t:?}");
        assert_eq!(ours.get("general.file_type"), Some(&GgufValue::U32(t.file_type())));

        let requant = tmp.path().join(format!("requant-{file}.gguf"));
        requantize(&llama_cpp("f16"), &requant, t, false, false).unwrap();
        let requant = GgufFile::open(&requant).unwrap();
        assert_eq!(requant.get("general.file_type"), Some(&GgufValue::U32(t.file_type())));
        for info in ours.tensors() {
            let a = requant.tensor(&info.name).unwrap();
            assert_eq!(a.info.dtype, info.dtype, "{t:?} {}", info.name);
            assert!(a.data == ours.tensor(&info.name).unwrap().data, "{t:?} {}", info.name);
        }
    }
}

fn to_f32(t: GgmlDType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    t.dequantize_row(data, &mut out);
    out
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    (s / a.len() as f64).sqrt()
}

/// Q4_K_M data: each tensor is our quantizer applied to llama.cpp's F16
/// weights, and is byte-identical to llama.cpp's Q4_K_M tensor; where not,
/// its error against the F16 weights is no worse than llama.cpp's.
#[test]
fn q4_k_m_data_matches_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q4_k_m.gguf");
    run_convert(&out, OutType::Q4_K_M);
    let ours = GgufFile::open(&out).unwrap();
    let f16 = GgufFile::open(llama_cpp("f16")).unwrap();
    let reference = GgufFile::open(llama_cpp("q4_k_m")).unwrap();
    let (mut identical, mut total) = (0, 0);
    let mut report = Vec::new();
    for info in ours.tensors() {
        let a = ours.tensor(&info.name).unwrap();
        let b = reference.tensor(&info.name).unwrap();
        let src = f16.tensor(&info.name).unwrap();
        let n = info.n_elements() as usize;
        let x = to_f32(src.info.dtype, src.data, n);
        if info.dtype == GgmlDType::F32 {
            assert!(a.data == b.data, "{}", info.name);
            continue;
        }
        let mut q = vec![0u8; info.dtype.row_bytes(n).unwrap()];
        info.dtype.quantize_row(&x, &mut q);
        assert!(a.data == &q[..], "{}: not our {} quantizer's output", info.name, info.dtype);
        total += 1;
        if a.data == b.data {
            identical += 1;
        } else {
            let (ra, rb) = (rmse(&to_f32(info.dtype, a.data, n), &x), rmse(&to_f32(info.dtype, b.data, n), &x));
            report.push(format!("{} ({}): rmse ours {ra:.6e}, llama.cpp {rb:.6e}", info.name, info.dtype));
            assert!(ra <= rb * 1.001, "{}", report.last().unwrap());
        }
    }
    eprintln!("Q4_K_M: {identical} of {total} quantized tensors byte-identical to llama.cpp's");
    for line in &report {
        eprintln!("  {line}");
    }
    assert_eq!(identical, total, "{report:#?}");
}
