//! Any bytes: the header parser must return Ok or Err, never panic, read out
//! of bounds or allocate beyond what the input justifies. Accepted headers
//! must also be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qllama::gguf::GgufHeader;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = GgufHeader::parse(data, Path::new("fuzz.gguf")) else { return };
    assert!(h.alignment.is_power_of_two());
    assert_eq!(h.data_offset % h.alignment as u64, 0);
    for t in &h.tensors {
        let end = h.data_offset + t.offset + t.size;
        assert!(end <= data.len() as u64, "tensor {} past the end", t.name);
        assert_eq!(t.offset % h.alignment as u64, 0);
    }
    for (_, v) in &h.metadata {
        let _ = v.display_short();
    }
});
