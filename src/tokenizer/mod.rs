//! Llama SentencePiece BPE tokenizer built from GGUF metadata.
//!
//! Encoding runs on the `tokenizers` crate's BPE model. A lone .gguf carries
//! only the SentencePiece vocabulary (pieces, scores, types); the BPE merges
//! it implies are rebuilt here (see [`vocab`]). When a `tokenizer.json` sits
//! beside the .gguf file it is used for encoding instead. Decoding is our own
//! (SentencePiece's rules, streaming-safe), see [`StreamDecoder`].

mod decode;
mod vocab;

pub use decode::StreamDecoder;
pub use vocab::{implied_merges, parse_byte_piece, MAX_PIECE_BYTES};

use std::path::{Path, PathBuf};

use crate::gguf::{GgufFile, GgufHeader};
use vocab::{SpecialIds, Vocab};

/// SentencePiece's word-boundary marker, which stands for a space.
pub const SPACE_MARK: char = '\u{2581}';

/// A tokenizer problem, naming the file (the .gguf or tokenizer.json) and
/// what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {msg}", path.display())]
pub struct TokenizerError {
    pub path: PathBuf,
    pub msg: String,
}

impl TokenizerError {
    fn new(path: &Path, msg: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), msg: msg.into() }
    }
}

/// What a token is, from `tokenizer.ggml.token_type` (llama.cpp's numbering:
/// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    /// A byte-fallback token `<0xNN>` and its byte.
    Byte(u8),
}

pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    /// The file the tokenizer came from, for error messages.
    path: PathBuf,
    /// The tokenizer.json used for encoding, if any.
    json: Option<PathBuf>,
    pieces: Vec<String>,
    types: Vec<TokenType>,
    /// Each piece as decoded text (`▁` → space); empty for non-text tokens.
    texts: Vec<String>,
    special: SpecialIds,
}

