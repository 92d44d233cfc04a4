//! Reads the GGUF files llama.cpp made of tiny-llama2 (../shared) and checks
//! what we read against facts from the gguf Python package's reader and
//! against the Hugging Face checkpoint the files were converted from.

use qllama::gguf::{GgufFile, GgufValue, GgufValueType};
use qllama::kernels::GgmlDType;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

fn gguf(name: &str) -> GgufFile {
    let path = shared(&format!("models/tiny-llama2-gguf/tiny-llama2-{name}.gguf"));
    GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Tensor type counts per file, as `gguf.GGUFReader` reports them.
const FILES: [(&str, &[(GgmlDType, usize)]); 6] = [
    ("f16", &[(GgmlDType::F16, 30), (GgmlDType::F32, 9)]),
    ("q8_0", &[(GgmlDType::Q8_0, 30), (GgmlDType::F32, 9)]),
    ("q4_0", &[(GgmlDType::Q4_0, 29), (GgmlDType::F32, 9), (GgmlDType::Q6K, 1)]),
    ("q4_k_m", &[(GgmlDType::Q4K, 25), (GgmlDType::F32, 9), (GgmlDType::Q6K, 5)]),
    ("q5_k_m", &[(GgmlDType::Q5K, 25), (GgmlDType::F32, 9), (GgmlDType::Q6K, 5)]),
    ("q6_k", &[(GgmlDType::Q6K, 30), (GgmlDType::F32, 9)]),
];

#[test]
fn every_file_parses_with_the_expected_layout() {
    for (name, type_counts) in FILES {
        let f = gguf(name);
        let h = &f.header;
        assert_eq!(h.version, 3, "{name}");
        assert_eq!(h.alignment, 32, "{name}");
        // Same metadata size in every file, per gguf.GGUFReader.
        assert_eq!(h.data_offset, 727392, "{name}");
        assert_eq!(h.metadata.len(), 32, "{name}");
        assert_eq!(h.tensors.len(), 39, "{name}");

        let mut counts = BTreeMap::new();
        for t in f.tensors() {
            *counts.entry(t.dtype.id()).or_insert(0) += 1;
        }
        let expected: BTreeMap<u32, usize> = type_counts.iter().map(|&(t, n)| (t.id(), n)).collect();
        assert_eq!(counts, expected, "{name}");

        // Every view is exactly its tensor's bytes, and the data section is
        // tiled by the tensors up to the end of the file.
        let mut end = 0;
        for t in f.tensors() {
            let v = f.tensor(&t.name).unwrap();
            assert_eq!(v.data.len() as u64, t.size, "{name} {}", t.name);
            let n = t.n_elements();
            assert_eq!(t.size, n / t.dtype.block_size() as u64 * t.dtype.type_size() as u64);
            let start = (h.data_offset + t.offset) as usize;
            assert_eq!(v.data.as_ptr(), f.bytes()[start..].as_ptr(), "view is not zero-copy");
            end = end.max(h.data_offset + t.offset + t.size);
        }
        assert_eq!(end, f.bytes().len() as u64, "{name}");
    }
}

#[test]
fn tensor_shapes_and_types() {
    let f16 = gguf("f16");
    let t = f16.tensor_info("token_embd.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.dtype, t.size), (&[256u64, 32000][..], GgmlDType::F16, 16_384_000));
    assert_eq!(t.offset, 0);
    let t = f16.tensor_info("blk.3.ffn_down.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.dtype, t.size), (&[768u64, 256][..], GgmlDType::F16, 393_216));
    let t = f16.tensor_info("blk.0.attn_k.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.dtype), (&[256u64, 64][..], GgmlDType::F16));
    let t = f16.tensor_info("output_norm.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.dtype, t.size), (&[256u64][..], GgmlDType::F32, 1024));
    assert_eq!(f16.tensor_info("blk.0.attn_norm.weight").unwrap().offset, 17_111_392 - 727_392);

    let q4 = gguf("q4_0");
    let t = q4.tensor_info("token_embd.weight").unwrap();
    assert_eq!((t.dtype, t.size), (GgmlDType::Q4_0, 4_608_000));
    let t = q4.tensor_info("output.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.dtype, t.size), (&[256u64, 32000][..], GgmlDType::Q6K, 6_720_000));
    assert_eq!(q4.tensors()[0].name, "output.weight");

    let km = gguf("q4_k_m");
    let t = km.tensor_info("blk.0.ffn_down.weight").unwrap();
    assert_eq!((t.dims.as_slice(), t.dtype, t.size), (&[768u64, 256][..], GgmlDType::Q4K, 110_592));
    assert!(km.tensor("no.such.tensor").is_err());
}

#[test]
fn metadata_values_and_typed_getters() {
    let f = gguf("f16");
    assert_eq!(f.metadata()[0].0, "general.architecture");
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_str("general.name").unwrap(), Some("Tiny Llama2"));
    assert_eq!(f.get_u32("llama.block_count").unwrap(), Some(4));
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), Some(256));
    assert_eq!(f.get_u32("llama.feed_forward_length").unwrap(), Some(768));
    assert_eq!(f.get_u32("llama.attention.head_count").unwrap(), Some(8));
    assert_eq!(f.get_u32("llama.attention.head_count_kv").unwrap(), Some(2));
    assert_eq!(f.get_u64("llama.context_length").unwrap(), Some(2048));
    assert_eq!(f.get_u32("llama.vocab_size").unwrap(), Some(32000));
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), Some(10000.0));
    assert_eq!(f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), Some(1e-5));
    assert_eq!(f.get_u32("general.file_type").unwrap(), Some(1));
    assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id").unwrap(), Some(1));
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id").unwrap(), Some(2));
    assert_eq!(f.get_bool("tokenizer.ggml.add_bos_token").unwrap(), Some(true));
    assert_eq!(f.get_bool("tokenizer.ggml.add_eos_token").unwrap(), Some(false));
    assert!(f.get_str("tokenizer.chat_template").unwrap().unwrap().contains("[INST]"));

    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(tokens.len(), 32000);
    assert_eq!(&tokens[..5], ["<unk>", "<s>", "</s>", "<0x00>", "<0x01>"]);
    assert_eq!(tokens[31999], "给");
    let scores = f.get_f32_array("tokenizer.ggml.scores").unwrap().unwrap();
    assert_eq!(scores.len(), 32000);
    assert_eq!(&scores[..5], [-1000.0, -1000.0, -1000.0, 0.0, 0.0]);
    let types = f.get_i32_array("tokenizer.ggml.token_type").unwrap().unwrap();
    assert_eq!(&types[..5], [3, 3, 3, 6, 6]);
    // Arrays keep their declared element type.
    let (ty, items) = f.get("tokenizer.ggml.token_type").unwrap().as_array().unwrap();
    assert_eq!((ty, items.len()), (GgufValueType::I32, 32000));
    assert_eq!(f.get("llama.block_count"), Some(&GgufValue::U32(4)));
    // The header getter agrees with the file's.
    assert_eq!(f.header.get("general.size_label").and_then(GgufValue::as_str), Some("19M"));
}

