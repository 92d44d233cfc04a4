//! Reading and validating the SentencePiece vocabulary of a GGUF file, and
//! turning it into a `tokenizers` BPE model.
//!
//! A SentencePiece BPE model stores no merges: at encode time it repeatedly
//! joins the adjacent pair whose concatenation is the highest-scoring piece,
//! the leftmost pair on a tie. The equivalent merge list is every split of a
//! piece into two pieces, ranked by the piece's score, highest first; within
//! a score, by piece id, then by the ids of the two halves (the order
//! Hugging Face's converter uses, which matches SentencePiece on the Llama 2
//! vocabulary, ties among the all-`▁` pieces included).

use std::collections::HashMap;
use std::path::Path;

use tokenizers::models::bpe::{Vocab as HfVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence};
use tokenizers::{AddedToken, ModelWrapper};

use super::{TokenType, TokenizerError, SPACE_MARK};
use crate::gguf::{GgufHeader, GgufValue};

/// Longest piece we accept. Llama's pieces are at most 16 characters; the
/// bound keeps the merge search (quadratic in a piece's length) cheap on a
/// hostile file.
pub const MAX_PIECE_BYTES: usize = 1024;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";

/// Any integer value, widened.
fn as_int(v: &GgufValue) -> Option<i128> {
    Some(match *v {
        GgufValue::U8(x) => x.into(),
        GgufValue::I8(x) => x.into(),
        GgufValue::U16(x) => x.into(),
        GgufValue::I16(x) => x.into(),
        GgufValue::U32(x) => x.into(),
        GgufValue::I32(x) => x.into(),
        GgufValue::U64(x) => x.into(),
        GgufValue::I64(x) => x.into(),
        _ => return None,
    })
}

