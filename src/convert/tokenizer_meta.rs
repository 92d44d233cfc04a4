//! The tokenizer as GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`),
//! built as llama.cpp's converter builds it for Llama: pieces, scores and
//! types from `tokenizer.model` (or `tokenizer.json`), added tokens from
//! `tokenizer_config.json`, special ids and add-BOS/EOS flags from
//! `tokenizer.json`'s post-processor, `tokenizer_config.json` and `config.json`.

use crate::gguf::{GgufValue, GgufValueType};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// SentencePiece piece types (also GGUF's `tokenizer.ggml.token_type` values).
pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

/// Special-token kinds in the order llama.cpp looks them up.
const SPECIAL_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
}

/// Parse the pieces of a SentencePiece `ModelProto`: field 1 holds the
/// repeated `SentencePiece { piece = 1 (string), score = 2 (float),
/// type = 3 (enum, default NORMAL) }` messages; everything else is skipped.
pub fn parse_sentencepiece(bytes: &[u8]) -> Result<Vocab, String> {
    let mut vocab = Vocab::default();
    let mut r = Proto { buf: bytes, pos: 0 };
    while let Some((field, wire)) = r.key()? {
        if field == 1 && wire == 2 {
            let msg = r.bytes()?;
            let (mut piece, mut score, mut ty) = (None, 0.0f32, NORMAL);
            let mut p = Proto { buf: msg, pos: 0 };
            while let Some((f, w)) = p.key()? {
                match (f, w) {
                    (1, 2) => {
                        let s =
                            std::str::from_utf8(p.bytes()?).map_err(|_| "a piece is not valid UTF-8".to_string())?;
                        piece = Some(s.to_string());
                    }
                    (2, 5) => score = f32::from_le_bytes(p.fixed::<4>()?),
                    (3, 0) => {
                        let t = p.varint()?;
                        if !(1..=6).contains(&t) {
                            return Err(format!("piece type {t} is not a SentencePiece type"));
                        }
                        ty = t as i32;
                    }
                    _ => p.skip(w)?,
                }
            }
            let piece = piece.ok_or_else(|| format!("piece {} has no text", vocab.tokens.len()))?;
            vocab.tokens.push(piece);
            vocab.scores.push(score);
            vocab.types.push(ty);
        } else {
            r.skip(wire)?;
        }
    }
    if vocab.tokens.is_empty() {
        return Err("no pieces (not a SentencePiece model?)".into());
    }
    Ok(vocab)
}

/// A protobuf wire-format reader over untrusted bytes: every length is
/// checked against what is left.
struct Proto<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Proto<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn key(&mut self) -> Result<Option<(u64, u8)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(format!("field of {n} bytes runs past the end ({left} left)"));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        self.take(n)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N as u64)?.try_into().expect("took N bytes"))
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            w => Err(format!("unsupported protobuf wire type {w}")),
        }
    }
}

/// The base vocabulary from `tokenizer.json` (a Llama BPE model with byte
/// fallback), for checkpoints without `tokenizer.model`. llama.cpp gives
/// every piece score -1000 here, which breaks its score-driven SentencePiece
/// merging; we score each piece by its merge rank instead (earlier merge =
/// higher score), which is the order SentencePiece's own scores encode.
pub fn vocab_from_tokenizer_json(tj: &Value, path: &Path) -> Result<Vocab> {
    let model =
        tj.get("model").and_then(Value::as_object).with_context(|| format!("{}: no \"model\"", path.display()))?;
    if model.get("type").and_then(Value::as_str) != Some("BPE")
        || model.get("byte_fallback").and_then(Value::as_bool) != Some(true)
    {
        bail!("{}: not a Llama (SentencePiece-style BPE with byte fallback) tokenizer", path.display());
    }
    let vocab_map =
        model.get("vocab").and_then(Value::as_object).with_context(|| format!("{}: no model.vocab", path.display()))?;
    let n = vocab_map.len();
    let mut tokens: Vec<Option<String>> = vec![None; n];
    for (tok, id) in vocab_map {
        let id = id
            .as_u64()
            .filter(|&i| (i as usize) < n)
            .with_context(|| format!("{}: token {tok:?} has id {id}, outside 0..{n}", path.display()))?
            as usize;
        if tokens[id].replace(tok.clone()).is_some() {
            bail!("{}: two tokens share id {id}", path.display());
        }
    }
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.expect("ids are a permutation of 0..n")).collect();
    let mut scores = vec![0.0f32; n];
    if let Some(merges) = model.get("merges").and_then(Value::as_array) {
        let index: std::collections::HashMap<&str, usize> =
            tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        for (rank, m) in merges.iter().enumerate() {
            let merged = match m {
                Value::String(s) => s.split_once(' ').map(|(a, b)| format!("{a}{b}")),
                Value::Array(p) if p.len() == 2 => {
                    Some(format!("{}{}", p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or("")))
                }
                _ => None,
            };
            if let Some(&id) = merged.as_deref().and_then(|m| index.get(m)) {
                if scores[id] == 0.0 {
                    scores[id] = -(rank as f32) - 1.0;
                }
            }
        }
    }
    let types = tokens.iter().map(|t| if is_byte_token(t) { BYTE } else { NORMAL }).collect();
    Ok(Vocab { tokens, scores, types })
}

