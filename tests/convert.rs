//! `qllama convert` / `qllama quantize` against llama.cpp's own conversion of
//! the same checkpoint (../shared/models/tiny-llama2-gguf/tiny-llama2-f16.gguf,
//! made by llama.cpp's convert_hf_to_gguf.py), and every refusal case.

use qllama::convert::config::{HParams, RopeScaling};
use qllama::convert::requant::requantize;
use qllama::convert::{convert, ConvertOptions, OutType};
use qllama::gguf::{GgufFile, GgufValue};
use qllama::kernels::GgmlDType;
use std::path::{Path, PathBuf};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models")
}
fn tiny_hf() -> PathBuf {
    shared().join("tiny-llama2")
}
fn llama_cpp_f16() -> PathBuf {
    shared().join("tiny-llama2-gguf/tiny-llama2-f16.gguf")
}

fn run_convert(dir: &Path, out: &Path, t: OutType, force: bool) -> anyhow::Result<()> {
    let opts = ConvertOptions { dir: dir.to_path_buf(), out: out.to_path_buf(), out_type: t, force, progress: false };
    convert(&opts).map(drop)
}

/// The type llama.cpp (convert_hf_to_gguf.py + llama-quantize) gives a
/// tensor of tiny-llama2 (rows of 256 and 768) for the plain types; `None`
/// for the K-quant mixes, whose per-tensor types tests/convert_kquants.rs
/// checks against llama.cpp's files.
fn expected_type(name: &str, t: OutType) -> Option<GgmlDType> {
    let q = t.dtype();
    Some(if name.ends_with("_norm.weight") {
        GgmlDType::F32
    } else if q.block_size() > 1 && q.block_size() != 32 {
        return None;
    } else if name == "output.weight" && q.is_quantized() && q != GgmlDType::Q8_0 {
        GgmlDType::Q6K
    } else {
        q
    })
}

/// Every type: metadata equals llama.cpp's F16 file (but for
/// general.file_type), tensors have llama.cpp's names, order and shapes.
#[test]
fn all_types_match_llama_cpp_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = GgufFile::open(llama_cpp_f16()).unwrap();
    for t in OutType::ALL {
        let out = tmp.path().join(format!("{}.gguf", t.name()));
        run_convert(&tiny_hf(), &out, t, false).unwrap();
        let ours = GgufFile::open(&out).unwrap();

        let keys = |f: &GgufFile| f.metadata().iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&ours), keys(&reference), "{t:?}: metadata keys");
        for ((k, a), (_, b)) in ours.metadata().iter().zip(reference.metadata()) {
            if k == "general.file_type" {
                assert_eq!(*a, GgufValue::U32(t.file_type()), "{t:?}");
            } else {
                assert_eq!(a, b, "{t:?}: {k}");
            }
        }
        assert_eq!(ours.tensors().len(), reference.tensors().len());
        for (a, b) in ours.tensors().iter().zip(reference.tensors()) {
            assert_eq!((&a.name, &a.dims), (&b.name, &b.dims), "{t:?}");
            if let Some(want) = expected_type(&a.name, t) {
                assert_eq!(a.dtype, want, "{t:?}: {}", a.name);
            }
        }
    }
}

/// F16: the whole file is byte-identical to llama.cpp's, which also proves
/// the Q/K permutation and the tokenizer metadata.
#[test]
fn f16_is_byte_identical_to_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("f16.gguf");
    run_convert(&tiny_hf(), &out, OutType::F16, false).unwrap();
    let ours = GgufFile::open(&out).unwrap();
    let reference = GgufFile::open(llama_cpp_f16()).unwrap();
    for info in reference.tensors() {
        let a = ours.tensor(&info.name).unwrap();
        let b = reference.tensor(&info.name).unwrap();
        assert!(a.data == b.data, "{} differs from llama.cpp", info.name);
    }
    assert!(std::fs::read(&out).unwrap() == std::fs::read(llama_cpp_f16()).unwrap());
}

