//! Decoding token ids to text, one token at a time.

use super::{TokenType, Tokenizer, SPACE_MARK};

/// What SentencePiece prints for the unknown token.
const UNK_SURFACE: &str = " \u{2047} ";

/// Turns a stream of token ids into text as it becomes complete.
///
/// Byte-fallback tokens are held until they form a whole UTF-8 character, so
/// a character split over several tokens is emitted once, whole; bytes that
/// can never form one come out as one U+FFFD each (as SentencePiece does).
/// Like SentencePiece's decode, the leading space of the first text piece of
/// the stream (BOS and other control tokens do not count) is dropped: feed it
/// the prompt as well, or use [`StreamDecoder::continuing`] for text that
/// continues something already shown.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// Byte tokens not yet forming a whole character.
    pending: Vec<u8>,
    /// Whether a visible token has been seen (no leading space to drop).
    started: bool,
}

impl StreamDecoder {
    /// A decoder at the start of a text.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for tokens that continue text already shown: nothing is
    /// stripped from the first piece.
    pub fn continuing() -> Self {
        Self { pending: Vec::new(), started: true }
    }

    /// Feed one token; returns the text completed by it (often empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        let mut out = String::new();
        match tok.token_type(id) {
            Some(TokenType::Byte(b)) => {
                self.started = true;
                self.pending.push(b);
                drain_utf8(&mut self.pending, &mut out, false);
            }
            other => {
                // Any other token ends a run of bytes.
                drain_utf8(&mut self.pending, &mut out, true);
                match other {
                    Some(TokenType::Control) => {}
                    Some(TokenType::Unknown) | None => {
                        self.started = true;
                        out.push_str(UNK_SURFACE);
                    }
                    Some(_) => {
                        let text = tok.piece_text(id);
                        if self.started {
                            out.push_str(text);
                        } else {
                            self.started = true;
                            // Drop the dummy prefix: a piece's `▁` decodes to one space byte.
                            let dummy = tok.piece(id).starts_with(SPACE_MARK);
                            out.push_str(if dummy { &text[1..] } else { text });
                        }
                    }
                }
            }
        }
        out
    }

    /// End of stream: bytes still waiting for the rest of a character come
    /// out as U+FFFD, one per byte.
    pub fn flush(&mut self) -> String {
        let mut out = String::new();
        drain_utf8(&mut self.pending, &mut out, true);
        out
    }
}

/// Move the complete characters at the front of `bytes` to `out`; invalid
/// bytes become U+FFFD each. An incomplete character at the end stays in
/// `bytes` unless `finish`.
fn drain_utf8(bytes: &mut Vec<u8>, out: &mut String, finish: bool) {
    let mut rest: &[u8] = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (valid, tail) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                if e.error_len().is_none() && !finish {
                    // A character still being completed.
                    rest = tail;
                    break;
                }
                out.push(char::REPLACEMENT_CHARACTER);
                rest = &tail[1..];
            }
        }
    }
    let keep = rest.len();
    let start = bytes.len() - keep;
    bytes.drain(..start);
}
