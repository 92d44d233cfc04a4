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

/// Whether the copies fit in memory beside the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Memory {
    /// The copies and the whole file fit: the file stays in the page
    /// cache, so the next load is warm.
    Ample,
    /// The copies fit but not beside the whole file: each matrix's file
    /// pages are dropped from the page cache once copied, or they would
    /// push out pages still to be read and the load would read them from
    /// disk again (7B BF16, 13 GB, on 24 GB: 16 to 82 s instead of 7).
    Tight,
    /// The copies would not fit (within 90% of the available memory):
    /// nothing is repacked, the row-major kernels read the file's map,
    /// which the kernel can page in and out as it needs.
    Short,
}

impl Memory {
    fn plan(copies: usize, file: usize, available: Option<u64>) -> Self {
        let Some(available) = available else { return Memory::Ample };
        let (copies, file) = (copies as u64, file as u64);
        if copies > available / 10 * 9 {
            Memory::Short
        } else if copies + file > available {
            Memory::Tight
        } else {
            Memory::Ample
        }
    }
}

/// What [`repack`] did.
pub struct Repacked {
    /// The copies, or `None` when nothing was repacked.
    pub map: Option<memmap2::MmapMut>,
    /// Whether matrices that have an interleaved layout were left in the
    /// file's map because their copies would not fit in memory.
    pub short_of_memory: bool,
}

/// Repack every matrix that has an interleaved layout into one anonymous
/// map, recording each one's place in `WeightRef::packed` (nothing when
/// there is nothing to repack, or too little memory for the copies:
/// [`Memory`]).
pub fn repack(file: &GgufFile, weights: &mut Weights) -> std::io::Result<Repacked> {
    let none = |short_of_memory| Ok(Repacked { map: None, short_of_memory });
    if !enabled() {
        return none(false);
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
        return none(false);
    }
    // Each matrix at a 64-byte boundary (a cache line).
    let padded = |w: &WeightRef| w.range.len().div_ceil(64) * 64;
    let total: usize = todo.iter().map(|w| padded(w)).sum();
    let memory = Memory::plan(total, file.bytes().len(), super::available_memory());
    if memory == Memory::Short {
        return none(true);
    }
    let mut at = 0;
    for w in todo.iter_mut() {
        w.packed = Some(at..at + w.range.len());
        at += padded(w);
    }
    let mut map = memmap2::MmapMut::map_anon(total)?;
    // Fewer page faults while filling it; harmless where unsupported.
    let _ = map.advise(memmap2::Advice::HugePage);
    // Fault the pages in up front, from every thread: one call per 64 MiB
    // instead of one trap per 4 KiB page, which costs microseconds each in
    // a virtual machine. Harmless where unsupported (Linux < 5.14): the
    // pages then fault in as they are written. Not when memory is tight:
    // all of them at once would push out the file pages still to be read.
    const POPULATE: usize = 64 << 20;
    if memory == Memory::Ample {
        (0..total.div_ceil(POPULATE)).into_par_iter().for_each(|i| {
            let len = POPULATE.min(total - i * POPULATE);
            let _ = map.advise_range(memmap2::Advice::PopulateWrite, i * POPULATE, len);
        });
    }

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
            if memory == Memory::Tight {
                file.drop_cached(w.range.clone());
            }
        }
    });
    Ok(Repacked { map: Some(map), short_of_memory: false })
}

#[cfg(test)]
mod tests {
    use super::Memory;

    #[test]
    fn copies_that_do_not_fit_beside_the_file_drop_its_pages_and_copies_that_do_not_fit_are_not_made() {
        const G: u64 = 1 << 30;
        let plan = |copies: u64, file: u64, avail: u64| Memory::plan(copies as usize, file as usize, Some(avail));
        // 7B Q4_0 on 24 GB: both fit.
        assert_eq!(plan(3 * G + G / 2, 3 * G + G / 2 + G / 8, 23 * G), Memory::Ample);
        // 7B BF16 on 24 GB: the copies fit, not beside the file.
        assert_eq!(plan(13 * G, 13 * G + G / 2, 23 * G), Memory::Tight);
        // 7B BF16 on 16 GB: not even the copies.
        assert_eq!(plan(13 * G, 13 * G + G / 2, 14 * G), Memory::Short);
        // Unknown memory: as before.
        assert_eq!(Memory::plan(1 << 40, 1 << 40, None), Memory::Ample);
    }
}