fn dequantize(dtype: GgmlDType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dtype.dequantize_row(data, &mut out);
    out
}

/// Q8_0: each tensor equals our Q8_0 of llama.cpp's F16 tensor data (norms
/// are copied as F32).
#[test]
fn q8_0_equals_quantized_llama_cpp_f16() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q8.gguf");
    run_convert(&tiny_hf(), &out, OutType::Q8_0, false).unwrap();
    let ours = GgufFile::open(&out).unwrap();
    let reference = GgufFile::open(llama_cpp_f16()).unwrap();
    for info in reference.tensors() {
        let a = ours.tensor(&info.name).unwrap();
        let b = reference.tensor(&info.name).unwrap();
        if info.dtype == GgmlDType::F32 {
            assert!(a.data == b.data, "{}", info.name);
            continue;
        }
        let x = dequantize(GgmlDType::F16, b.data, info.n_elements() as usize);
        let mut q = vec![0u8; GgmlDType::Q8_0.row_bytes(x.len()).unwrap()];
        GgmlDType::Q8_0.quantize_row(&x, &mut q);
        assert!(a.data == &q[..], "{}", info.name);
    }
}

/// `quantize` of an F16 GGUF (ours and llama.cpp's) gives the same tensors
/// as converting straight to the type.
#[test]
fn quantize_equals_direct_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let f16 = tmp.path().join("f16.gguf");
    run_convert(&tiny_hf(), &f16, OutType::F16, false).unwrap();
    for t in [OutType::Q4_0, OutType::Q5_1] {
        let direct = tmp.path().join(format!("direct-{}.gguf", t.name()));
        run_convert(&tiny_hf(), &direct, t, false).unwrap();
        let direct = GgufFile::open(&direct).unwrap();
        for (k, src) in [("ours", f16.clone()), ("llama.cpp", llama_cpp_f16())] {
            let q = tmp.path().join(format!("{k}-{}.gguf", t.name()));
            requantize(&src, &q, t, false, false).unwrap();
            let q = GgufFile::open(&q).unwrap();
            assert_eq!(q.get("general.file_type"), Some(&GgufValue::U32(t.file_type())));
            assert_eq!(q.tensors().len(), direct.tensors().len());
            for info in direct.tensors() {
                let a = q.tensor(&info.name).unwrap();
                assert_eq!(a.info.dtype, info.dtype, "{k} {}", info.name);
                assert!(a.data == direct.tensor(&info.name).unwrap().data, "{k} {t:?} {}", info.name);
            }
        }
    }
    // An already-quantized file is refused, leaving nothing behind.
    let q4 = tmp.path().join("ours-q4_0.gguf");
    let again = tmp.path().join("again.gguf");
    let err = requantize(&q4, &again, OutType::Q8_0, false, false).unwrap_err();
    assert!(format!("{err:#}").contains("already q4_0"), "{err:#}");
    assert!(!again.exists());
}

// ---------------------------------------------------------------- refusals

