//! Tokenizers built from untrusted GGUF metadata: building must fail cleanly
//! or give a tokenizer that encodes and decodes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qllama::gguf::GgufHeader;
use qllama::tokenizer::Tokenizer;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.gguf");
    let Ok(h) = GgufHeader::parse(data, path) else { return };
    let Ok(tok) = Tokenizer::from_gguf_header(&h, path) else { return };
    if let Ok(ids) = tok.encode("Hello ab, wörld! \u{1F999}", true) {
        let _ = tok.decode(&ids);
    }
    // Every id, valid or not, must decode.
    let n = tok.vocab_size() as u32;
    let _ = tok.decode(&[0, n.saturating_sub(1), n, u32::MAX]);
});
