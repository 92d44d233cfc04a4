//! Crafted bad GGUF files: each must give an error that names the file and
//! the specific problem, never a panic, an out-of-bounds read or a huge
//! allocation. The files are built byte by byte here (not with our writer,
//! which refuses to produce most of them).

use qllama::gguf::{GgufFile, GgufHeader, MAX_ARRAY_DEPTH};
use std::path::Path;

const PATH: &str = "crafted/evil-model.gguf";

// Value type ids and tensor type ids, spelled out as the format defines them.
const T_U8: u32 = 0;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const GGML_F32: u32 = 0;
const GGML_Q4_0: u32 = 2;

/// Little-endian byte sink.
#[derive(Default, Clone)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn f32(mut self, v: f32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw_str(self, s: &[u8]) -> Self {
        let mut b = self.u64(s.len() as u64);
        b.0.extend_from_slice(s);
        b
    }
    fn str(self, s: &str) -> Self {
        self.raw_str(s.as_bytes())
    }
}

/// A tensor info as written in the file.
#[derive(Clone)]
struct Tensor {
    name: Vec<u8>,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
}

fn tensor(name: &str, dims: &[u64], type_id: u32, offset: u64) -> Tensor {
    Tensor { name: name.as_bytes().to_vec(), dims: dims.to_vec(), type_id, offset }
}

/// A GGUF file described piece by piece; every field can be made wrong.
#[derive(Clone)]
struct Spec {
    magic: [u8; 4],
    version: u32,
    /// Overrides the real counts when set.
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    /// Each entry: key bytes, value type id, encoded value.
    kvs: Vec<(Vec<u8>, u32, Vec<u8>)>,
    tensors: Vec<Tensor>,
    alignment: u64,
    data_len: u64,
}

impl Spec {
    /// A small valid file: a few metadata values and two tensors.
    fn valid() -> Self {
        let mut s = Spec {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![],
            tensors: vec![],
            alignment: 32,
            data_len: 0,
        };
        s.kv("general.architecture", T_STRING, Bytes::default().str("llama"));
        s.kv("llama.block_count", T_U32, Bytes::default().u32(1));
        s.kv("tokenizer.ggml.scores", T_ARRAY, Bytes::default().u32(T_F32).u64(3).f32(0.0).f32(-1.0).f32(-2.5));
        s.kv("tokenizer.ggml.tokens", T_ARRAY, Bytes::default().u32(T_STRING).u64(2).str("<s>").str("a"));
        s.tensors.push(tensor("a.weight", &[8, 2], GGML_F32, 0)); // 64 bytes
        s.tensors.push(tensor("b.weight", &[32], GGML_Q4_0, 64)); // 18 bytes
                                                                  // The file ends where the last tensor ends (no trailing padding), so
                                                                  // that cutting any byte off makes it invalid.
        s.data_len = 82;
        s
    }

    fn kv(&mut self, key: &str, ty: u32, value: Bytes) -> &mut Self {
        self.kvs.push((key.as_bytes().to_vec(), ty, value.0));
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut b = Bytes(self.magic.to_vec())
            .u32(self.version)
            .u64(self.n_tensors.unwrap_or(self.tensors.len() as u64))
            .u64(self.n_kv.unwrap_or(self.kvs.len() as u64));
        for (k, ty, v) in &self.kvs {
            b = b.raw_str(k).u32(*ty);
            b.0.extend_from_slice(v);
        }
        for t in &self.tensors {
            b = b.raw_str(&t.name).u32(t.dims.len() as u32);
            for &d in &t.dims {
                b = b.u64(d);
            }
            b = b.u32(t.type_id).u64(t.offset);
        }
        let data_start = (b.0.len() as u64).next_multiple_of(self.alignment);
        let mut out = b.0;
        out.resize((data_start + self.data_len) as usize, 0xAB);
        out
    }
}

fn parse(bytes: &[u8]) -> Result<GgufHeader, String> {
    GgufHeader::parse(bytes, Path::new(PATH)).map_err(|e| e.to_string())
}

/// Asserts that `spec` is rejected with a message naming the file and
/// containing each of `needles`.
#[track_caller]
fn assert_rejected(spec: &Spec, needles: &[&str]) {
    assert_bytes_rejected(&spec.build(), needles)
}