/// A copy of tiny-llama2 in a temp folder, to break in various ways.
fn copy_tiny(dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(tiny_hf()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Rewrite one shard with `f` applied to its tensors (name, dtype, shape, bytes).
fn rewrite_shard(path: &Path, f: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> =
        st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    f(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

const SHARD2: &str = "model-00002-of-00002.safetensors";

/// Each broken checkpoint is refused with an error naming the problem, and
/// no output (or temporary file) is left behind.
#[test]
fn refusals_leave_no_file() {
    type Breaker = fn(&Path);
    let cases: Vec<(&str, Breaker, &str)> = vec![
        ("no config", |d| std::fs::remove_file(d.join("config.json")).unwrap(), "config.json"),
        ("missing shard", |d| std::fs::remove_file(d.join(SHARD2)).unwrap(), SHARD2),
        (
            "no weights",
            |d| {
                std::fs::remove_file(d.join("model.safetensors.index.json")).unwrap();
            },
            "model.safetensors",
        ),
        (
            "no tokenizer",
            |d| {
                std::fs::remove_file(d.join("tokenizer.model")).unwrap();
                std::fs::remove_file(d.join("tokenizer.json")).unwrap();
            },
            "tokenizer",
        ),
        (
            "not llama",
            |d| {
                edit_json(&d.join("config.json"), |c| {
                    c.insert("architectures".into(), serde_json::json!(["MistralForCausalLM"]));
                })
            },
            "MistralForCausalLM",
        ),
        (
            "wrong shape",
            |d| {
                edit_json(&d.join("config.json"), |c| {
                    c.insert("intermediate_size".into(), serde_json::json!(512));
                })
            },
            "shape",
        ),
        (
            "missing tensor",
            |d| rewrite_shard(&d.join(SHARD2), |t| t.retain(|x| x.0 != "model.norm.weight")),
            "model.norm.weight",
        ),
        (
            "missing layer",
            |d| {
                edit_json(&d.join("config.json"), |c| {
                    c.insert("num_hidden_layers".into(), serde_json::json!(5));
                })
            },
            "model.layers.4",
        ),
        (
            "unsupported dtype",
            |d| {
                rewrite_shard(&d.join(SHARD2), |t| {
                    let x = t.iter_mut().find(|x| x.0 == "model.norm.weight").unwrap();
                    x.1 = safetensors::Dtype::I16;
                })
            },
            "unsupported dtype",
        ),
        (
            "truncated shard",
            |d| {
                let p = d.join(SHARD2);
                let len = std::fs::metadata(&p).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 1000).unwrap();
            },
            "truncated",
        ),
        (
            "bad tokenizer.model",
            |d| std::fs::write(d.join("tokenizer.model"), [0x0a, 0xff, 0xff, 0x01]).unwrap(),
            "tokenizer.model",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (what, breaker, needle) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        copy_tiny(&dir);
        breaker(&dir);
        let out_dir = tmp.path().join(format!("out-{}", what.replace(' ', "-")));
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("model.gguf");
        let err = run_convert(&dir, &out, OutType::Q4_0, false).expect_err(what);
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{what}: {msg}");
        assert!(listing(&out_dir).is_empty(), "{what}: left {:?}", listing(&out_dir));
    }
}

#[test]
fn output_path_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    copy_tiny(&dir);
    let before = listing(&dir);

    // The output may not be an input, even with --force (also via "..").
    for name in ["config.json", SHARD2, "tokenizer.model"] {
        let input = dir.join(name);
        let original = std::fs::read(&input).unwrap();
        let sneaky = dir.join("..").join("hf").join(name);
        for out in [input.clone(), sneaky] {
            let err = run_convert(&dir, &out, OutType::Q8_0, true).unwrap_err();
            assert!(format!("{err:#}").contains("is an input"), "{err:#}");
        }
        assert_eq!(std::fs::read(&input).unwrap(), original);
    }
    assert_eq!(listing(&dir), before);

    // An existing output is kept unless --force.
    let out = tmp.path().join("exists.gguf");
    std::fs::write(&out, b"precious").unwrap();
    let err = run_convert(&dir, &out, OutType::Q8_0, false).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    run_convert(&dir, &out, OutType::Q8_0, true).unwrap();
    assert!(GgufFile::open(&out).is_ok());

    // The same for quantize.
    let f16 = llama_cpp_f16();
    let err = requantize(&f16, &f16, OutType::Q4_0, true, false).unwrap_err();
    assert!(format!("{err:#}").contains("is an input"), "{err:#}");
    let err = requantize(&f16, &out, OutType::Q4_0, false, false).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
}

/// The CLI reports a refusal on stderr with a failing exit status.
#[test]
fn cli_reports_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_qllama"))
        .args(["convert", tmp.path().to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q4_0"])
        .output()
        .unwrap();
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("config.json"), "{stderr}");
    assert!(!out.exists());
}

// ------------------------------------------------------------ config forms

#[test]
fn config_forms_parse_alike() {
    let old = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 768,
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 4.0}, "torch_dtype": "float16",
        "max_position_embeddings": 4096, "vocab_size": 32000, "tie_word_embeddings": false}"#;
    let new = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 768,
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 500000.0}, "dtype": "float16",
        "head_dim": 32, "max_position_embeddings": 4096, "vocab_size": 32000, "tie_word_embeddings": false}"#;
    let a = HParams::from_json_str(old).unwrap();
    let b = HParams::from_json_str(new).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.head_dim, 32);
    assert_eq!(a.rope_theta, 500000.0);
    assert_eq!(a.rope_scaling, RopeScaling::Linear { factor: 4.0 });
    assert_eq!(a.dtype.as_deref(), Some("float16"));

    // The shared checkpoint's own config (old form, rope_scaling null).
    let c = HParams::from_file(&tiny_hf().join("config.json")).unwrap();
    assert_eq!((c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim, c.n_layers), (256, 8, 2, 32, 4));
    assert_eq!(c.rope_scaling, RopeScaling::None);

    // New-form default RoPE, no head_dim.
    let d = HParams::from_json_str(
        &new.replace("\"linear\", \"factor\": 4.0,", "\"default\",").replace("\"head_dim\": 32,", ""),
    )
    .unwrap();
    assert_eq!((d.rope_scaling.clone(), d.rope_theta, d.head_dim), (RopeScaling::None, 500000.0, 32));

    for (bad, needle) in [
        (old.replace("LlamaForCausalLM", "GPT2LMHeadModel"), "not a Llama"),
        (old.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"), "multiple"),
        (old.replace("\"hidden_size\": 256", "\"hidden_size\": -1"), "hidden_size"),
        (old.replace("\"linear\"", "\"yarn\""), "yarn"),
        (old.replace("\"num_hidden_layers\": 4,", ""), "num_hidden_layers"),
    ] {
        let err = HParams::from_json_str(&bad).unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{err:#}");
    }
}

/// A linearly scaled RoPE reaches the GGUF as llama.cpp writes it.
#[test]
fn rope_scaling_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    copy_tiny(&dir);
    edit_json(&dir.join("config.json"), |c| {
        c.insert("rope_scaling".into(), serde_json::json!({"type": "linear", "factor": 2.0}));
    });
    let out = tmp.path().join("m.gguf");
    run_convert(&dir, &out, OutType::Q8_0, false).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.get_str("llama.rope.scaling.type").unwrap(), Some("linear"));
    assert_eq!(f.get_f32("llama.rope.scaling.factor").unwrap(), Some(2.0));
}

