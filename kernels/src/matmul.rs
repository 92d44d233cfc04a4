//! The one interface the runtime needs: `out = x · Wᵀ` for a quantized weight
//! matrix `W` and a batch of f32 activation rows `x`.
//!
//! As in ggml, the activations are quantized once to the weight type's
//! `vec_dot_type`, then every (token, row) pair is one row dot product. Work is
//! split over output rows across rayon threads, so each weight byte is read
//! once per batch while the quantized activations stay in cache.

use crate::dtype::GgmlDType;
use crate::formats::interleaved::{
    self, BlockQ4Kx8, BlockQ4_0x8, BlockQ4_1x8, BlockQ5Kx8, BlockQ5_0x8, BlockQ5_1x8, BlockQ6Kx8, BlockQ8_0x8,
    FLOAT_ROWS, ROWS,
};
use crate::formats::{cast_blocks, BlockQ8K};
use crate::simd::rowtile;
use crate::simd::scalar::BlockInts;
use crate::simd::x8::{self, ActBuf, X8Dot};
use crate::simd::x8k::{self, pair_sums, ActK, X8KDot};
use crate::simd::xf::{self, FloatAct, FloatWeight};
use crate::simd::{self, Isa};
use crate::team;
use rayon::prelude::*;
use std::ops::Range;

/// How a matrix's blocks are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row after row, as in the file.
    Rows,
    /// Groups of eight rows interleaved block by block
    /// (`formats::interleaved`), repacked at load.
    Interleaved,
}

