//! The writer: round trips through the reader, byte-identical re-writing of
//! llama.cpp's files, and atomicity (nothing left behind on failure).

use qllama::gguf::{GgufFile, GgufValue as V, GgufValueType as T, GgufWriter, TensorPlan, MAX_ARRAY_DEPTH};
use qllama::kernels::GgmlDType;
use std::path::{Path, PathBuf};

/// Deterministic filler bytes for tensor `i`.
fn fill(i: usize, n: u64) -> Vec<u8> {
    (0..n).map(|j| (j as usize * 31 + i * 7 + 1) as u8).collect()
}

fn plan(name: &str, dims: &[u64], dtype: GgmlDType) -> TensorPlan {
    TensorPlan { name: name.into(), dims: dims.to_vec(), dtype }
}

/// Every value type, empty arrays of several element types, nested arrays.
fn all_values() -> Vec<(&'static str, V)> {
    vec![
        ("u8", V::U8(255)),
        ("i8", V::I8(-128)),
        ("u16", V::U16(65535)),
        ("i16", V::I16(-32768)),
        ("u32", V::U32(u32::MAX)),
        ("i32", V::I32(i32::MIN)),
        ("f32", V::F32(-1.5e-38)),
        ("bool.true", V::Bool(true)),
        ("bool.false", V::Bool(false)),
        ("string", V::String("Grüße, 世界 🦙".into())),
        ("string.empty", V::String(String::new())),
        ("u64", V::U64(u64::MAX)),
        ("i64", V::I64(i64::MIN)),
        ("f64", V::F64(f64::MAX)),
        ("array.u8", V::Array(T::U8, vec![V::U8(0), V::U8(1), V::U8(255)])),
        ("array.f32", V::Array(T::F32, vec![V::F32(0.25), V::F32(-1000.0)])),
        ("array.i64", V::Array(T::I64, vec![V::I64(-1), V::I64(i64::MAX)])),
        ("array.bool", V::Array(T::Bool, vec![V::Bool(true), V::Bool(false)])),
        ("array.string", V::Array(T::String, vec![V::String("<s>".into()), V::String(String::new())])),
        ("array.empty.string", V::Array(T::String, vec![])),
        ("array.empty.f64", V::Array(T::F64, vec![])),
        ("array.empty.array", V::Array(T::Array, vec![])),
        (
            "array.nested",
            V::Array(
                T::Array,
                vec![
                    V::Array(T::U16, vec![V::U16(1), V::U16(2)]),
                    V::Array(T::String, vec![V::String("x".into())]),
                    V::Array(T::Array, vec![V::Array(T::I8, vec![V::I8(-3)]), V::Array(T::Bool, vec![])]),
                ],
            ),
        ),
        ("unknown.vendor.key", V::String("kept".into())),
    ]
}

fn write_all_tensors(w: &GgufWriter, path: &Path, overwrite: bool) -> qllama::gguf::Result<()> {
    w.write(path, overwrite, |i, p, sink| {
        let size = p.byte_size().unwrap();
        sink.write_all(&fill(i, size))
    })
}

/// Files in `dir`, to check that failures leave nothing behind.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn round_trip_of_every_value_type_and_tensor_layout() {
    for alignment in [None, Some(64u32), Some(1)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.gguf");
        let mut w = GgufWriter::new();
        w.set("general.architecture", V::String("llama".into()));
        if let Some(a) = alignment {
            w.set("general.alignment", V::U32(a));
        }
        for (k, v) in all_values() {
            w.set(k, v);
        }
        let plans = [
            plan("f32.weight", &[8, 3], GgmlDType::F32),
            plan("f16.odd", &[5], GgmlDType::F16), // 10 bytes: padding follows
            plan("q4_0.weight", &[64, 2], GgmlDType::Q4_0),
            plan("q8_0.weight", &[32, 1, 1, 2], GgmlDType::Q8_0),
            plan("q6_k.weight", &[256], GgmlDType::Q6K),
            plan("empty", &[0, 4], GgmlDType::F32),
        ];
        for p in &plans {
            w.add_tensor(p.clone());
        }
        write_all_tensors(&w, &path, false).unwrap();
        assert_eq!(entries(dir.path()), std::slice::from_ref(&path), "temporary file left behind");

        let f = GgufFile::open(&path).unwrap();
        let align = alignment.unwrap_or(32) as u64;
        assert_eq!(f.header.version, 3);
        assert_eq!(f.header.alignment as u64, align);
        assert_eq!(f.metadata(), w.metadata());
        assert_eq!(f.header.data_offset % align, 0);
        assert_eq!(f.bytes().len() as u64 % align, 0, "last tensor not padded");
        for (i, p) in plans.iter().enumerate() {
            let v = f.tensor(&p.name).unwrap();
            assert_eq!((&v.info.dims, v.info.dtype), (&p.dims, p.dtype));
            assert_eq!(v.info.offset % align, 0);
            assert_eq!(v.data, fill(i, p.byte_size().unwrap()).as_slice(), "{}", p.name);
        }
        assert_eq!(f.tensor("q6_k.weight").unwrap().data.len(), 210);
    }
}