/// Without tokenizer.model, the vocabulary comes from tokenizer.json: same
/// pieces and types, and scores that order merges as SentencePiece's do.
#[test]
fn tokenizer_json_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    copy_tiny(&dir);
    std::fs::remove_file(dir.join("tokenizer.model")).unwrap();
    let out = tmp.path().join("m.gguf");
    run_convert(&dir, &out, OutType::Q8_0, false).unwrap();
    let ours = GgufFile::open(&out).unwrap();
    let reference = GgufFile::open(llama_cpp_f16()).unwrap();
    for key in
        ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.chat_template"]
    {
        assert_eq!(ours.get(key), reference.get(key), "{key}");
    }
    let (a, b) = (
        ours.get_f32_array("tokenizer.ggml.scores").unwrap().unwrap(),
        reference.get_f32_array("tokenizer.ggml.scores").unwrap().unwrap(),
    );
    // Among normal pieces made by merges, a higher SentencePiece score means
    // a higher score here too (pieces with equal SentencePiece scores aside).
    let types = reference.get_i32_array("tokenizer.ggml.token_type").unwrap().unwrap();
    let merged: Vec<usize> = (0..a.len()).filter(|&i| types[i] == 1 && a[i] < 0.0).collect();
    let disagree =
        merged.windows(2).filter(|w| (a[w[0]] > a[w[1]]) != (b[w[0]] > b[w[1]]) && b[w[0]] != b[w[1]]).count();
    assert!(merged.len() > 29000 && disagree == 0, "{disagree} of {}", merged.len());
}