/// A weight matrix of `rows` rows of `cols` values, in `dtype` blocks,
/// borrowed (from a memory-mapped file, or a repacked copy of it).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub dtype: GgmlDType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    pub layout: Layout,
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
        Ok(Self { dtype, rows, cols, data, layout: Layout::Rows, row_bytes })
    }

    /// A matrix whose `data` was made by [`interleaved::interleave`].
    pub fn interleaved(dtype: GgmlDType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, String> {
        if !interleaved::can_interleave(dtype, rows, cols) {
            return Err(format!("{rows} rows of {dtype} have no interleaved layout"));
        }
        Ok(Self { layout: Layout::Interleaved, ..Self::new(dtype, rows, cols, data)? })
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Row `r`'s bytes (row-major matrices only).
    pub fn row(&self, r: usize) -> &'a [u8] {
        assert_eq!(self.layout, Layout::Rows, "rows of an interleaved matrix are not contiguous");
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// Buffers reused across calls so the token loop does not allocate.
#[derive(Default)]
pub struct MatmulScratch {
    /// Quantized activations; u64 storage keeps every block type aligned.
    act: Vec<u64>,
    /// The activations packed for the interleaved Q4_0/Q8_0 kernels.
    x8: ActBuf,
    /// The Q8_K activations' sub-block sums in pairs, for the interleaved
    /// K-quant kernels.
    act_pairs: Vec<[i32; 4]>,
    /// The activations rounded to F16 or BF16 and widened back to f32, for
    /// the interleaved float kernels.
    widened: Vec<f32>,
}

/// What the interleaved kernels read beside the quantized activations, as
/// [`prepare`] made it for the current weight type.
#[derive(Clone, Copy)]
struct Prepared<'a> {
    x8: &'a ActBuf,
    pairs: &'a [[i32; 4]],
    widened: &'a [f32],
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

/// Rows per rayon task on the row-major path: enough work per task to hide
/// scheduling, small enough to balance two to sixteen threads.
const ROW_CHUNK: usize = 32;

/// `out[t * w.rows + r] = dot(x[t * w.cols ..][..w.cols], row r of w)` for
/// every token `t < n_tokens`.
pub fn matmul(w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    matmul_with(simd::isa(), w, x, n_tokens, out, scratch)
}

/// [`matmul`] on an explicit instruction set (for tests and benchmarks).
pub fn matmul_with(isa: Isa, w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    matmul_many_with(isa, &mut [(*w, out)], x, n_tokens, scratch)
}

/// `out = x · Wᵀ` for each `(W, out)` of `products`, matrices that read the
/// same activations (Q, K and V; gate and up): the activations are
/// quantized, and packed for the interleaved kernels, once for all of them
/// where their weight types agree, and products of one type and layout run
/// side by side, so no thread waits between them.
pub fn matmul_many(products: &mut [(QMatrix, &mut [f32])], x: &[f32], n_tokens: usize, scratch: &mut MatmulScratch) {
    matmul_many_with(simd::isa(), products, x, n_tokens, scratch)
}

/// [`matmul_many`] on an explicit instruction set.
pub fn matmul_many_with(
    isa: Isa,
    products: &mut [(QMatrix, &mut [f32])],
    x: &[f32],
    n_tokens: usize,
    scratch: &mut MatmulScratch,
) {
    // What `act` holds (activations quantized to this type), and which
    // weight type `x8` or `act_pairs` were last made for from it.
    let mut quantized: Option<GgmlDType> = None;
    let mut packed_for: Option<GgmlDType> = None;
    let mut rest = products;
    while let Some((first, _)) = rest.first() {
        let (dtype, layout) = (first.dtype, first.layout);
        let n = rest.iter().take_while(|(w, _)| w.dtype == dtype && w.layout == layout).count();
        let (run, tail) = rest.split_at_mut(n);
        rest = tail;
        for (w, out) in run.iter() {
            assert_eq!(x.len(), n_tokens * w.cols, "activation shape");
            assert_eq!(out.len(), n_tokens * w.rows, "output shape");
        }
        let w = run[0].0;
        let act_type = dtype.vec_dot_type();
        let act_row = act_type.row_bytes(w.cols).expect("weight rows are whole activation blocks");
        let MatmulScratch { act, x8, act_pairs, widened } = &mut *scratch;
        let act: &mut [u8] = scratch_bytes(act, act_row * n_tokens);
        if quantized != Some(act_type) {
            act.par_chunks_mut(act_row).zip(x.par_chunks(w.cols)).for_each(|(q, xs)| act_type.quantize_row(xs, q));
            quantized = Some(act_type);
            packed_for = None;
        }
        if layout == Layout::Interleaved && packed_for != Some(dtype) {
            prepare(isa, &w, act, n_tokens, x8, act_pairs, widened);
            packed_for = Some(dtype);
        }
        let act: &[u8] = act;
        let prepared = Prepared { x8, pairs: act_pairs, widened };
        match run {
            [(w, out)] => product(isa, w, act, n_tokens, out, prepared),
            // A team hands each product's tasks out as they come.
            run if team::leading() => {
                for (w, out) in run.iter_mut() {
                    product(isa, w, act, n_tokens, out, prepared);
                }
            }
            run => rayon::scope(|s| {
                for (w, out) in run.iter_mut() {
                    s.spawn(move |_| product(isa, w, act, n_tokens, out, prepared));
                }
            }),
        }
    }
}

/// What the interleaved kernels for `w` read beside the activations,
/// quantized in `act`: the packed Q8_0 blocks, the Q8_K blocks'
/// sub-block sums in pairs, or the F16/BF16 values widened to f32.
fn prepare(
    isa: Isa,
    w: &QMatrix,
    act: &[u8],
    n_tokens: usize,
    x8: &mut ActBuf,
    act_pairs: &mut Vec<[i32; 4]>,
    widened: &mut Vec<f32>,
) {
    match w.dtype {
        GgmlDType::F16 | GgmlDType::BF16 if !xf::reads_bf16(isa, w.dtype) => {
            widened.resize(n_tokens * w.cols, 0.0);
            let act_type = w.dtype.vec_dot_type();
            let act_row = act.len() / n_tokens;
            widened
                .par_chunks_mut(w.cols)
                .zip(act.par_chunks(act_row))
                .for_each(|(x, a)| act_type.dequantize_row(a, x));
        }
        GgmlDType::F16 | GgmlDType::BF16 | GgmlDType::F32 => {}
        GgmlDType::Q4K => pair_sums_for::<BlockQ4Kx8>(cast_blocks(act), act_pairs),
        GgmlDType::Q5K => pair_sums_for::<BlockQ5Kx8>(cast_blocks(act), act_pairs),
        GgmlDType::Q6K => pair_sums_for::<BlockQ6Kx8>(cast_blocks(act), act_pairs),
        GgmlDType::Q4_0 => pack_for::<BlockQ4_0x8>(isa, act, n_tokens, x8),
        GgmlDType::Q4_1 => pack_for::<BlockQ4_1x8>(isa, act, n_tokens, x8),
        GgmlDType::Q5_0 => pack_for::<BlockQ5_0x8>(isa, act, n_tokens, x8),
        GgmlDType::Q5_1 => pack_for::<BlockQ5_1x8>(isa, act, n_tokens, x8),
        GgmlDType::Q8_0 => pack_for::<BlockQ8_0x8>(isa, act, n_tokens, x8),
        other => unreachable!("QMatrix::interleaved admits no {other}"),
    }
}

fn pack_for<X: X8Dot>(isa: Isa, act: &[u8], n_tokens: usize, x8: &mut ActBuf) {
    x8.pack::<X::Act>(cast_blocks(act), n_tokens, X::tile(isa), X::needs(isa), X::BIAS);
}

fn pair_sums_for<X: X8KDot>(y: &[BlockQ8K], pairs: &mut Vec<[i32; 4]>) {
    pairs.clear();
    if X::NEEDS_PAIRS {
        pairs.extend(y.iter().map(pair_sums));
    }
}

/// One product on activations quantized to `w`'s `vec_dot_type` in `act`
/// and, for an interleaved `w`, what [`prepare`] made of them.
fn product(isa: Isa, w: &QMatrix, act: &[u8], n_tokens: usize, out: &mut [f32], prepared: Prepared) {
    if w.layout == Layout::Interleaved {
        let Prepared { x8, pairs, widened } = prepared;
        // The float kernels' activations: as rounded to the weight type,
        // widened to f32 unless they are read as BF16.
        let float_act = || match w.dtype {
            GgmlDType::F32 => FloatAct::F32(cast_blocks(act)),
            dtype if xf::reads_bf16(isa, dtype) => FloatAct::Bf16(cast_blocks(act)),
            _ => FloatAct::F32(widened),
        };
        match w.dtype {
            GgmlDType::Q4K => matmul_x8k::<BlockQ4Kx8>(isa, w, cast_blocks(act), n_tokens, out, pairs),
            GgmlDType::Q5K => matmul_x8k::<BlockQ5Kx8>(isa, w, cast_blocks(act), n_tokens, out, pairs),
            GgmlDType::Q6K => matmul_x8k::<BlockQ6Kx8>(isa, w, cast_blocks(act), n_tokens, out, pairs),
            GgmlDType::F16 => matmul_xf::<half::f16>(isa, w, n_tokens, out, float_act()),
            GgmlDType::BF16 => matmul_xf::<half::bf16>(isa, w, n_tokens, out, float_act()),
            GgmlDType::F32 => matmul_xf::<f32>(isa, w, n_tokens, out, float_act()),
            GgmlDType::Q4_0 => matmul_x8::<BlockQ4_0x8>(isa, w, n_tokens, out, x8),
            GgmlDType::Q4_1 => matmul_x8::<BlockQ4_1x8>(isa, w, n_tokens, out, x8),
            GgmlDType::Q5_0 => matmul_x8::<BlockQ5_0x8>(isa, w, n_tokens, out, x8),
            GgmlDType::Q5_1 => matmul_x8::<BlockQ5_1x8>(isa, w, n_tokens, out, x8),
            GgmlDType::Q8_0 => matmul_x8::<BlockQ8_0x8>(isa, w, n_tokens, out, x8),
            other => unreachable!("QMatrix::interleaved admits no {other}"),
        }
        return;
    }

    let act_row = act.len() / n_tokens;
    let rows = w.rows;
    let tile = if n_tokens >= rowtile::TILE { rowtile::row_tile(isa, w.dtype) } else { None };
    let full = if tile.is_some() { n_tokens / rowtile::TILE * rowtile::TILE } else { 0 };
    let out_ptr = SendPtr(out.as_mut_ptr());
    team::for_each(rows.div_ceil(ROW_CHUNK), |chunk| {
        let out_ptr = &out_ptr;
        let r0 = chunk * ROW_CHUNK;
        let r1 = (r0 + ROW_CHUNK).min(rows);
        if let Some(kernel) = tile {
            for t0 in (0..full).step_by(rowtile::TILE) {
                let a = &act[t0 * act_row..(t0 + rowtile::TILE) * act_row];
                for r in r0..r1 {
                    let mut v = [0.0; rowtile::TILE];
                    kernel(w.row(r), a, &mut v);
                    for (i, v) in v.into_iter().enumerate() {
                        // SAFETY: as below: in bounds, and each (t, r) is
                        // written by the one task that owns row r.
                        unsafe { *out_ptr.0.add((t0 + i) * rows + r) = v };
                    }
                }
            }
        }
        for t in full..n_tokens {
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

/// The most tokens any interleaved kernel takes at once.
const MAX_TILE: usize = 8;

/// Weight bytes a task keeps in L2 while every tile of tokens passes over
/// them: half of a core's L2, the other half for the activations
/// streaming through. (7B Q8_0 products on one thread, G MAC/s for
/// 4096x4096, 11008x4096, 4096x11008: tokens outermost in L2-sized chunks
/// with weights streaming past 238/214/216 and 236/225/214; 64-row panels
/// of weights with tokens streaming 246/254/240 and 251/251/205; 128-row
/// panels 242/252/228 and 246/252/225.)
fn panel_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| l2_bytes().map_or(256 * 1024, |b| (b / 2).clamp(128 * 1024, 4 << 20)))
}

/// The L2 data cache of CPU 0, from Linux's sysfs (`None` elsewhere).
fn l2_bytes() -> Option<usize> {
    (0..8).find_map(|i| {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        if read("level")?.trim() != "2" || read("type")?.trim() == "Instruction" {
            return None;
        }
        let size = read("size")?;
        let size = size.trim();
        let (num, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
        let mult = match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            _ => return None,
        };
        num.parse::<usize>().ok()?.checked_mul(mult)
    })
}

/// The interleaved Q4_0/Q8_0 path, on activations packed by [`prepare`]
/// tile by tile (`x8::ActBuf`), so that a tile's slice of blocks is one
/// contiguous run.
fn matmul_x8<X: X8Dot>(isa: Isa, w: &QMatrix, n_tokens: usize, out: &mut [f32], act: &ActBuf)
where
    X::Source: BlockInts,
{
    let tile = X::tile(isa);
    let blocks: &[X] = interleaved::cast(w.data);
    let nb = blocks.len() / (w.rows / ROWS);
    let group_bytes = std::mem::size_of_val(&blocks[..nb]);
    for_each_x8_tile(w.rows, n_tokens, group_bytes, tile, out, |g, tokens, o| {
        let group = |g: usize| &blocks[g * nb..(g + 1) * nb];
        let wg = [group(g.start), group(g.end - 1)];
        let a = act.tile(tokens, 0..nb);
        by_tile_len!(o, T in [1 2 3 4 5 6 7 8] => x8::gemm2::<X, T>(isa, wg, a, o.try_into().expect("tile length")));
    });
}

/// The interleaved K-quant path, on the same walk.
fn matmul_x8k<X: X8KDot>(isa: Isa, w: &QMatrix, y: &[BlockQ8K], n_tokens: usize, out: &mut [f32], pairs: &[[i32; 4]]) {
    let blocks: &[X] = interleaved::cast(w.data);
    let nb = y.len() / n_tokens;
    let group_bytes = std::mem::size_of_val(&blocks[..nb]);
    // (These kernels write their tile, which the walk zeroed.)
    for_each_x8_tile(w.rows, n_tokens, group_bytes, x8k::tile::<X>(isa), out, |g, tokens, o| {
        let group = |g: usize| &blocks[g * nb..(g + 1) * nb];
        let wg = [group(g.start), group(g.end - 1)];
        let span = tokens.start * nb..tokens.end * nb;
        let a = ActK { q: &y[span.clone()], pairs: if X::NEEDS_PAIRS { &pairs[span] } else { &[] } };
        by_tile_len!(o, T in [1 2 3 4 5 6 7 8] => x8k::gemm2::<X, T>(isa, wg, a, o.try_into().expect("tile length")));
    });
}

/// The interleaved float path (F16, BF16, F32), on the same walk: its
/// 16-row blocks are the walk's pairs of groups (the rows are a multiple
/// of 16, so every step is a whole, aligned pair).
fn matmul_xf<W: FloatWeight>(isa: Isa, w: &QMatrix, n_tokens: usize, out: &mut [f32], x: FloatAct) {
    let values: &[W] = cast_blocks(w.data);
    let block = FLOAT_ROWS * w.cols;
    for_each_x8_tile(w.rows, n_tokens, block * std::mem::size_of::<W>() / 2, xf::tile(isa), out, |g, tokens, o| {
        assert!(g.len() == 2 && g.start.is_multiple_of(2), "a whole 16-row block");
        let wb = &values[g.start / 2 * block..][..block];
        let x = x.rows(tokens, w.cols);
        by_tile_len!(o, T in [1 2 3 4 5 6 7 8] => xf::gemm::<W, T>(isa, wb, x, o.try_into().expect("tile length")));
    });
}

/// `$call` with `$T` a const equal to `$o.len()`, one of `$n`.
macro_rules! by_tile_len {
    ($o:ident, $T:ident in [$($n:literal)*] => $call:expr) => {
        match $o.len() {
            $($n => {
                const $T: usize = $n;
                $call
            })*
            n => unreachable!("tile of {n} tokens"),
        }
    };
}
use by_tile_len;

/// The walk of the interleaved paths. Tasks own runs of 8-row groups,
/// which they take in panels of about [`panel_bytes`] of weights
/// (`group_bytes` a group): every tile of up to `tile` tokens passes over a
/// panel's groups two at a time (16 rows, one AVX-512 register's worth),
/// so the panel's weights stay in L2 and a tile's activations in L1 while
/// they are used. `kernel(groups, tokens, o)` adds the products of
/// `groups` (one or two, adjacent) with `tokens` to `o` (`tokens.len()`
/// long, zeroed; group `i` of the range in `o[t][8i..8i + 8]`).
///
/// (Tried before: tokens outermost in chunks that stay in L2 while the
/// weights stream past, 5 to 15% slower; slicing the columns so that a
/// slice of weights stays in L1, no faster.)
fn for_each_x8_tile(
    rows: usize,
    n_tokens: usize,
    group_bytes: usize,
    tile: usize,
    out: &mut [f32],
    kernel: impl Fn(Range<usize>, Range<usize>, &mut [[f32; 2 * ROWS]]) + Sync,
) {
    assert!((1..=MAX_TILE).contains(&tile));
    let groups = rows / ROWS;
    // Tasks take pairs of groups, and so do panels, so steps of two stay
    // inside.
    let per_panel = (panel_bytes() / group_bytes.max(1)).max(2) / 2 * 2;
    let out_ptr = SendPtr(out.as_mut_ptr());
    team::for_each_range(groups.div_ceil(2), |pairs| {
        let out_ptr = &out_ptr;
        let my_groups = 2 * pairs.start..(2 * pairs.end).min(groups);
        let mut buf = [[0.0; 2 * ROWS]; MAX_TILE];
        for p in my_groups.clone().step_by(per_panel) {
            let panel = p..(p + per_panel).min(my_groups.end);
            for t in (0..n_tokens).step_by(tile) {
                let tokens = t..(t + tile).min(n_tokens);
                for g in panel.clone().step_by(2) {
                    let step = g..(g + 2).min(panel.end);
                    let n_rows = step.len() * ROWS;
                    for t in tokens.clone() {
                        let at = out_ptr.0.wrapping_add(t * rows + g * ROWS);
                        simd::prefetch_write(at);
                        simd::prefetch_write(at.wrapping_add(n_rows - 1));
                    }
                    let o = &mut buf[..tokens.len()];
                    o.fill([0.0; 2 * ROWS]);
                    kernel(step, tokens.clone(), o);
                    for (i, v) in o.iter().enumerate() {
                        // SAFETY: token t+i < n_tokens and rows g*8 ..
                        // g*8 + n_rows are in bounds (asserted shapes);
                        // each (token, row) is written by the one task
                        // owning its group.
                        unsafe {
                            std::ptr::copy_nonoverlapping(v.as_ptr(), out_ptr.0.add((t + i) * rows + g * ROWS), n_rows)
                        };
                    }
                }
            }
        }
    });
}

struct SendPtr(*mut f32);
// SAFETY: used only to write disjoint elements from different threads.
unsafe impl Sync for SendPtr {}
