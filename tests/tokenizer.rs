//! Tokenizer parity with SentencePiece (fixtures from
//! tools/gen_tokenizer_fixtures.py), decoding, streaming, and bad metadata.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qllama::gguf::{GgufFile, GgufHeader, GgufValue, GgufValueType};
use qllama::tokenizer::{implied_merges, StreamDecoder, TokenType, Tokenizer};
use serde::Deserialize;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn gguf_path() -> PathBuf {
    shared().join("models/tiny-llama2-gguf/tiny-llama2-q8_0.gguf")
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

#[derive(Deserialize)]
struct DecodeCase {
    ids: Vec<u32>,
    text: String,
}

#[derive(Deserialize)]
struct Whole {
    len: usize,
    checksum: u64,
}

/// The fixture script's polynomial hash of an id list.
fn ids_checksum(ids: &[u32]) -> u64 {
    const P: u128 = (1 << 61) - 1;
    ids.iter().fold(0u128, |h, &i| (h * 1000003 + i as u128) % P) as u64
}

#[derive(Deserialize)]
struct Fixture {
    vocab_size: usize,
    bos_id: u32,
    eos_id: u32,
    eval_bytes: usize,
    eval: Vec<Vec<u32>>,
    eval_whole: Whole,
    cases: Vec<Case>,
    decode: Vec<DecodeCase>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/sentencepiece.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

fn eval_paragraphs() -> Vec<String> {
    let text = std::fs::read_to_string(shared().join("data/eval.txt")).unwrap();
    assert_eq!(text.len(), fixture().eval_bytes, "eval.txt is not the text the fixture was made from");
    text.split("\n\n").map(str::to_owned).collect()
}

fn gguf_file() -> &'static GgufFile {
    static F: OnceLock<GgufFile> = OnceLock::new();
    F.get_or_init(|| GgufFile::open(gguf_path()).unwrap())
}

/// Built from the metadata of a lone .gguf (no tokenizer.json beside it).
fn from_gguf() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let t = Tokenizer::from_gguf(gguf_file()).unwrap();
        assert!(t.tokenizer_json().is_none(), "expected the GGUF metadata path");
        t
    })
}

fn from_json() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_tokenizer_json(&shared().join("models/llama2-tokenizer/tokenizer.json")).unwrap())
}

fn both() -> [(&'static str, &'static Tokenizer); 2] {
    [("gguf metadata", from_gguf()), ("tokenizer.json", from_json())]
}

/// Compare encodings of many texts; report the first few differences.
fn check_ids<'a>(name: &str, tok: &Tokenizer, items: impl Iterator<Item = (&'a str, &'a [u32])>) {
    let mut bad = Vec::new();
    let mut n = 0;
    for (text, want) in items {
        n += 1;
        let got = tok.encode(text, false).unwrap();
        if got != want {
            let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
            bad.push(format!(
                "{text:?}: first difference at token {at}: got {:?} want {:?}",
                &got[at..(at + 5).min(got.len())],
                &want[at..(at + 5).min(want.len())]
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {n} texts differ from SentencePiece:\n{}",
        bad.len(),
        bad[..bad.len().min(5)].join("\n")
    );
}

#[test]
fn eval_paragraphs_match_sentencepiece() {
    let paras = eval_paragraphs();
    let fx = fixture();
    assert_eq!(paras.len(), fx.eval.len());
    assert!(paras.len() > 500);
    for (name, tok) in both() {
        check_ids(name, tok, paras.iter().map(String::as_str).zip(fx.eval.iter().map(Vec::as_slice)));
    }
}

/// The whole eval text in one piece with BOS, as perplexity tokenizes it.
#[test]
fn whole_eval_text_matches_sentencepiece() {
    let text = eval_paragraphs().join("\n\n");
    let want = &fixture().eval_whole;
    for (name, tok) in both() {
        let ids = tok.encode(&text, true).unwrap();
        assert_eq!((ids.len(), ids_checksum(&ids)), (want.len, want.checksum), "{name}");
    }
}

#[test]
fn tricky_and_random_strings_match_sentencepiece() {
    let fx = fixture();
    for (name, tok) in both() {
        check_ids(name, tok, fx.cases.iter().map(|c| (c.text.as_str(), c.ids.as_slice())));
    }
}

/// A tokenizer.json beside the .gguf is used instead of the metadata, and
/// must agree with the GGUF on the vocabulary size.
#[test]
fn tokenizer_json_beside_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.gguf");
    std::fs::copy(shared().join("models/tiny-llama2-gguf/tiny-llama2-q4_0.gguf"), &model).unwrap();
    let json_src = shared().join("models/llama2-tokenizer/tokenizer.json");
    let json = dir.path().join("tokenizer.json");
    std::fs::copy(&json_src, &json).unwrap();

    let file = GgufFile::open(&model).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.tokenizer_json(), Some(json.as_path()));
    check_ids("beside", &tok, fixture().cases.iter().map(|c| (c.text.as_str(), c.ids.as_slice())));

    // One token more than the GGUF's vocabulary.
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_src).unwrap()).unwrap();
    v["added_tokens"].as_array_mut().unwrap().push(serde_json::json!({
        "id": 32000, "content": "<extra>", "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": true
    }));
    std::fs::write(&json, v.to_string()).unwrap();
    let msg = Tokenizer::from_gguf(&file).unwrap_err().to_string();
    assert!(msg.contains("model.gguf") && msg.contains("has 32001 tokens but the GGUF vocabulary has 32000"), "{msg}");

    std::fs::write(&json, "{ not json").unwrap();
    let msg = Tokenizer::from_gguf(&file).unwrap_err().to_string();
    assert!(msg.contains("tokenizer.json: cannot load tokenizer.json"), "{msg}");
}

