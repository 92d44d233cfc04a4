//! Repacking at load: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K matrices are copied
//! once into the row-interleaved layout the x86-64 kernels read fastest
//! (`qllama_kernels::formats::interleaved`), and the mapped file pages they
//! came from are released, so resident memory stays at about the file size.
//! The file itself is never changed. `QLLAMA_REPACK=0` keeps every matrix in
//! the map.

use super::{WeightRef, Weights};
use crate::gguf::GgufFile;
use qllama_kernels::formats::interleaved;
use qllama_kernels::simd::{self, Isa};
use rayon::prelude::*;

/// Whether matrices are repacked on this machine: the interleaved kernels
/// are AVX2 (elsewhere the row-major kernels are as fast as they get).
pub fn enabled() -> bool {
    let off = std::env::var("QLLAMA_REPACK").is_ok_and(|v| v.trim() == "0");
    !off && matches!(simd::isa(), Isa::Avx2 | Isa::Avx512)
}

/// Repack every matrix that has an interleaved layout into one anonymous
/// map, recording each one's place in `WeightRef::packed`. Returns the map,
/// or `None` when nothing was repacked.
pub fn repack(file: &GgufFile, weights: &mut Weights) -> std::io::Result<Option<memmap2::MmapMut>> {
    if !enabled() {
        return Ok(None);
    }
    let embd = weights.token_embd.range.clone();
    let mut todo: Vec<&mut WeightRef> = weights
        .layers
        .iter_mut()
        .flat_map(|l| [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w_gate, &mut l.w_up, &mut l.w_down])
        .chain(std::iter::once(&mut weights.output))
        .filter(|w| interleaved::can_interleave(w.dtype, w.rows, w.cols))
        .collect();
    if todo.is_empty() {
        return Ok(None);
    }
    // Each matrix at a 64-byte boundary (a cache line).
    let mut total = 0;
    for w in todo.iter_mut() {
        let len = w.range.len();
        w.packed = Some(total..total + len);
        total += len.div_ceil(64) * 64;
    }
    let mut map = memmap2::MmapMut::map_anon(total)?;
    // Fewer page faults while filling it; harmless where unsupported.
    let _ = map.advise(memmap2::Advice::HugePage);
    // Fault the pages in up front, from every thread: one call per 64 MiB
    // instead of one trap per 4 KiB page, which costs microseconds each in
    // a virtual machine. Harmless where unsupported (Linux < 5.14): the
    // pages then fault in as they are written.
    const POPULATE: usize = 64 << 20;
    (0..total.div_ceil(POPULATE)).into_par_iter().for_each(|i| {
        let len = POPULATE.min(total - i * POPULATE);
        let _ = map.advise_range(memmap2::Advice::PopulateWrite, i * POPULATE, len);
    });

    let mut jobs = Vec::with_capacity(todo.len());
    let mut rest: &mut [u8] = &mut map;
    let mut at = 0;
    for w in &todo {
        let r = w.packed.clone().expect("set above");
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (dst, tail) = tail.split_at_mut(r.len());
        rest = tail;
        at = r.end;
        jobs.push((&**w, dst));
    }
    jobs.into_par_iter().for_each(|(w, dst)| {
        interleaved::interleave(w.dtype, w.rows, &file.bytes()[w.range.clone()], dst);
        // The embeddings are still read from the map when the output head
        // shares their tensor.
        if w.range != embd {
            file.release(w.range.clone());
        }
    });
    Ok(Some(map))
}