/// A short description of a value for error messages.
fn describe(v: &GgufValue) -> String {
    match v {
        GgufValue::Array(t, items) => format!("an array of {} {t:?}", items.len()),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}

/// `<0xNN>` → NN (two hex digits, either case).
pub fn parse_byte_piece(piece: &str) -> Option<u8> {
    let b = piece.as_bytes();
    if b.len() != 6 || &b[..3] != b"<0x" || b[5] != b'>' {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16);
    Some((hex(b[3])? * 16 + hex(b[4])?) as u8)
}

fn token_type_from_code(code: i128, piece: &str) -> Result<TokenType, String> {
    Ok(match code {
        // 0 is llama.cpp's "undefined", which it treats as normal.
        0 | 1 => TokenType::Normal,
        2 => TokenType::Unknown,
        3 => TokenType::Control,
        4 => TokenType::UserDefined,
        5 => TokenType::Unused,
        6 => TokenType::Byte(
            parse_byte_piece(piece).ok_or_else(|| format!("is a byte token but its piece {piece:?} is not <0xNN>"))?,
        ),
        _ => return Err(format!("has unknown token type {code}")),
    })
}

/// The number of tokens the header declares, if it has a tokens array.
pub fn token_count(header: &GgufHeader) -> Option<usize> {
    match header.get(KEY_TOKENS)? {
        GgufValue::Array(_, items) => Some(items.len()),
        _ => None,
    }
}

/// A validated SentencePiece vocabulary.
pub struct Vocab {
    pub pieces: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    /// Whether the file had token types (else they are inferred).
    pub typed: bool,
}

impl Vocab {
    pub fn from_header(header: &GgufHeader, path: &Path) -> Result<Vocab, TokenizerError> {
        let err = |msg: String| TokenizerError::new(path, msg);
        match header.get(KEY_MODEL) {
            None => return Err(err(format!("no tokenizer: {KEY_MODEL} is missing"))),
            Some(GgufValue::String(m)) if m == "llama" => {}
            Some(GgufValue::String(m)) => {
                return Err(err(format!(
                    "unsupported tokenizer model {m:?} ({KEY_MODEL}); only \"llama\" (SentencePiece BPE) is supported"
                )))
            }
            Some(v) => return Err(err(format!("{KEY_MODEL} should be a string, found {}", describe(v)))),
        }

        let tokens = match header.get(KEY_TOKENS) {
            None => return Err(err(format!("{KEY_TOKENS} is missing"))),
            Some(GgufValue::Array(_, items)) => items,
            Some(v) => return Err(err(format!("{KEY_TOKENS} should be an array of strings, found {}", describe(v)))),
        };
        if tokens.is_empty() {
            return Err(err(format!("{KEY_TOKENS} is empty")));
        }
        if tokens.len() > u32::MAX as usize {
            return Err(err(format!("{KEY_TOKENS} has {} tokens, more than ids can hold", tokens.len())));
        }
        let n = tokens.len();
        let mut pieces = Vec::with_capacity(n);
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            let GgufValue::String(p) = t else {
                return Err(err(format!("{KEY_TOKENS}[{i}] should be a string, found {}", describe(t))));
            };
            if p.is_empty() {
                return Err(err(format!("token {i} is an empty piece")));
            }
            if p.len() > MAX_PIECE_BYTES {
                return Err(err(format!("token {i} is {} bytes long (at most {MAX_PIECE_BYTES})", p.len())));
            }
            if let Some(first) = seen.insert(p.as_str(), i) {
                return Err(err(format!("token {i} {p:?} duplicates token {first}")));
            }
            pieces.push(p.clone());
        }

        let scores = match header.get(KEY_SCORES) {
            None => return Err(err(format!("{KEY_SCORES} is missing (a SentencePiece BPE vocabulary needs them)"))),
            Some(GgufValue::Array(_, items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    GgufValue::F32(s) if !s.is_nan() => Ok(*s),
                    GgufValue::F32(_) => Err(err(format!("{KEY_SCORES}[{i}] is NaN"))),
                    other => {
                        Err(err(format!("{KEY_SCORES} should be an array of f32, found {}", describe_elem(other))))
                    }
                })
                .collect::<Result<Vec<f32>, _>>()?,
            Some(v) => return Err(err(format!("{KEY_SCORES} should be an array of f32, found {}", describe(v)))),
        };
        if scores.len() != n {
            return Err(err(format!("{KEY_SCORES} has {} entries but {KEY_TOKENS} has {n}", scores.len())));
        }

        let types = match header.get(KEY_TYPES) {
            // Without types: byte pieces by their form, everything else normal
            // (control and unknown tokens are set from the special ids later).
            None => pieces.iter().map(|p| parse_byte_piece(p).map_or(TokenType::Normal, TokenType::Byte)).collect(),
            Some(GgufValue::Array(_, items)) => {
                if items.len() != n {
                    return Err(err(format!("{KEY_TYPES} has {} entries but {KEY_TOKENS} has {n}", items.len())));
                }
                items
                    .iter()
                    .zip(&pieces)
                    .enumerate()
                    .map(|(i, (v, p))| {
                        let code = as_int(v).ok_or_else(|| {
                            err(format!("{KEY_TYPES} should be an array of i32, found {}", describe_elem(v)))
                        })?;
                        token_type_from_code(code, p).map_err(|m| err(format!("token {i} {m}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(v) => return Err(err(format!("{KEY_TYPES} should be an array of i32, found {}", describe(v)))),
        };
        let typed = header.get(KEY_TYPES).is_some();
        Ok(Vocab { pieces, types, scores, typed })
    }

    /// Mark the unknown token as such (llama.cpp's converter may type it as
    /// control, yet it decodes as SentencePiece's " ⁇ "), and, when the file
    /// has no token types, BOS/EOS/PAD as control (so they never merge and
    /// decode invisibly).
    pub fn mark_special(&mut self, special: &SpecialIds) {
        let controls = [special.bos, special.eos].into_iter().chain(special.pad).filter(|_| !self.typed);
        let marks = controls.map(|id| (id, TokenType::Control)).chain(special.unk.map(|u| (u, TokenType::Unknown)));
        for (id, t) in marks {
            if let Some(slot) = self.types.get_mut(id as usize) {
                *slot = t;
            }
        }
    }

    /// The `tokenizers` BPE model that encodes as SentencePiece does.
    pub fn build_bpe(&self, path: &Path, unk: Option<u32>) -> Result<tokenizers::Tokenizer, TokenizerError> {
        let err = |msg: String| TokenizerError::new(path, msg);
        let vocab: HfVocab = self.pieces.iter().enumerate().map(|(i, p)| (p.clone(), i as u32)).collect();
        let merges = implied_merges(&self.pieces, &self.types, &self.scores);
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
        if let Some(p) = unk.and_then(|u| self.pieces.get(u as usize)) {
            builder = builder.unk_token(p.clone());
        }
        let bpe = builder.build().map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);
        // Llama's SentencePiece normalizer: identity, a dummy "▁" prefix, and
        // spaces escaped as "▁" (no whitespace collapsing, no NFKC).
        let space = Replace::new(" ", SPACE_MARK.to_string()).map_err(|e| err(format!("normalizer: {e}")))?;
        tok.with_normalizer(Some(Sequence::new(vec![Prepend::new(SPACE_MARK.to_string()).into(), space.into()])));
        // User-defined pieces are matched whole in the text, as SentencePiece
        // does. (Llama 2 has none.)
        let user: Vec<AddedToken> = self
            .pieces
            .iter()
            .zip(&self.types)
            .filter(|(_, t)| **t == TokenType::UserDefined)
            .map(|(p, _)| AddedToken::from(p.clone(), false).normalized(false))
            .collect();
        if !user.is_empty() {
            tok.add_tokens(&user);
        }
        Ok(tok)
    }
}

/// Describe an array element (for "should be an array of f32, found ...").
fn describe_elem(v: &GgufValue) -> String {
    format!("an element {}", describe(v))
}

/// The BPE merges a SentencePiece vocabulary implies, best first: every split
/// of a piece into two pieces, ranked by the piece's score (see the module
/// comment for ties). Only normal and user-defined pieces take part, as in
/// SentencePiece (control, byte, unknown and unused pieces never merge).
pub fn implied_merges(pieces: &[String], types: &[TokenType], scores: &[f32]) -> Vec<(String, String)> {
    let mergeable = |i: usize| matches!(types.get(i), Some(TokenType::Normal | TokenType::UserDefined));
    let ids: HashMap<&str, usize> =
        pieces.iter().enumerate().filter(|&(i, _)| mergeable(i)).map(|(i, p)| (p.as_str(), i)).collect();
    // (score, left id, right id); collected in piece-id order.
    let mut found: Vec<(f32, usize, usize)> = Vec::new();
    for (i, piece) in pieces.iter().enumerate().filter(|&(i, _)| mergeable(i)) {
        let start = found.len();
        for (k, _) in piece.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (ids.get(&piece[..k]), ids.get(&piece[k..])) {
                // `+ 0.0` folds -0.0 into 0.0 so that they tie, as in Python.
                found.push((scores.get(i).copied().unwrap_or(0.0) + 0.0, l, r));
            }
        }
        found[start..].sort_by_key(|&(_, l, r)| (l, r));
    }
    // Stable: equal scores keep piece-id order.
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().map(|(_, l, r)| (pieces[l].clone(), pieces[r].clone())).collect()
}

/// Special token ids and flags.
#[derive(Clone, Debug)]
pub struct SpecialIds {
    pub bos: u32,
    pub eos: u32,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// Ids that end generation: EOS, EOT, EOM.
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
}

/// An optional token-id key, checked against the vocabulary size.
fn id_key(header: &GgufHeader, path: &Path, key: &str, n: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = header.get(key) else { return Ok(None) };
    match as_int(v) {
        Some(id) if (0..n as i128).contains(&id) => Ok(Some(id as u32)),
        Some(id) => Err(TokenizerError::new(path, format!("{key} = {id} is outside the vocabulary ({n} tokens)"))),
        None => Err(TokenizerError::new(path, format!("{key} should be an integer, found {}", describe(v)))),
    }
}

fn bool_key(header: &GgufHeader, path: &Path, key: &str) -> Result<Option<bool>, TokenizerError> {
    match header.get(key) {
        None => Ok(None),
        Some(GgufValue::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(TokenizerError::new(path, format!("{key} should be a bool, found {}", describe(v)))),
    }
}

fn find_piece(pieces: &[String], piece: &str) -> Option<u32> {
    pieces.iter().position(|p| p == piece).map(|i| i as u32)
}

impl SpecialIds {
    /// From `tokenizer.ggml.*` keys; absent ids default as llama.cpp does for
    /// SentencePiece vocabularies (BOS 1, EOS 2), UNK from the key or the
    /// token typed unknown.
    pub fn from_header(header: &GgufHeader, path: &Path, vocab: &Vocab) -> Result<SpecialIds, TokenizerError> {
        let n = vocab.pieces.len();
        let default = |id: u32, what: &str| {
            if (id as usize) < n {
                Ok(id)
            } else {
                Err(TokenizerError::new(
                    path,
                    format!(
                        "no tokenizer.ggml.{what}_token_id and the default {id} is outside the vocabulary ({n} tokens)"
                    ),
                ))
            }
        };
        let bos = match id_key(header, path, "tokenizer.ggml.bos_token_id", n)? {
            Some(id) => id,
            None => default(1, "bos")?,
        };
        let eos = match id_key(header, path, "tokenizer.ggml.eos_token_id", n)? {
            Some(id) => id,
            None => default(2, "eos")?,
        };
        let unk = match id_key(header, path, "tokenizer.ggml.unknown_token_id", n)? {
            Some(id) => Some(id),
            // Without the key, the token typed unknown, else `<unk>`.
            None => vocab
                .types
                .iter()
                .position(|t| *t == TokenType::Unknown)
                .map(|i| i as u32)
                .or_else(|| find_piece(&vocab.pieces, "<unk>")),
        };
        Self::finish(header, path, n, bos, eos, unk)
    }

    /// For a tokenizer.json beside a GGUF file: ids from the GGUF keys when
    /// present, else found by piece.
    pub fn from_header_or_pieces(
        header: &GgufHeader,
        path: &Path,
        pieces: &[String],
    ) -> Result<SpecialIds, TokenizerError> {
        let n = pieces.len();
        let by_piece = Self::from_pieces(pieces).map_err(|m| TokenizerError::new(path, m));
        let bos = id_key(header, path, "tokenizer.ggml.bos_token_id", n)?;
        let eos = id_key(header, path, "tokenizer.ggml.eos_token_id", n)?;
        let unk = id_key(header, path, "tokenizer.ggml.unknown_token_id", n)?;
        let (bos, eos, unk) = match (bos, eos) {
            (Some(b), Some(e)) => (b, e, unk.or_else(|| find_piece(pieces, "<unk>"))),
            _ => {
                let p = by_piece?;
                (bos.unwrap_or(p.bos), eos.unwrap_or(p.eos), unk.or(p.unk))
            }
        };
        Self::finish(header, path, n, bos, eos, unk)
    }

    /// Llama's `<s>`, `</s>`, `<unk>` by piece; BOS added by default.
    pub fn from_pieces(pieces: &[String]) -> Result<SpecialIds, String> {
        let bos = find_piece(pieces, "<s>").ok_or("no BOS token <s> in the vocabulary")?;
        let eos = find_piece(pieces, "</s>").ok_or("no EOS token </s> in the vocabulary")?;
        Ok(SpecialIds {
            bos,
            eos,
            unk: find_piece(pieces, "<unk>"),
            pad: None,
            eog: vec![eos],
            add_bos: true,
            add_eos: false,
        })
    }

    fn finish(
        header: &GgufHeader,
        path: &Path,
        n: usize,
        bos: u32,
        eos: u32,
        unk: Option<u32>,
    ) -> Result<SpecialIds, TokenizerError> {
        let pad = id_key(header, path, "tokenizer.ggml.padding_token_id", n)?;
        let mut eog = vec![eos];
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eog.extend(id_key(header, path, key, n)?);
        }
        Ok(SpecialIds {
            bos,
            eos,
            unk,
            pad,
            eog,
            add_bos: bool_key(header, path, "tokenizer.ggml.add_bos_token")?.unwrap_or(true),
            add_eos: bool_key(header, path, "tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        })
    }
}

/// Pieces and types of a loaded tokenizer.json; ids must be dense.
pub fn pieces_from_hf(hf: &tokenizers::Tokenizer) -> Result<(Vec<String>, Vec<TokenType>), String> {
    let vocab = hf.get_vocab(true);
    let n = vocab.len();
    if n == 0 {
        return Err("the vocabulary is empty".into());
    }
    let mut pieces: Vec<Option<String>> = vec![None; n];
    for (p, id) in vocab {
        match pieces.get_mut(id as usize) {
            Some(slot) => *slot = Some(p),
            None => return Err(format!("token id {id} of {p:?} is outside 0..{n}: ids are not dense")),
        }
    }
    let pieces: Vec<String> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.ok_or_else(|| format!("no token has id {i}")))
        .collect::<Result<_, _>>()?;
    let unk = match hf.get_model() {
        ModelWrapper::BPE(bpe) => bpe.get_unk_token().clone(),
        _ => return Err("the model is not BPE (only Llama-style BPE tokenizers are supported)".into()),
    };
    let added = hf.get_added_tokens_decoder();
    let types = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if unk.as_deref() == Some(p.as_str()) {
                TokenType::Unknown
            } else if let Some(t) = added.get(&(i as u32)) {
                if t.special {
                    TokenType::Control
                } else {
                    TokenType::UserDefined
                }
            } else {
                parse_byte_piece(p).map_or(TokenType::Normal, TokenType::Byte)
            }
        })
        .collect();
    Ok((pieces, types))
}