#[track_caller]
fn assert_bytes_rejected(bytes: &[u8], needles: &[&str]) {
    match parse(bytes) {
        Ok(_) => panic!("accepted a bad file; expected an error containing {needles:?}"),
        Err(msg) => {
            assert!(msg.contains(PATH), "error does not name the file: {msg}");
            for n in needles {
                assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
            }
        }
    }
}

#[test]
fn the_valid_spec_parses() {
    // Guards the builder itself: every case below differs from this by one
    // defect.
    let h = parse(&Spec::valid().build()).unwrap();
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.metadata.len(), 4);
    assert_eq!(h.tensors[1].size, 18);
}

#[test]
fn wrong_magic() {
    let mut s = Spec::valid();
    s.magic = *b"GGML";
    assert_rejected(&s, &["not a GGUF file", "magic", "GGML"]);
}

#[test]
fn unsupported_versions() {
    for (v, needle) in [(1, "version 1"), (0, "version 0"), (4, "version 4"), (3u32.swap_bytes(), "big-endian")] {
        let mut s = Spec::valid();
        s.version = v;
        assert_rejected(&s, &["unsupported GGUF version", needle]);
    }
    // Version 2 has the same layout and is read.
    let mut s = Spec::valid();
    s.version = 2;
    assert_eq!(parse(&s.build()).unwrap().version, 2);
}

#[test]
fn truncated_header() {
    let bytes = Spec::valid().build();
    assert_bytes_rejected(&bytes[..2], &["truncated", "magic"]);
    assert_bytes_rejected(&bytes[..6], &["truncated", "version"]);
    assert_bytes_rejected(&[], &["truncated"]);
}

#[test]
fn truncation_at_every_offset_is_an_error_never_a_panic() {
    let bytes = Spec::valid().build();
    for n in 0..bytes.len() {
        let r = std::panic::catch_unwind(|| parse(&bytes[..n]));
        match r {
            Ok(Err(msg)) => assert!(msg.contains(PATH), "at {n}: {msg}"),
            Ok(Ok(_)) => panic!("a file truncated to {n} of {} bytes was accepted", bytes.len()),
            Err(_) => panic!("parser panicked on a file truncated to {n} bytes"),
        }
    }
}

#[test]
fn tensor_data_out_of_bounds() {
    let mut s = Spec::valid();
    s.data_len = 81; // b.weight needs 64 + 18
    assert_rejected(&s, &["tensor `b.weight`", "out of bounds"]);
    // An offset so large that offset + size overflows u64.
    let mut s = Spec::valid();
    s.tensors[1].offset = u64::MAX - 31;
    assert_rejected(&s, &["tensor `b.weight`", "out of bounds"]);
}

#[test]
fn overlapping_tensors() {
    let mut s = Spec::valid();
    s.tensors[1].offset = 32; // inside a.weight's 64 bytes
    assert_rejected(&s, &["`a.weight`", "`b.weight`", "overlap"]);
}

#[test]
fn dims_whose_element_count_overflows() {
    let mut s = Spec::valid();
    s.tensors[0].dims = vec![1 << 32, 1 << 32];
    assert_rejected(&s, &["tensor `a.weight`", "element count overflows"]);
    // A single dimension beyond i64 (ggml stores dims as int64).
    s.tensors[0].dims = vec![u64::MAX];
    assert_rejected(&s, &["tensor `a.weight`", "element count overflows"]);
    // Overflow hidden behind a zero dimension is still refused.
    s.tensors[0].dims = vec![0, u64::MAX];
    assert_rejected(&s, &["tensor `a.weight`", "element count overflows"]);
}

#[test]
fn dims_whose_byte_size_overflows() {
    let mut s = Spec::valid();
    // 2^62 f32 elements fit i64, their 2^64 bytes do not.
    s.tensors[0].dims = vec![1 << 31, 1 << 31];
    assert_rejected(&s, &["tensor `a.weight`", "byte size", "overflows"]);
}