fn is_byte_token(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 6 && t.starts_with("<0x") && t.ends_with('>') && b[3].is_ascii_hexdigit() && b[4].is_ascii_hexdigit()
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let v = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    Ok(Some(v))
}

/// The tokenizer files of a checkpoint folder that exist (for the
/// "output equals an input" check).
pub fn input_files(dir: &Path) -> Vec<std::path::PathBuf> {
    ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "added_tokens.json"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect()
}

/// Build the tokenizer metadata, in llama.cpp's key order. `vocab_size` is
/// `config.json`'s: the vocabulary is padded or cut to it, as llama.cpp does.
pub fn tokenizer_metadata(
    dir: &Path,
    vocab_size: usize,
    config_token_ids: &[(String, i64)],
) -> Result<Vec<(String, GgufValue)>> {
    let sp_path = dir.join("tokenizer.model");
    let tj_path = dir.join("tokenizer.json");
    let tc_path = dir.join("tokenizer_config.json");
    let tokenizer_json = read_json(&tj_path)?;
    let tokenizer_config = read_json(&tc_path)?;
    let tc = tokenizer_config.as_ref().and_then(Value::as_object);

    let base = if sp_path.is_file() {
        let bytes = std::fs::read(&sp_path).with_context(|| format!("{}: cannot read", sp_path.display()))?;
        parse_sentencepiece(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", sp_path.display()))?
    } else if let Some(tj) = &tokenizer_json {
        vocab_from_tokenizer_json(tj, &tj_path)?
    } else {
        bail!("{}: no tokenizer.model or tokenizer.json", dir.display());
    };

    // Start from placeholders so that ids the tokenizer lacks still exist.
    let mut v = Vocab {
        tokens: (0..vocab_size).map(|i| format!("[PAD{i}]")).collect(),
        scores: vec![-10000.0; vocab_size],
        types: vec![UNUSED; vocab_size],
    };
    if base.tokens.len() > vocab_size {
        eprintln!(
            "warning: tokenizer has {} tokens, config.json vocab_size {vocab_size}: ignoring the rest",
            base.tokens.len()
        );
    }
    for i in 0..base.tokens.len().min(vocab_size) {
        v.tokens[i] = base.tokens[i].clone();
        v.scores[i] = base.scores[i];
        v.types[i] = base.types[i];
    }
    if let Some(Value::Object(added)) = read_json(&dir.join("added_tokens.json"))? {
        for (tok, id) in added {
            if let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < vocab_size) {
                v.tokens[id] = tok;
                v.scores[id] = -1000.0;
                v.types[id] = USER_DEFINED;
            }
        }
    }
    if let Some(Value::Object(decoder)) = tc.and_then(|c| c.get("added_tokens_decoder")) {
        for (id, data) in decoder {
            let Some(id) = id.parse::<usize>().ok().filter(|&i| i < vocab_size) else { continue };
            let Some(content) = data.get("content").and_then(Value::as_str) else {
                bail!("{}: added_tokens_decoder[{id}] has no content", tc_path.display());
            };
            let special = data.get("special").and_then(Value::as_bool).unwrap_or(false);
            if special || looks_special(content) {
                v.types[id] = CONTROL;
                v.tokens[id] = content.to_string();
            } else {
                v.types[id] = USER_DEFINED;
                v.tokens[id] = content.replace('\u{2581}', " ");
            }
            v.scores[id] = -1000.0;
        }
    }

    let mut md: Vec<(String, GgufValue)> = Vec::new();
    let mut put = |k: &str, val: GgufValue| md.push((k.to_string(), val));
    if let Some(Value::Bool(b)) = tc.and_then(|c| c.get("add_prefix_space")) {
        put("tokenizer.ggml.add_space_prefix", GgufValue::Bool(*b));
    }
    put("tokenizer.ggml.model", GgufValue::String("llama".into()));
    put("tokenizer.ggml.pre", GgufValue::String("default".into()));
    put(
        "tokenizer.ggml.tokens",
        GgufValue::Array(GgufValueType::String, v.tokens.into_iter().map(GgufValue::String).collect()),
    );
    put(
        "tokenizer.ggml.scores",
        GgufValue::Array(GgufValueType::F32, v.scores.into_iter().map(GgufValue::F32).collect()),
    );
    put(
        "tokenizer.ggml.token_type",
        GgufValue::Array(GgufValueType::I32, v.types.into_iter().map(GgufValue::I32).collect()),
    );
    let special = SpecialVocab::load(tokenizer_json.as_ref(), tc, config_token_ids, vocab_size);
    for (typ, id) in &special.ids {
        let key = match typ.as_str() {
            "unk" => "unknown".to_string(),
            "sep" => "seperator".to_string(), // llama.cpp's spelling of the key
            "pad" => "padding".to_string(),
            t => t.to_string(),
        };
        put(&format!("tokenizer.ggml.{key}_token_id"), GgufValue::U32(*id));
    }
    for (typ, on) in &special.add {
        put(&format!("tokenizer.ggml.add_{typ}_token"), GgufValue::Bool(*on));
    }
    if let Some(t) = special.chat_template {
        put("tokenizer.chat_template", GgufValue::String(t));
    }
    Ok(md)
}