/// With special-token parsing, `<s>`/`</s>` in a chat prompt are tokens and
/// each text fragment gets its own dummy prefix. Expected ids from llama.cpp's
/// `llama-tokenize` (which parses special tokens by default) on this file.
#[test]
fn encode_special_matches_llama_cpp() {
    let text = "[INST] Hi [/INST] Hello! </s><s>[INST] Bye<s> [/INST]";
    let want = [
        1, 518, 25580, 29962, 6324, 518, 29914, 25580, 29962, 15043, 29991, 29871, 2, 1, 518, 25580, 29962, 2648,
        29872, 1, 29871, 518, 29914, 25580, 29962,
    ];
    for (name, tok) in both() {
        assert_eq!(tok.encode_special(text, true).unwrap(), want, "{name}");
        assert_eq!(tok.encode_special("no specials", false).unwrap(), tok.encode("no specials", false).unwrap());
    }
}

#[test]
fn control_token_text_is_plain_text() {
    for (name, tok) in both() {
        let ids = tok.encode("<s>Hi</s>", false).unwrap();
        assert!(!ids.contains(&tok.bos_id()) && !ids.contains(&tok.eos_id()), "{name}: {ids:?}");
    }
}

#[test]
fn special_ids_and_flags() {
    let fx = fixture();
    for (name, tok) in both() {
        assert_eq!(tok.vocab_size(), fx.vocab_size, "{name}");
        assert_eq!(tok.bos_id(), fx.bos_id, "{name}");
        assert_eq!(tok.eos_id(), fx.eos_id, "{name}");
        assert!(tok.add_bos() && !tok.add_eos(), "{name}");
        assert!(tok.is_eog(fx.eos_id) && !tok.is_eog(fx.bos_id) && !tok.is_eog(450), "{name}");
        assert_eq!(tok.piece(450), "\u{2581}The", "{name}");
        assert_eq!(tok.piece(13), "<0x0A>", "{name}");
        assert_eq!(tok.token_type(13), Some(TokenType::Byte(b'\n')), "{name}");
        assert_eq!(tok.token_type(1), Some(TokenType::Control), "{name}");
        assert_eq!(tok.token_type(0), Some(TokenType::Unknown), "{name}");
        let with_bos = tok.encode("Hello", true).unwrap();
        assert_eq!(with_bos[0], fx.bos_id);
        assert_eq!(&with_bos[1..], &tok.encode("Hello", false).unwrap()[..]);
    }
}

/// The merges rebuilt from the GGUF vocabulary are exactly the shared
/// tokenizer.json's (which matches SentencePiece), order included.
#[test]
fn implied_merges_equal_reference_tokenizer_json() {
    let h = &gguf_file().header;
    let Some(GgufValue::Array(_, toks)) = h.get("tokenizer.ggml.tokens") else { panic!("no tokens") };
    let Some(GgufValue::Array(_, scores)) = h.get("tokenizer.ggml.scores") else { panic!("no scores") };
    let pieces: Vec<String> = toks.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let scores: Vec<f32> = scores.iter().map(|v| v.to_f64().unwrap() as f32).collect();
    let tok = from_gguf();
    let types: Vec<TokenType> = (0..pieces.len() as u32).map(|i| tok.token_type(i).unwrap()).collect();
    let ours = implied_merges(&pieces, &types, &scores);

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("models/llama2-tokenizer/tokenizer.json")).unwrap(),
    )
    .unwrap();
    let reference: Vec<(String, String)> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => {
                let (a, b) = s.split_once(' ').unwrap();
                (a.to_owned(), b.to_owned())
            }
            other => (other[0].as_str().unwrap().to_owned(), other[1].as_str().unwrap().to_owned()),
        })
        .collect();
    assert_eq!(ours.len(), reference.len());
    let first_diff = ours.iter().zip(&reference).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "merge order differs");
}