/// Reads one tensor of the Hugging Face checkpoint (fp16) as raw bytes.
fn hf_tensor(name: &str) -> Vec<u8> {
    let dir = shared("models/tiny-llama2");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap()).unwrap();
    let shard = index["weight_map"][name].as_str().unwrap();
    let bytes = std::fs::read(dir.join(shard)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F16);
    t.data().to_vec()
}

#[test]
fn tensor_data_matches_the_hugging_face_checkpoint() {
    let f = gguf("f16");
    // llama.cpp keeps these fp16 tensors as they are (no permutation), so
    // the bytes must be identical.
    for (gguf_name, hf_name) in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),
        ("output.weight", "lm_head.weight"),
    ] {
        let v = f.tensor(gguf_name).unwrap();
        assert!(v.data == hf_tensor(hf_name).as_slice(), "{gguf_name} differs from {hf_name}");
    }
    // Rows: row 1 of the embedding is token 1's vector (256 fp16 values).
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.info.n_rows(), 32000);
    assert_eq!(emb.row(1).unwrap(), &hf_tensor("model.embed_tokens.weight")[512..1024]);
    assert!(emb.row(32000).is_none());

    // Norms are widened to f32, exactly.
    let norm = f.tensor("blk.0.attn_norm.weight").unwrap();
    let hf = hf_tensor("model.layers.0.input_layernorm.weight");
    let ours: Vec<f32> = norm.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let theirs: Vec<f32> =
        hf.chunks_exact(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn inspect_report_lists_tensors_and_bits_per_weight() {
    let f = gguf("q4_0");
    let r = qllama::cli::inspect::report(&f);
    assert!(r.contains("GGUF v3"), "{r}");
    let row = r.lines().find(|l| l.trim_start().starts_with("token_embd.weight")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols, ["token_embd.weight", "q4_0", "256", "x", "32000", "4608000"]);
    // Long arrays are abbreviated: the count and the first tokens, not all.
    let tokens = r.lines().find(|l| l.trim_start().starts_with("tokenizer.ggml.tokens")).unwrap();
    assert!(tokens.contains("[string; 32000]") && tokens.contains("\"<s>\"") && tokens.ends_with("...]"), "{tokens}");
    assert!(!r.contains("给"));
    // 13032960 tensor bytes (file size minus the 727392-byte header) for
    // 19400960 weights.
    assert!(r.contains("19400960 weights in 13032960 bytes"), "{r}");
    assert!(r.contains("5.374 bits per weight"), "{r}");
}

/// The fuzz seeds (written by llama.cpp's Python writer, tools/make_fuzz_seeds.py)
/// are valid files: a check of our reader against another writer, including
/// nested arrays and a non-default alignment.
#[test]
fn fuzz_seeds_written_by_gguf_py_read_back() {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/gguf_header");
    let f = GgufFile::open(seeds.join("values.gguf")).unwrap();
    assert_eq!(f.get("t.u8"), Some(&GgufValue::U8(200)));
    assert_eq!(f.get("t.i16"), Some(&GgufValue::I16(-30000)));
    assert_eq!(f.get("t.u64"), Some(&GgufValue::U64(1 << 63)));
    assert_eq!(f.get("t.f64"), Some(&GgufValue::F64(-2.25)));
    assert_eq!(f.get_str("t.string").unwrap(), Some("Grüße 🦙"));
    assert_eq!(f.get_str_array("t.array.string").unwrap(), Some(vec!["<s>", "", "▁a"]));
    assert_eq!(f.get_i32_array("t.array.i32").unwrap(), Some(vec![1, -2, 3]));
    let (ty, outer) = f.get("t.array.nested").unwrap().as_array().unwrap();
    assert_eq!((ty, outer.len()), (GgufValueType::Array, 2));
    let inner: Vec<Vec<i64>> =
        outer.iter().map(|v| v.as_array().unwrap().1.iter().map(|x| x.to_i64().unwrap()).collect()).collect();
    assert_eq!(inner, [vec![1, 2], vec![3]]);

    let f = GgufFile::open(seeds.join("tensors.gguf")).unwrap();
    assert_eq!(f.header.alignment, 64);
    let q = f.tensor("q8_0").unwrap();
    assert_eq!((q.info.dtype, q.data.len()), (GgmlDType::Q8_0, 34));
    assert_eq!(f.tensor("f16").unwrap().info.dims, [3]);
}

/// The tokenizer fuzz target starts from this seed; if it did not build a
/// tokenizer, the fuzzer would never get past the first check.
#[test]
fn tokenizer_fuzz_seed_builds_a_tokenizer() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/gguf_tokenizer/vocab.gguf");
    let f = GgufFile::open(&path).unwrap();
    let tok = qllama::tokenizer::Tokenizer::from_gguf_header(&f.header, &f.path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tok.vocab_size(), 3 + 256 + 11);
}