impl Tokenizer {
    /// The tokenizer of an opened GGUF file: from a `tokenizer.json` beside
    /// it when there is one, else from its `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let json = file.path.parent().unwrap_or(Path::new(".")).join("tokenizer.json");
        if json.is_file() {
            Self::from_json_with_header(&json, Some((&file.header, &file.path)))
        } else {
            Self::from_gguf_header(&file.header, &file.path)
        }
    }

    /// The tokenizer described by GGUF metadata alone (no files are read).
    /// `path` names the file in errors. Never panics, whatever the header.
    pub fn from_gguf_header(header: &GgufHeader, path: &Path) -> Result<Tokenizer, TokenizerError> {
        let mut vocab = Vocab::from_header(header, path)?;
        let special = SpecialIds::from_header(header, path, &vocab)?;
        vocab.mark_special(&special);
        let hf = vocab.build_bpe(path, special.unk)?;
        Ok(Self::assemble(hf, path, None, vocab.pieces, vocab.types, special))
    }

    /// A tokenizer from a Hugging Face `tokenizer.json` (a Llama-style BPE
    /// with byte fallback). Special tokens are found by their pieces `<s>`,
    /// `</s>`; BOS is added by default, as for Llama.
    pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer, TokenizerError> {
        Self::from_json_with_header(path, None)
    }

    fn from_json_with_header(json: &Path, gguf: Option<(&GgufHeader, &Path)>) -> Result<Tokenizer, TokenizerError> {
        let err = |msg: String| TokenizerError::new(json, msg);
        let mut hf =
            tokenizers::Tokenizer::from_file(json).map_err(|e| err(format!("cannot load tokenizer.json: {e}")))?;
        // `<s>` typed in a prompt is text, as in SentencePiece, not a control token.
        hf.set_encode_special_tokens(true);
        let (pieces, types) = vocab::pieces_from_hf(&hf).map_err(err)?;
        let n = pieces.len();
        let special = match gguf {
            Some((header, gguf_path)) => {
                // The GGUF's own vocabulary, when present, must be the same size.
                if let Some(n_gguf) = vocab::token_count(header) {
                    if n_gguf != n {
                        return Err(TokenizerError::new(
                            gguf_path,
                            format!("{} has {n} tokens but the GGUF vocabulary has {n_gguf}", json.display()),
                        ));
                    }
                }
                SpecialIds::from_header_or_pieces(header, gguf_path, &pieces)?
            }
            None => SpecialIds::from_pieces(&pieces).map_err(err)?,
        };
        Ok(Self::assemble(hf, json, Some(json.to_path_buf()), pieces, types, special))
    }

    fn assemble(
        hf: tokenizers::Tokenizer,
        path: &Path,
        json: Option<PathBuf>,
        pieces: Vec<String>,
        types: Vec<TokenType>,
        special: SpecialIds,
    ) -> Tokenizer {
        let texts = pieces
            .iter()
            .zip(&types)
            .map(|(p, t)| match t {
                TokenType::Normal | TokenType::UserDefined | TokenType::Unused => p.replace(SPACE_MARK, " "),
                _ => String::new(),
            })
            .collect();
        Tokenizer { hf, path: path.to_path_buf(), json, pieces, types, texts, special }
    }

    /// Token ids of `text`, as SentencePiece encodes it (a leading `▁` is
    /// added, spaces become `▁`, unknown characters fall back to bytes), with
    /// BOS first when `add_bos`. Control-token text such as `<s>` is encoded
    /// as plain text.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .hf
            .encode(text, false)
            .map_err(|e| TokenizerError::new(&self.path, format!("cannot encode text: {e}")))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
        if add_bos {
            ids.push(self.special.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Like [`Tokenizer::encode`], but control-token text in `text` (`<s>`,
    /// `</s>`, ...) becomes those tokens, as llama.cpp does when it parses
    /// special tokens (for chat templates that spell out `<s>`). Each text
    /// fragment is encoded on its own, with its own leading `▁`.
    pub fn encode_special(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let controls: Vec<(u32, &str)> = (0..self.pieces.len() as u32)
            .filter(|&id| self.types[id as usize] == TokenType::Control)
            .map(|id| (id, self.piece(id)))
            .collect();
        let mut ids = if add_bos { vec![self.special.bos] } else { Vec::new() };
        let (mut start, mut pos) = (0, 0);
        while pos < text.len() {
            // The longest control piece starting here, if any.
            let found = controls.iter().filter(|(_, p)| text[pos..].starts_with(p)).max_by_key(|(_, p)| p.len());
            match found {
                Some(&(id, p)) => {
                    ids.extend(self.encode(&text[start..pos], false)?);
                    ids.push(id);
                    pos += p.len();
                    start = pos;
                }
                None => pos += text[pos..].chars().next().map_or(1, char::len_utf8),
            }
        }
        ids.extend(self.encode(&text[start..], false)?);
        Ok(ids)
    }

    /// The text of `ids`, as SentencePiece decodes it: control tokens are
    /// invisible, byte tokens are joined into UTF-8 (one U+FFFD per invalid
    /// byte), the leading space of the first piece is dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut dec = StreamDecoder::new();
        let mut out: String = ids.iter().map(|&id| dec.push(self, id)).collect();
        out.push_str(&dec.flush());
        out
    }

    /// The vocabulary piece of a token (`▁The`, `<0x0A>`, `<s>`); empty for
    /// an id outside the vocabulary.
    pub fn piece(&self, id: u32) -> &str {
        self.pieces.get(id as usize).map_or("", String::as_str)
    }

    /// The kind of a token; `None` outside the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The text a normal piece stands for (`▁The` → ` The`); empty for
    /// control, unknown and byte tokens and ids outside the vocabulary.
    pub fn piece_text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map_or("", String::as_str)
    }

    pub fn bos_id(&self) -> u32 {
        self.special.bos
    }
    pub fn eos_id(&self) -> u32 {
        self.special.eos
    }
    pub fn unk_id(&self) -> Option<u32> {
        self.special.unk
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad
    }
    /// Whether the file asks for BOS at the start of a prompt.
    pub fn add_bos(&self) -> bool {
        self.special.add_bos
    }
    /// Whether the file asks for EOS at the end of a prompt (never added by
    /// [`Tokenizer::encode`]; callers decide).
    pub fn add_eos(&self) -> bool {
        self.special.add_eos
    }
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
    /// End of generation: EOS, and EOT/EOM when the file names them.
    pub fn is_eog(&self, id: u32) -> bool {
        self.special.eog.contains(&id)
    }
    /// The tokenizer.json used for encoding, when one was found.
    pub fn tokenizer_json(&self) -> Option<&Path> {
        self.json.as_deref()
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("json", &self.json)
            .field("vocab_size", &self.pieces.len())
            .field("special", &self.special)
            .finish()
    }
}