#[test]
fn row_length_not_a_multiple_of_the_block_size() {
    let mut s = Spec::valid();
    s.tensors[1].dims = vec![33];
    assert_rejected(&s, &["tensor `b.weight`", "row length 33", "block size 32", "q4_0"]);
}

#[test]
fn too_many_or_zero_dimensions() {
    let mut s = Spec::valid();
    s.tensors[0].dims = vec![8, 2, 1, 1, 1];
    assert_rejected(&s, &["tensor `a.weight`", "n_dims is 5"]);
    s.tensors[0].dims = vec![];
    assert_rejected(&s, &["tensor `a.weight`", "n_dims is 0"]);
    // A huge n_dims must not drive an allocation or a long loop.
    let mut bytes = Spec::valid().build();
    let pos = find(&bytes, b"a.weight") + 8;
    bytes[pos..pos + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_bytes_rejected(&bytes, &["tensor `a.weight`", "n_dims is 4294967295"]);
}

#[test]
fn counts_larger_than_the_file() {
    let mut s = Spec::valid();
    s.n_kv = Some(u64::MAX);
    assert_rejected(&s, &["metadata count 18446744073709551615", "larger than the file"]);
    let mut s = Spec::valid();
    s.n_kv = Some(1 << 40);
    assert_rejected(&s, &["metadata count", "larger than the file"]);
    let mut s = Spec::valid();
    s.n_tensors = Some(1 << 50);
    assert_rejected(&s, &["tensor count", "larger than the file"]);
    // One more tensor than there are infos: runs into the data section and
    // then the end of the file.
    let mut s = Spec::valid();
    s.n_tensors = Some(3);
    assert!(parse(&s.build()).is_err());
}

#[test]
fn array_counts_larger_than_the_file() {
    let mut s = Spec::valid();
    s.kv("big", T_ARRAY, Bytes::default().u32(T_U32).u64(1 << 61));
    assert_rejected(&s, &["metadata key `big`", "array count", "larger than the file"]);
    // Enough bytes for n u8 but not for n u32: the element size counts.
    let mut s = Spec::valid();
    s.kv("big", T_ARRAY, Bytes::default().u32(T_U32).u64(100).u32(0));
    assert_rejected(&s, &["metadata key `big`", "array count", "100 items of at least 4 bytes"]);
    // Arrays of strings: each needs at least its 8-byte length.
    let mut s = Spec::valid();
    s.kv("big", T_ARRAY, Bytes::default().u32(T_STRING).u64(u64::MAX / 8 + 1));
    assert_rejected(&s, &["metadata key `big`", "array count"]);
}

#[test]
fn string_lengths_larger_than_the_file() {
    let mut s = Spec::valid();
    s.kv("name", T_STRING, Bytes::default().u64(u64::MAX).u8(b'x'));
    assert_rejected(&s, &["metadata key `name`", "string length 18446744073709551615"]);
    // In a key, and in a tensor name.
    let bytes = Bytes(b"GGUF".to_vec()).u32(3).u64(0).u64(1).u64(1 << 40).u64(0).u64(0);
    assert_bytes_rejected(&bytes.0, &["metadata key #0", "string length 1099511627776"]);
    let mut bytes = Spec::valid().build();
    let pos = find(&bytes, b"a.weight") - 8;
    bytes[pos..pos + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_bytes_rejected(&bytes, &["tensor #0 name", "string length 1099511627776"]);
}

#[test]
fn unknown_tensor_type() {
    let mut s = Spec::valid();
    s.tensors[0].type_id = 99;
    assert_rejected(&s, &["tensor `a.weight`", "unknown tensor type 99"]);
    // Q4_2 (4) was removed from ggml long ago.
    s.tensors[0].type_id = 4;
    assert_rejected(&s, &["unknown tensor type 4"]);
}

#[test]
fn unknown_value_types() {
    let mut s = Spec::valid();
    s.kv("odd", 13, Bytes::default().u32(0));
    assert_rejected(&s, &["metadata key `odd`", "unknown value type 13"]);
    let mut s = Spec::valid();
    s.kv("odd", T_ARRAY, Bytes::default().u32(0xFFFF_FFFF).u64(1));
    assert_rejected(&s, &["metadata key `odd`", "unknown value type 4294967295"]);
}

#[test]
fn invalid_bool() {
    let mut s = Spec::valid();
    s.kv("flag", T_BOOL, Bytes::default().u8(2));
    assert_rejected(&s, &["metadata key `flag`", "neither 0 nor 1"]);
}

#[test]
fn duplicate_keys_and_tensor_names() {
    let mut s = Spec::valid();
    s.kv("llama.block_count", T_U32, Bytes::default().u32(2));
    assert_rejected(&s, &["duplicate metadata key `llama.block_count`"]);
    let mut s = Spec::valid();
    s.tensors[1].name = b"a.weight".to_vec();
    assert_rejected(&s, &["duplicate tensor name `a.weight`"]);
}

#[test]
fn bad_alignment() {
    let cases: [(u32, Bytes, &str); 5] = [
        (T_STRING, Bytes::default().str("32"), "must be a u32, found string"),
        (T_I32, Bytes::default().u32(32), "must be a u32, found i32"),
        (T_U32, Bytes::default().u32(48), "48 is not a power of two"),
        (T_U32, Bytes::default().u32(0), "0 is not a power of two"),
        (T_U32, Bytes::default().u32(1 << 21), "2097152 is above the limit"),
    ];
    for (ty, value, needle) in cases {
        let mut s = Spec::valid();
        s.kv("general.alignment", ty, value);
        assert_rejected(&s, &["general.alignment", needle]);
    }
    // 1 MiB itself is allowed (tensor offsets then must be multiples of it).
    let mut s = Spec::valid();
    s.kv("general.alignment", T_U32, Bytes::default().u32(1 << 20));
    s.alignment = 1 << 20;
    s.tensors[1].offset = 1 << 20;
    s.data_len = (1 << 20) + 32;
    assert_eq!(parse(&s.build()).unwrap().alignment, 1 << 20);
}

#[test]
fn unaligned_tensor_offset() {
    let mut s = Spec::valid();
    s.tensors[1].offset = 65;
    assert_rejected(&s, &["tensor `b.weight`", "offset 65 is not aligned to 32"]);
    // Alignment from general.alignment applies.
    let mut s = Spec::valid();
    s.kv("general.alignment", T_U32, Bytes::default().u32(128));
    s.alignment = 128;
    assert_rejected(&s, &["tensor `b.weight`", "offset 64 is not aligned to 128"]);
}

#[test]
fn invalid_utf8() {
    let mut s = Spec::valid();
    s.kv("name", T_STRING, Bytes::default().raw_str(b"ab\xff"));
    assert_rejected(&s, &["metadata key `name`", "invalid UTF-8"]);
    let mut s = Spec::valid();
    s.kvs[0].0 = b"general.\xc3(".to_vec();
    assert_rejected(&s, &["metadata key #0", "invalid UTF-8"]);
    let mut s = Spec::valid();
    s.tensors[0].name = b"\xe2\x82".to_vec();
    assert_rejected(&s, &["tensor #0 name", "invalid UTF-8"]);
    let mut s = Spec::valid();
    s.kv("toks", T_ARRAY, Bytes::default().u32(T_STRING).u64(2).str("ok").raw_str(b"\x80"));
    assert_rejected(&s, &["metadata key `toks`", "invalid UTF-8"]);
}

#[test]
fn array_nesting_limit() {
    // MAX_ARRAY_DEPTH levels are fine; one more is refused.
    let nested = |levels: usize| {
        let mut b = Bytes::default();
        for _ in 0..levels - 1 {
            b = b.u32(T_ARRAY).u64(1);
        }
        b.u32(T_U8).u64(1).u8(7)
    };
    let mut s = Spec::valid();
    s.kv("deep", T_ARRAY, nested(MAX_ARRAY_DEPTH));
    assert!(parse(&s.build()).is_ok());
    let mut s = Spec::valid();
    s.kv("deep", T_ARRAY, nested(MAX_ARRAY_DEPTH + 1));
    assert_rejected(&s, &["metadata key `deep`", "nested more than"]);
    // Far deeper than the limit: must not overflow the stack.
    let mut s = Spec::valid();
    s.kv("deep", T_ARRAY, nested(100_000));
    assert_rejected(&s, &["nested more than"]);
}

#[test]
fn typed_getters_name_the_key_on_unexpected_types() {
    let mut s = Spec::valid();
    // The scores of a real vocabulary are f32; here they are u8.
    s.kvs.retain(|(k, ..)| k != b"tokenizer.ggml.scores");
    s.kv("tokenizer.ggml.scores", T_ARRAY, Bytes::default().u32(T_U8).u64(3).u8(0).u8(1).u8(2));
    s.kv("llama.context_length", T_STRING, Bytes::default().str("2048"));
    s.kv("neg", T_I32, Bytes::default().u32(-5i32 as u32));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.gguf");
    std::fs::write(&path, s.build()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let path_str = path.display().to_string();

    let check = |r: Result<String, qllama::gguf::GgufError>, needles: &[&str]| {
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains(&path_str), "{msg}");
        for n in needles {
            assert!(msg.contains(n), "{msg:?} lacks {n:?}");
        }
    };
    check(
        f.get_f32_array("tokenizer.ggml.scores").map(|v| format!("{v:?}")),
        &["`tokenizer.ggml.scores`", "expected an array of f32", "found array of u8"],
    );
    check(f.get_u32("llama.context_length").map(|v| format!("{v:?}")), &["`llama.context_length`", "found string"]);
    check(f.get_u32("neg").map(|v| format!("{v:?}")), &["`neg`", "found i32"]);
    check(f.get_str("llama.block_count").map(|v| format!("{v:?}")), &["`llama.block_count`", "found u32"]);
    check(f.get_str_array("tokenizer.ggml.scores").map(|v| format!("{v:?}")), &["array of strings"]);
    check(f.get_bool("general.architecture").map(|v| format!("{v:?}")), &["expected bool"]);
    check(f.get_i32_array("general.architecture").map(|v| format!("{v:?}")), &["found string"]);

    // The right types read, absent keys are None.
    assert_eq!(f.get_u32("llama.block_count").unwrap(), Some(1));
    assert_eq!(f.get_u64("llama.block_count").unwrap(), Some(1));
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap(), Some(vec!["<s>", "a"]));
    assert_eq!(f.get_i32_array("tokenizer.ggml.scores").unwrap(), Some(vec![0, 1, 2]));
    assert_eq!(f.get_u32("absent").unwrap(), None);
    assert_eq!(f.get_f32_array("absent").unwrap(), None);
}

#[test]
fn opening_bad_files_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let msg = GgufFile::open(&empty).err().expect("empty file accepted").to_string();
    assert!(msg.contains("empty.gguf") && msg.contains("truncated"), "{msg}");

    let missing = dir.path().join("missing.gguf");
    let msg = GgufFile::open(&missing).err().expect("missing file opened").to_string();
    assert!(msg.contains("missing.gguf") && msg.contains("cannot open"), "{msg}");

    let bad = dir.path().join("bad.gguf");
    let mut s = Spec::valid();
    s.tensors[0].type_id = 77;
    std::fs::write(&bad, s.build()).unwrap();
    let msg = GgufFile::open(&bad).err().expect("bad file opened").to_string();
    assert!(msg.contains("bad.gguf") && msg.contains("unknown tensor type 77"), "{msg}");
}

#[test]
fn tensor_views_have_their_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.gguf");
    let mut bytes = Spec::valid().build();
    let data_start = bytes.len() - 82;
    for (i, b) in bytes[data_start..].iter_mut().enumerate() {
        *b = i as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.header.data_offset as usize, data_start);
    let a = f.tensor("a.weight").unwrap();
    assert_eq!(a.data, &bytes[data_start..data_start + 64]);
    assert_eq!(a.row(1).unwrap(), &bytes[data_start + 32..data_start + 64]);
    assert!(a.row(2).is_none());
    let b = f.tensor("b.weight").unwrap();
    assert_eq!(b.data, &bytes[data_start + 64..data_start + 82]);
    let msg = f.tensor("c.weight").unwrap_err().to_string();
    assert!(msg.contains("ok.gguf") && msg.contains("`c.weight` not found"), "{msg}");
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("needle present")
}