/// Tokens llama.cpp treats as control tokens even when not marked special.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Special-token ids and add-flags, as gguf-py's `SpecialVocab` finds them
/// for a Llama tokenizer.
struct SpecialVocab {
    ids: Vec<(String, u32)>,
    add: Vec<(String, bool)>,
    chat_template: Option<String>,
}

impl SpecialVocab {
    fn load(tj: Option<&Value>, tc: Option<&Map<String, Value>>, config_ids: &[(String, i64)], n_vocab: usize) -> Self {
        let mut s = Self { ids: Vec::new(), add: Vec::new(), chat_template: None };
        let token_str = |typ: &str| -> Option<String> {
            match tc?.get(&format!("{typ}_token"))? {
                Value::String(t) => Some(t.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
                _ => None,
            }
        };
        let (bos, eos) = (token_str("bos"), token_str("eos"));

        // A `TemplateProcessing` post-processor says whether BOS/EOS are added.
        if let Some(pp) = tj.and_then(|t| t.get("post_processor")).filter(|p| !p.is_null()) {
            let procs: Vec<&Value> = match pp.get("processors").and_then(Value::as_array) {
                Some(list) => list.iter().collect(),
                None => vec![pp],
            };
            for p in procs {
                if p.get("type").and_then(Value::as_str) != Some("TemplateProcessing") {
                    continue;
                }
                let special_id = |e: &Value| {
                    e.get("SpecialToken").and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_owned)
                };
                let single = p.get("single").and_then(Value::as_array).cloned().unwrap_or_default();
                let pair = p.get("pair").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut first = None;
                let mut last = None;
                if single.len() > 1 {
                    first = special_id(&single[0]);
                    if let Some(f) = &first {
                        set_flag(&mut s.add, "bos", Some(f) == bos.as_ref());
                    }
                    last = special_id(&single[single.len() - 1]);
                    if let Some(l) = &last {
                        set_flag(&mut s.add, "eos", Some(l) == eos.as_ref());
                    }
                }
                // Pair template `[first] A [sep...] B [last]`: a separator
                // between A and B means add_sep.
                if !pair.is_empty() {
                    let start = usize::from(first.is_some() && special_id(&pair[0]) == first);
                    let stop = if last.is_some() && special_id(&pair[pair.len() - 1]) == last {
                        pair.len() - 1
                    } else {
                        pair.len()
                    };
                    let mid = if stop > start { &pair[start..stop] } else { &[][..] };
                    let seq = |e: &Value| {
                        e.get("Sequence").and_then(|q| q.get("id")).and_then(Value::as_str).map(str::to_owned)
                    };
                    if mid.len() > 2
                        && seq(&mid[0]).as_deref() == Some("A")
                        && seq(&mid[mid.len() - 1]).as_deref() == Some("B")
                    {
                        let inner = &mid[1..mid.len() - 1];
                        let sep = token_str("sep");
                        let is_sep = |e: &Value| {
                            special_id(e).is_some_and(|t| Some(&t) == sep.as_ref() || Some(&t) == eos.as_ref())
                        };
                        let add_sep = (is_sep(&inner[0]) && last.is_none()) || (inner.len() == 2 && is_sep(&inner[1]));
                        set_flag(&mut s.add, "sep", add_sep);
                    }
                }
            }
        }

        let added: Vec<(String, i64)> = tj
            .and_then(|t| t.get("added_tokens"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| Some((t.get("content")?.as_str()?.to_owned(), t.get("id")?.as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(tc) = tc {
            s.chat_template = tc.get("chat_template").and_then(Value::as_str).map(str::to_owned);
            for typ in SPECIAL_TYPES {
                if let Some(Value::Bool(b)) = tc.get(&format!("add_{typ}_token")) {
                    if !s.add.iter().any(|(t, _)| t == typ) {
                        s.add.push((typ.to_string(), *b));
                    }
                }
                if let Some(content) = token_str(typ) {
                    if let Some((_, id)) = added.iter().find(|(c, _)| *c == content) {
                        s.set_id(typ, *id, n_vocab);
                    }
                }
            }
        }
        for (typ, id) in config_ids {
            s.set_id(typ, *id, n_vocab);
        }
        s
    }

    fn set_id(&mut self, typ: &str, id: i64, n_vocab: usize) {
        if self.ids.iter().any(|(t, _)| t == typ) {
            return;
        }
        match u32::try_from(id) {
            Ok(id) if (id as usize) < n_vocab => self.ids.push((typ.to_string(), id)),
            _ => eprintln!("warning: special token {typ} id {id} is outside the vocabulary of {n_vocab}: skipped"),
        }
    }
}

fn set_flag(flags: &mut Vec<(String, bool)>, typ: &str, on: bool) {
    match flags.iter_mut().find(|(t, _)| t == typ) {
        Some(f) => f.1 = on,
        None => flags.push((typ.to_string(), on)),
    }
}