#[test]
fn set_replaces_in_place() {
    let mut w = GgufWriter::new();
    w.set("a", V::U32(1));
    w.set("b", V::U32(2));
    w.set("a", V::String("one".into()));
    assert_eq!(w.metadata(), [("a".to_string(), V::String("one".into())), ("b".to_string(), V::U32(2))]);
    assert_eq!(w.remove("a"), Some(V::String("one".into())));
    assert_eq!(w.metadata().len(), 1);
}

/// Re-writes a llama.cpp file with its own metadata and tensors, copying the
/// tensor bytes through; the result must be the same file, byte for byte.
fn rewrite_identically(name: &str) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../shared/models/tiny-llama2-gguf/{name}"));
    let f = GgufFile::open(&src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.set(k, v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(plan(&t.name, &t.dims, t.dtype));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    w.write(&out, false, |i, p, sink| {
        assert_eq!(p.name, f.tensors()[i].name);
        sink.write_all(f.tensor(&p.name).unwrap().data)
    })
    .unwrap();
    let written = std::fs::read(&out).unwrap();
    let original = f.bytes();
    let header_len = f.header.data_offset as usize;
    assert!(written[..header_len] == original[..header_len], "{name}: header differs");
    assert!(written == original, "{name}: file differs");
}

#[test]
fn rewriting_llama_cpp_files_is_byte_identical() {
    rewrite_identically("tiny-llama2-q4_0.gguf");
    rewrite_identically("tiny-llama2-f16.gguf");
}

#[test]
fn refuses_to_overwrite_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exists.gguf");
    std::fs::write(&path, b"precious").unwrap();
    let mut w = GgufWriter::new();
    w.add_tensor(plan("t", &[4], GgmlDType::F32));
    let msg = write_all_tensors(&w, &path, false).unwrap_err().to_string();
    assert!(msg.contains("exists.gguf") && msg.contains("already exists"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    assert_eq!(entries(dir.path()), std::slice::from_ref(&path));

    write_all_tensors(&w, &path, true).unwrap();
    assert_eq!(GgufFile::open(&path).unwrap().tensor("t").unwrap().data, fill(0, 16).as_slice());
    assert_eq!(entries(dir.path()), [path]);
}

#[test]
fn a_failing_tensor_callback_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor(plan("a", &[32], GgmlDType::F32));
    w.add_tensor(plan("b", &[32], GgmlDType::F32));

    // An I/O error from the source of tensor b.
    let msg = w
        .write(&path, false, |i, _, sink| {
            if i == 1 {
                return Err(std::io::Error::other("source shard is truncated"));
            }
            sink.write_all(&[0; 128])
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("out.gguf") && msg.contains("`b`") && msg.contains("source shard is truncated"), "{msg}");
    assert!(entries(dir.path()).is_empty(), "left behind: {:?}", entries(dir.path()));

    // Too few bytes.
    let msg = w.write(&path, false, |_, _, sink| sink.write_all(&[0; 100])).unwrap_err().to_string();
    assert!(msg.contains("`a`") && msg.contains("100 bytes were written, 128 expected"), "{msg}");
    assert!(entries(dir.path()).is_empty());

    // Too many bytes.
    let msg = w.write(&path, false, |_, _, sink| sink.write_all(&[0; 129])).unwrap_err().to_string();
    assert!(msg.contains("`a`") && msg.contains("more bytes than the tensor's size"), "{msg}");
    assert!(entries(dir.path()).is_empty());

    // A destination folder that does not exist.
    let msg = write_all_tensors(&w, &dir.path().join("no/such/dir/x.gguf"), false).unwrap_err().to_string();
    assert!(msg.contains("x.gguf") && msg.contains("temporary file"), "{msg}");
}

#[test]
fn refuses_to_write_what_the_reader_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let nested = (0..=MAX_ARRAY_DEPTH).fold(V::U8(1), |v, _| V::Array(v.value_type(), vec![v]));
    type Spoil = Box<dyn Fn(&mut GgufWriter)>;
    let cases: Vec<(Spoil, &str)> = vec![
        (Box::new(|w| w.add_tensor(plan("a", &[16], GgmlDType::F32))), "duplicate tensor name `a`"),
        (
            Box::new(|w| w.add_tensor(plan("q", &[33], GgmlDType::Q4_0))),
            "row length 33 is not a multiple of the block size 32",
        ),
        (Box::new(|w| w.add_tensor(plan("five", &[1, 1, 1, 1, 1], GgmlDType::F32))), "5 dimensions"),
        (Box::new(|w| w.add_tensor(plan("big", &[1 << 40, 1 << 40], GgmlDType::F32))), "overflows"),
        (Box::new(|w| w.set("general.alignment", V::U32(48))), "48 is not a power of two"),
        (Box::new(|w| w.set("general.alignment", V::U64(64))), "must be a u32, found u64"),
        (Box::new(|w| w.set("mixed", V::Array(T::U8, vec![V::U8(1), V::U16(2)]))), "array of u8 holds a u16"),
        (Box::new(move |w| w.set("deep", nested.clone())), "nested more than"),
    ];
    for (spoil, needle) in cases {
        let mut w = GgufWriter::new();
        w.add_tensor(plan("a", &[16], GgmlDType::F32));
        spoil(&mut w);
        let msg = write_all_tensors(&w, &path, false).unwrap_err().to_string();
        assert!(msg.contains("bad.gguf") && msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert!(entries(dir.path()).is_empty());
    }
}
