//! Whole-tensor quantization across threads, for the converter and for
//! re-quantizing weights at load time.

use crate::dtype::GgmlDType;
use rayon::prelude::*;

/// Rows per rayon task: blocks are independent, so any split gives the same
/// bytes; this only keeps tasks big enough to be worth scheduling.
const ROWS_PER_TASK: usize = 16;

/// Quantize `src`, rows of `row_len` values, into `dst` as `dtype`, in
/// parallel. The result is bit-identical to quantizing row by row.
///
/// Panics when `dtype` cannot be quantized, `row_len` is not a whole number of
/// blocks, or the buffer sizes do not match; `dst` must be aligned for the
/// type's blocks (2 bytes, 4 for f32), as [`GgmlDType::quantize_row`] requires.
pub fn quantize_rows_par(dtype: GgmlDType, src: &[f32], row_len: usize, dst: &mut [u8]) {
    assert!(dtype.can_quantize(), "cannot quantize to {dtype}");
    assert!(row_len > 0, "rows must not be empty");
    let row_bytes = dtype
        .row_bytes(row_len)
        .unwrap_or_else(|| panic!("row of {row_len} values is not a whole number of {dtype} blocks"));
    assert!(src.len().is_multiple_of(row_len), "{} values is not a whole number of rows of {row_len}", src.len());
    let rows = src.len() / row_len;
    assert_eq!(dst.len(), rows * row_bytes, "{rows} rows of {dtype} need {} bytes", rows * row_bytes);

    let tasks = dst.par_chunks_mut(row_bytes * ROWS_PER_TASK).zip(src.par_chunks(row_len * ROWS_PER_TASK));
    tasks.for_each(|(dst, src)| {
        for (d, s) in dst.chunks_exact_mut(row_bytes).zip(src.chunks_exact(row_len)) {
            dtype.quantize_row(s, d);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aligned byte buffer (u64 storage), as block casts need.
    fn zeroed(len: usize) -> Vec<u64> {
        vec![0; len.div_ceil(8)]
    }

    fn bytes(v: &mut [u64], len: usize) -> &mut [u8] {
        // SAFETY: u64 storage viewed as bytes; `len` is within the allocation
        // (`zeroed` rounds up) and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) }
    }

    #[test]
    fn parallel_equals_sequential() {
        // 37 rows: not a multiple of ROWS_PER_TASK, so the last task is short.
        // 256 columns: a whole number of blocks of every type, K-quants included.
        let (rows, row_len) = (37, 256);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let src: Vec<f32> = (0..rows * row_len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                // Vary the magnitude per row so row scales differ.
                v * (1 + i / row_len) as f32
            })
            .collect();
        for dtype in GgmlDType::ALL.into_iter().filter(|t| t.can_quantize()) {
            let len = dtype.row_bytes(row_len).unwrap() * rows;
            let (mut par, mut seq) = (zeroed(len), zeroed(len));
            quantize_rows_par(dtype, &src, row_len, bytes(&mut par, len));
            let seq_bytes = bytes(&mut seq, len);
            let row_bytes = len / rows;
            for (d, s) in seq_bytes.chunks_exact_mut(row_bytes).zip(src.chunks_exact(row_len)) {
                dtype.quantize_row(s, d);
            }
            assert!(par == seq, "{dtype}: parallel quantization differs from sequential");
            assert!(seq.iter().any(|&w| w != 0), "{dtype}: nothing was written");
        }
    }

    #[test]
    #[should_panic(expected = "not a whole number of q4_0 blocks")]
    fn partial_blocks_are_rejected() {
        let mut dst = zeroed(64);
        quantize_rows_par(GgmlDType::Q4_0, &[0.0; 48], 48, bytes(&mut dst, 36));
    }
}
