//! The one interface the runtime needs: `out = x · Wᵀ` for a quantized weight
//! matrix `W` and a batch of f32 activation rows `x`.
//!
//! As in ggml, the activations are quantized once to the weight type's
//! `vec_dot_type`, then every (token, row) pair is one row dot product. Work is
//! split over output rows across rayon threads, so each weight byte is read
//! once per batch while the quantized activations stay in cache.

use crate::dtype::GgmlDType;
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_imports))]
use crate::formats::{cast_blocks, BlockQ8_0};
use crate::simd::{self, Isa};
use rayon::prelude::*;

/// Multi-token kernels for prompt batches (x86-64 only; they sit with the
/// other SIMD files but are private to matmul's batched path).
#[cfg(target_arch = "x86_64")]
#[path = "simd/tiled.rs"]
pub mod tiled;

/// A row-major weight matrix of `rows` rows of `cols` values, in `dtype`
/// blocks, borrowed (typically from a memory-mapped file).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub dtype: GgmlDType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    row_bytes: usize,
}

impl<'a> QMatrix<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` values of
    /// `dtype` and that the type can be used as matmul weights.
    pub fn new(dtype: GgmlDType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, String> {
        if !dtype.can_dot() {
            return Err(format!("tensor type {dtype} has no matmul kernel"));
        }
        let row_bytes = dtype
            .row_bytes(cols)
            .ok_or_else(|| format!("row of {cols} values is not a whole number of {dtype} blocks"))?;
        let want = row_bytes.checked_mul(rows).ok_or_else(|| "matrix size overflows".to_string())?;
        if data.len() != want {
            return Err(format!("{rows}x{cols} {dtype} needs {want} bytes, got {}", data.len()));
        }
        let align = match dtype {
            GgmlDType::F32 => 4,
            _ => 2,
        };
        if data.as_ptr().align_offset(align) != 0 {
            return Err(format!("{dtype} data is not {align}-byte aligned"));
        }
        Ok(Self { dtype, rows, cols, data, row_bytes })
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// Buffers reused across calls so the token loop does not allocate.
#[derive(Default)]
pub struct MatmulScratch {
    /// Quantized activations; u64 storage keeps every block type aligned.
    act: Vec<u64>,
    /// The activation blocks' scales as f32, for the tiled path.
    act_d: Vec<f32>,
}

/// `len` bytes of `buf`, grown as needed.
fn scratch_bytes(buf: &mut Vec<u64>, len: usize) -> &mut [u8] {
    let words = len.div_ceil(8);
    if buf.len() < words {
        buf.resize(words, 0);
    }
    // SAFETY: u64 storage reinterpreted as bytes: any byte pattern is
    // valid, the length stays within the allocation, and the borrow of
    // `buf` keeps it alive and unique.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}

/// Rows per rayon task: enough work per task to hide scheduling, small
/// enough to balance two to sixteen threads.
const ROW_CHUNK: usize = 32;

/// `out[t * w.rows + r] = dot(x[t * w.cols ..][..w.cols], row r of w)` for
/// every token `t < n_tokens`.
pub fn matmul(w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    matmul_with(simd::isa(), w, x, n_tokens, out, scratch)
}

/// [`matmul`] on an explicit instruction set (for tests and benchmarks).
pub fn matmul_with(isa: Isa, w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    assert_eq!(x.len(), n_tokens * w.cols, "activation shape");
    assert_eq!(out.len(), n_tokens * w.rows, "output shape");
    let act_type = w.dtype.vec_dot_type();
    let act_row = act_type.row_bytes(w.cols).expect("weight rows are whole activation blocks");
    let MatmulScratch { act, act_d } = scratch;
    // Used by the tiled path only (x86-64).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    let scratch = act_d;
    let act = scratch_bytes(act, act_row * n_tokens);
    act.par_chunks_mut(act_row).zip(x.par_chunks(w.cols)).for_each(|(q, xs)| act_type.quantize_row(xs, q));
    let act: &[u8] = act;

    #[cfg(target_arch = "x86_64")]
    if n_tokens >= tiled::TILE && matches!(isa, Isa::Avx2 | Isa::Avx512) {
        let done = match w.dtype {
            GgmlDType::Q4_0 => tiled::q4_0_q8_0().map(|k| matmul_tiled(w, k, act, act_row, n_tokens, out, scratch)),
            GgmlDType::Q8_0 => tiled::q8_0_q8_0().map(|k| matmul_tiled(w, k, act, act_row, n_tokens, out, scratch)),
            _ => None,
        };
        if done.is_some() {
            return;
        }
    }

    let rows = w.rows;
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..rows.div_ceil(ROW_CHUNK)).into_par_iter().for_each(|chunk| {
        let out_ptr = &out_ptr;
        let r0 = chunk * ROW_CHUNK;
        let r1 = (r0 + ROW_CHUNK).min(rows);
        for t in 0..n_tokens {
            let a = &act[t * act_row..(t + 1) * act_row];
            for r in r0..r1 {
                let v = w.dtype.vec_dot(isa, w.row(r), a);
                // SAFETY: index t*rows + r is in bounds (asserted shape) and
                // each (t, r) is written by exactly one task, since tasks own
                // disjoint row ranges; `out` outlives the parallel loop.
                unsafe { *out_ptr.0.add(t * rows + r) = v };
            }
        }
    });
}

/// The batched path for weights whose activations are Q8_0: within each
/// chunk of rows, tiles of [`tiled::TILE`] tokens are dotted against each row
/// in one pass over its blocks; leftover tokens use the one-token dot.
#[cfg(target_arch = "x86_64")]
fn matmul_tiled<W: crate::GgmlType>(
    w: &QMatrix,
    kernel: tiled::TileDot<W>,
    act: &[u8],
    act_row: usize,
    n_tokens: usize,
    out: &mut [f32],
    act_d: &mut Vec<f32>,
) {
    use tiled::TILE;
    let y: &[BlockQ8_0] = cast_blocks(act);
    let nb = y.len() / n_tokens;
    act_d.clear();
    act_d.extend(y.iter().map(|b| f32::from(b.d)));
    let yd: &[f32] = act_d;
    let rows_of = |t: usize| (t * nb)..((t + 1) * nb);
    let rows = w.rows;
    let full = n_tokens / TILE * TILE;
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..rows.div_ceil(ROW_CHUNK)).into_par_iter().for_each(|chunk| {
        let out_ptr = &out_ptr;
        let r0 = chunk * ROW_CHUNK;
        let r1 = (r0 + ROW_CHUNK).min(rows);
        for t0 in (0..full).step_by(TILE) {
            let tile = tiled::Tile {
                y: std::array::from_fn(|i| &y[rows_of(t0 + i)]),
                yd: std::array::from_fn(|i| &yd[rows_of(t0 + i)]),
            };
            for r in r0..r1 {
                let v = kernel(cast_blocks::<W>(w.row(r)), &tile);
                for (i, v) in v.into_iter().enumerate() {
                    // SAFETY: as in `matmul_with`: in bounds, and each (t, r)
                    // is written by the one task that owns row r.
                    unsafe { *out_ptr.0.add((t0 + i) * rows + r) = v };
                }
            }
        }
        for t in full..n_tokens {
            let a = &act[t * act_row..(t + 1) * act_row];
            for r in r0..r1 {
                let v = w.dtype.vec_dot(Isa::Avx2, w.row(r), a);
                // SAFETY: as above.
                unsafe { *out_ptr.0.add(t * rows + r) = v };
            }
        }
    });
}

struct SendPtr(*mut f32);
// SAFETY: used only to write disjoint elements from different threads.
unsafe impl Sync for SendPtr {}