#[test]
fn decode_matches_sentencepiece() {
    let fx = fixture();
    for (name, tok) in both() {
        for c in &fx.decode {
            assert_eq!(tok.decode(&c.ids), c.text, "{name}: decode {:?}", c.ids);
        }
        for c in &fx.cases {
            assert_eq!(tok.decode(&c.ids), c.decoded, "{name}: decode of {:?}", c.text);
        }
    }
}

#[test]
fn decode_inverts_encode() {
    let tok = from_gguf();
    let mut texts = eval_paragraphs();
    // SentencePiece turns a literal "▁" into a space; every other text round-trips.
    texts.extend(fixture().cases.iter().map(|c| c.text.clone()).filter(|t| !t.contains('\u{2581}')));
    for text in &texts {
        for bos in [false, true] {
            let ids = tok.encode(text, bos).unwrap();
            assert_eq!(&tok.decode(&ids), text);
        }
    }
}

/// Feeding ids one at a time gives the same text as decoding them at once,
/// and a character split over byte tokens comes out once, whole.
#[test]
fn streaming_decode_emits_whole_characters() {
    let tok = from_gguf();
    for text in ["😀", "emoji 😀 and 👍🏽!", "日本語 𝔘𝔫𝔦 한국어", "tab\t🎉\n"] {
        let ids = tok.encode(text, true).unwrap();
        assert!(
            ids.iter().any(|&i| matches!(tok.token_type(i), Some(TokenType::Byte(b)) if b >= 0x80)),
            "{text:?} should need byte fallback"
        );
        let mut dec = StreamDecoder::new();
        let mut chunks: Vec<String> = ids.iter().map(|&id| dec.push(tok, id)).collect();
        chunks.push(dec.flush());
        assert_eq!(chunks.concat(), text);
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
        // Every multi-byte character appears in exactly one chunk.
        for ch in text.chars().filter(|c| c.len_utf8() > 1) {
            let n: usize = chunks.iter().map(|c| c.matches(ch).count()).sum();
            assert_eq!(n, text.matches(ch).count(), "{ch:?} in {chunks:?}");
        }
    }
    // The four byte tokens of 😀: nothing, nothing, nothing, then the whole char.
    let mut dec = StreamDecoder::continuing();
    let out: Vec<String> = [243u32, 162, 155, 131].iter().map(|&id| dec.push(tok, id)).collect();
    assert_eq!(out, ["", "", "", "😀"]);
    // A truncated character is flushed as replacement characters, one per byte.
    let mut dec = StreamDecoder::continuing();
    assert_eq!(dec.push(tok, 243) + &dec.push(tok, 162), "");
    assert_eq!(dec.flush(), "\u{FFFD}\u{FFFD}");
}

#[test]
fn streaming_equals_batch_decode_on_eval() {
    let tok = from_gguf();
    for p in eval_paragraphs().iter().take(100) {
        let ids = tok.encode(p, true).unwrap();
        let mut dec = StreamDecoder::new();
        let mut s: String = ids.iter().map(|&id| dec.push(tok, id)).collect();
        s.push_str(&dec.flush());
        assert_eq!(s, tok.decode(&ids));
    }
    // `continuing` keeps the leading space of the first piece; `new` drops it.
    let ids = tok.encode("Hello world", false).unwrap();
    let mut dec = StreamDecoder::continuing();
    let s: String = ids.iter().map(|&id| dec.push(tok, id)).collect();
    assert_eq!(s, " Hello world");
}

// ---- bad metadata ----------------------------------------------------------

fn header() -> GgufHeader {
    gguf_file().header.clone()
}

fn set(h: &mut GgufHeader, key: &str, v: GgufValue) {
    match h.metadata.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = v,
        None => h.metadata.push((key.to_owned(), v)),
    }
}

fn remove(h: &mut GgufHeader, key: &str) {
    h.metadata.retain(|(k, _)| k != key);
}

fn array_mut<'a>(h: &'a mut GgufHeader, key: &str) -> &'a mut Vec<GgufValue> {
    match h.metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, GgufValue::Array(_, items))) => items,
        _ => panic!("{key} is not an array"),
    }
}

/// The error for a header, which must name the file and contain `want`.
fn expect_err(h: &GgufHeader, want: &str) {
    let path = Path::new("/models/bad.gguf");
    match Tokenizer::from_gguf_header(h, path) {
        Ok(_) => panic!("accepted a header that should fail with {want:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("/models/bad.gguf"), "{msg}");
            assert!(msg.contains(want), "expected {want:?} in {msg:?}");
        }
    }
}

fn set_piece(h: &mut GgufHeader, id: usize, piece: &str) {
    array_mut(h, "tokenizer.ggml.tokens")[id] = GgufValue::String(piece.to_owned());
}

#[test]
fn unmodified_header_is_accepted() {
    Tokenizer::from_gguf_header(&header(), Path::new("x.gguf")).unwrap();
}

#[test]
fn missing_tokens() {
    let mut h = header();
    remove(&mut h, "tokenizer.ggml.tokens");
    expect_err(&h, "tokenizer.ggml.tokens is missing");
}

#[test]
fn empty_vocab() {
    let mut h = header();
    set(&mut h, "tokenizer.ggml.tokens", GgufValue::Array(GgufValueType::String, vec![]));
    expect_err(&h, "tokenizer.ggml.tokens is empty");
}

#[test]
fn scores_length_mismatch() {
    let mut h = header();
    array_mut(&mut h, "tokenizer.ggml.scores").pop();
    expect_err(&h, "tokenizer.ggml.scores has 31999 entries");
}

#[test]
fn token_type_length_mismatch() {
    let mut h = header();
    array_mut(&mut h, "tokenizer.ggml.token_type").push(GgufValue::I32(1));
    expect_err(&h, "tokenizer.ggml.token_type has 32001 entries");
}

#[test]
fn scores_of_the_wrong_type() {
    let mut h = header();
    set(&mut h, "tokenizer.ggml.scores", GgufValue::Array(GgufValueType::U8, vec![GgufValue::U8(0); 32000]));
    expect_err(&h, "tokenizer.ggml.scores should be an array of f32");
    set(&mut h, "tokenizer.ggml.scores", GgufValue::F32(0.0));
    expect_err(&h, "tokenizer.ggml.scores should be an array of f32");
}

#[test]
fn missing_scores() {
    let mut h = header();
    remove(&mut h, "tokenizer.ggml.scores");
    expect_err(&h, "tokenizer.ggml.scores is missing");
}

#[test]
fn unknown_token_type() {
    let mut h = header();
    array_mut(&mut h, "tokenizer.ggml.token_type")[500] = GgufValue::I32(9);
    expect_err(&h, "token 500 has unknown token type 9");
}

#[test]
fn malformed_byte_tokens() {
    // Token 3 is <0x00>, typed byte.
    for bad in ["<0xZZ>", "<0x-1>", "<0x100>", "<0x+F>", "<0x0>", "0x41"] {
        let mut h = header();
        set_piece(&mut h, 3, bad);
        expect_err(&h, "token 3 is a byte token");
    }
}

#[test]
fn special_ids_outside_vocab() {
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.eot_token_id",
    ] {
        let mut h = header();
        set(&mut h, key, GgufValue::U32(32000));
        expect_err(&h, &format!("{key} = 32000 is outside the vocabulary"));
        set(&mut h, key, GgufValue::I32(-1));
        expect_err(&h, &format!("{key} = -1 is outside the vocabulary"));
        set(&mut h, key, GgufValue::String("1".into()));
        expect_err(&h, &format!("{key} should be an integer"));
    }
}

#[test]
fn unsupported_model() {
    let mut h = header();
    set(&mut h, "tokenizer.ggml.model", GgufValue::String("gpt2".into()));
    expect_err(&h, "unsupported tokenizer model \"gpt2\"");
    remove(&mut h, "tokenizer.ggml.model");
    expect_err(&h, "tokenizer.ggml.model is missing");
}

#[test]
fn duplicate_pieces() {
    let mut h = header();
    set_piece(&mut h, 600, "\u{2581}The");
    expect_err(&h, "token 600 \"▁The\" duplicates token 450");
}

#[test]
fn non_string_token() {
    let mut h = header();
    array_mut(&mut h, "tokenizer.ggml.tokens")[7] = GgufValue::U32(7);
    expect_err(&h, "tokenizer.ggml.tokens[7] should be a string");
}

#[test]
fn nan_score() {
    let mut h = header();
    array_mut(&mut h, "tokenizer.ggml.scores")[700] = GgufValue::F32(f32::NAN);
    expect_err(&h, "tokenizer.ggml.scores[700] is NaN");
}

/// Every tokenizer key replaced by values of every odd kind: errors or a
/// working tokenizer, never a panic.
#[test]
fn odd_values_never_panic() {
    let odd = [
        GgufValue::U8(0),
        GgufValue::I64(-5),
        GgufValue::U64(u64::MAX),
        GgufValue::F32(f32::NAN),
        GgufValue::Bool(true),
        GgufValue::String(String::new()),
        GgufValue::Array(GgufValueType::String, vec![]),
        GgufValue::Array(GgufValueType::String, vec![GgufValue::String("<0x41>".into())]),
        GgufValue::Array(GgufValueType::I32, vec![GgufValue::I32(6); 3]),
        GgufValue::Array(GgufValueType::Array, vec![GgufValue::Array(GgufValueType::U8, vec![])]),
    ];
    let keys: Vec<String> =
        header().metadata.iter().map(|(k, _)| k.clone()).filter(|k| k.starts_with("tokenizer.ggml.")).collect();
    assert!(keys.len() >= 8);
    for key in &keys {
        for v in &odd {
            let mut h = header();
            set(&mut h, key, v.clone());
            if let Ok(t) = Tokenizer::from_gguf_header(&h, Path::new("odd.gguf")) {
                let ids = t.encode("Hi 😀 there", true).unwrap();
                let _ = t.decode(&ids);
            }
        }
    }
    // A tiny vocabulary without types or special-id keys.
    let mut h = header();
    h.metadata.retain(|(k, _)| !k.starts_with("tokenizer."));
    set(&mut h, "tokenizer.ggml.model", GgufValue::String("llama".into()));
    let pieces = ["<unk>", "<s>", "</s>", "\u{2581}", "a", "\u{2581}a", "b", "ab", "\u{2581}ab"];
    set(
        &mut h,
        "tokenizer.ggml.tokens",
        GgufValue::Array(GgufValueType::String, pieces.iter().map(|p| GgufValue::String((*p).into())).collect()),
    );
    let scores = [0.0, 0.0, 0.0, -5.0, -4.0, -1.0, -6.0, -3.0, -2.0];
    set(&mut h, "tokenizer.ggml.scores", GgufValue::Array(GgufValueType::F32, scores.map(GgufValue::F32).to_vec()));
    let t = Tokenizer::from_gguf_header(&h, Path::new("tiny.gguf")).unwrap();
    // "▁ab": ▁+a (score -1) beats a+b (-3), then ▁a+b makes ▁ab (-2).
    assert_eq!(t.encode("ab", false).unwrap(), [8]);
    assert_eq!(t.encode("ba", false).unwrap(), [3, 6, 4]);
    // No byte tokens: unknown characters become <unk>.
    assert_eq!(t.encode("a😀", false).unwrap(), [5, 0]);
    assert_eq!(t.token_type(1), Some(TokenType::Control));
    assert_eq!(t.decode(&[1, 5, 6, 2]), "ab");
}

// ---- qllama tokenize -----------------------------------------------------------

fn qllama(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_qllama")).args(args).output().unwrap()
}

#[test]
fn cli_tokenize() {
    let model = gguf_path();
    let case = fixture().cases.iter().find(|c| c.text == "Hello world").unwrap();
    let out = qllama(&[
        "tokenize".as_ref(),
        "-m".as_ref(),
        model.as_ref(),
        "-p".as_ref(),
        "Hello world".as_ref(),
        "--ids".as_ref(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<String> =
        std::iter::once(fixture().bos_id).chain(case.ids.iter().copied()).map(|i| i.to_string()).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("[{}]\n", want.join(", ")));

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "A\n").unwrap();
    let out = qllama(&["tokenize".as_ref(), "-m".as_ref(), model.as_ref(), "-f".as_ref(), text.as_ref()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // <s>, ▁A, <0x0A> (shown as the newline itself, as llama-tokenize does)
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "     1 -> '<s>'\n   319 -> ' A'\n    13 -> '\n'\n");

    std::fs::write(&text, b"ok \xff bad").unwrap();
    let out = qllama(&["tokenize".as_ref(), "-m".as_ref(), model.as_ref(), "-f".as_ref(), text.as_ref()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text.txt: not valid UTF-8 (invalid byte at offset 3)"), "{err}");
}
