//! Row-interleaved weight layouts, made at load time from a file's Q4_0,
//! Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16 and F32 tensors and
//! never written to a file (GGUF files stay ggml's).
//!
//! Eight rows are stored block by block: one interleaved block holds block
//! `b` of rows `r..r+8`, its eight scales side by side (one vector load) and
//! its quants in 4-byte chunks, chunk `c` of all eight rows before chunk
//! `c + 1`. A 256-bit register then holds the same four positions of eight
//! rows, so a kernel multiplies it by one broadcast activation chunk and ends
//! with eight row sums in eight lanes: no horizontal sums, and the bytes of
//! eight rows are read as one stream.
//!
//! The chunking is on the stored bytes, so a Q4_0 chunk holds weights
//! `4c..4c+4` in its low nibbles and `16+4c..16+4c+4` in its high nibbles,
//! exactly as in the source block (Q4_1, Q5_0 and Q5_1 alike, their fifth
//! bits regrouped by chunk, [`fifth_bits_by_chunk`]); a Q4_K chunk `c` holds weights
//! `64 (c / 8) + 4 (c % 8) ..` in its low nibbles and the same plus 32 in its
//! high nibbles. Q5_K chunks its `qs` as Q4_K and its `qh` bytes the same
//! way (`qh` chunk `c` holds the fifth bits of weights `32 s + 4 c ..` in bit
//! `s`), and Q6_K its `ql` and `qh`.
//!
//! The float types have no blocks: sixteen rows are interleaved value by
//! value ([`float_at`]), so sixteen rows' value widened to f32 is one
//! 512-bit register (two 256-bit ones).

use super::{
    get_scale_min_k4, pack_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0,
};
use crate::dtype::GgmlDType;
use half::{bf16, f16};

/// Rows per interleaved group.
pub const ROWS: usize = 8;
/// Bytes per row in one interleaved chunk.
pub const CHUNK: usize = 4;
/// Rows per block of the float layouts (F16, BF16, F32): one 512-bit
/// register of f32 lanes.
pub const FLOAT_ROWS: usize = 16;

/// Where row `j`'s value `k` sits in its 16-row block of a float layout:
/// F16 and F32 store value `k` of the sixteen rows side by side; BF16
/// stores the pair `k & !1, k | 1` of each row in one 32-bit lane, the
/// sixteen rows' pairs side by side (`vdpbf16ps` multiplies such lanes).
/// Either way values `2c` and `2c + 1` of all sixteen rows are the 32
/// values at `32 c`.
pub const fn float_at(dtype: GgmlDType, j: usize, k: usize) -> usize {
    match dtype {
        GgmlDType::BF16 => 32 * (k / 2) + 2 * j + k % 2,
        _ => FLOAT_ROWS * k + j,
    }
}

/// Block `b` of eight Q4_0 rows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_0x8 {
    pub d: [f16; ROWS],
    /// `qs[(c * 8 + j) * 4 + k]` = row `j`'s `qs[c * 4 + k]`, c in 0..4.
    pub qs: [u8; 16 * ROWS],
}

/// Block `b` of eight Q4_1 rows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4_1x8 {
    pub d: [f16; ROWS],
    pub m: [f16; ROWS],
    /// As in [`BlockQ4_0x8`].
    pub qs: [u8; 16 * ROWS],
}

/// Block `b` of eight Q5_0 rows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_0x8 {
    pub d: [f16; ROWS],
    /// `qh[4 j..4 j + 4]` = row `j`'s fifth bits regrouped by chunk
    /// ([`fifth_bits_by_chunk`]): one 32-bit lane per row.
    pub qh: [u8; 4 * ROWS],
    /// As in [`BlockQ4_0x8`].
    pub qs: [u8; 16 * ROWS],
}

/// Block `b` of eight Q5_1 rows: [`BlockQ5_0x8`] with the rows' mins.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5_1x8 {
    pub d: [f16; ROWS],
    pub m: [f16; ROWS],
    pub qh: [u8; 4 * ROWS],
    pub qs: [u8; 16 * ROWS],
}

/// A Q5 block's fifth bits (ggml: bit `i` of the little-endian word is
/// weight `i`'s) regrouped so that bit `8 k + c` is the fifth bit of byte
/// `k` of chunk `c` (weight `4 c + k`): one shift and one mask put chunk
/// `c`'s four bits at bit 4 of their bytes.
pub fn fifth_bits_by_chunk(qh: [u8; 4]) -> [u8; 4] {
    let w = u32::from_le_bytes(qh);
    let out = (0..32).fold(0u32, |o, i| o | ((w >> i) & 1) << (8 * (i % 4) + i / 4));
    out.to_le_bytes()
}

/// The inverse of [`fifth_bits_by_chunk`].
pub fn fifth_bits_by_weight(qh: [u8; 4]) -> [u8; 4] {
    let w = u32::from_le_bytes(qh);
    let out = (0..32).fold(0u32, |o, i| o | ((w >> (8 * (i % 4) + i / 4)) & 1) << i);
    out.to_le_bytes()
}

/// Block `b` of eight Q8_0 rows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8_0x8 {
    pub d: [f16; ROWS],
    /// `qs[(c * 8 + j) * 4 + k]` = row `j`'s `qs[c * 4 + k]`, c in 0..8.
    pub qs: [i8; 32 * ROWS],
}

/// Super-block `b` of eight Q4_K rows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ4Kx8 {
    pub d: [f16; ROWS],
    pub dmin: [f16; ROWS],
    /// The eight rows' 6-bit sub-block scales and mins, regrouped so that a
    /// kernel decodes all of them with a few vector operations
    /// ([`K4Scales`]).
    pub scales: [u8; 96],
    /// `qs[(c * 8 + j) * 4 + k]` = row `j`'s `qs[c * 4 + k]`, c in 0..32.
    pub qs: [u8; 128 * ROWS],
}

/// Super-block `b` of eight Q5_K rows: [`BlockQ4Kx8`] plus the fifth bits.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ5Kx8 {
    pub d: [f16; ROWS],
    pub dmin: [f16; ROWS],
    /// As in [`BlockQ4Kx8`] ([`K4Scales`]).
    pub scales: [u8; 96],
    /// `qh[(c * 8 + j) * 4 + k]` = row `j`'s `qh[c * 4 + k]`, c in 0..8.
    pub qh: [u8; 32 * ROWS],
    /// `qs[(c * 8 + j) * 4 + k]` = row `j`'s `qs[c * 4 + k]`, c in 0..32.
    pub qs: [u8; 128 * ROWS],
}

/// Super-block `b` of eight Q6_K rows.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ6Kx8 {
    pub d: [f16; ROWS],
    /// `scales[16 p + 2 j + k]` = row `j`'s scale of sub-block `2 p + k`:
    /// a pair of sub-blocks' scales as the 16-bit pairs that one
    /// multiply-add by the pair's activation sums wants.
    pub scales: [i8; 16 * ROWS],
    /// `ql[(c * 8 + j) * 4 + k]` = row `j`'s `ql[c * 4 + k]`, c in 0..32.
    pub ql: [u8; 128 * ROWS],
    /// `qh[(c * 8 + j) * 4 + k]` = row `j`'s `qh[c * 4 + k]`, c in 0..16.
    pub qh: [u8; 64 * ROWS],
}

impl BlockQ6Kx8 {
    /// Index in `scales` of row `j`'s scale of sub-block `s`.
    pub fn scale_at(s: usize, j: usize) -> usize {
        16 * (s / 2) + 2 * j + s % 2
    }
}

const _: () = {
    // Same bytes as the eight source blocks, so a repacked tensor takes
    // exactly the file's size.
    assert!(std::mem::size_of::<BlockQ4_0x8>() == 8 * 18);
    assert!(std::mem::size_of::<BlockQ4_1x8>() == 8 * 20);
    assert!(std::mem::size_of::<BlockQ5_0x8>() == 8 * 22);
    assert!(std::mem::size_of::<BlockQ5_1x8>() == 8 * 24);
    assert!(std::mem::size_of::<BlockQ8_0x8>() == 8 * 34);
    assert!(std::mem::size_of::<BlockQ4Kx8>() == 8 * 144);
    assert!(std::mem::size_of::<BlockQ5Kx8>() == 8 * 176);
    assert!(std::mem::size_of::<BlockQ6Kx8>() == 8 * 210);
};

/// The 128 six-bit values of a [`BlockQ4Kx8`]'s (and [`BlockQ5Kx8`]'s) `scales`, in the order the
/// kernels use them:
/// - `v[8 s + j]` is row `j`'s scale of sub-block `s` (a sub-block's eight
///   scales side by side, like the rows' outputs);
/// - `v[64 + 16 p + 2 j + k]` is row `j`'s min of sub-block `2 p + k` (a
///   pair of sub-blocks' mins as the 16-bit pairs that one multiply-add by
///   the pair's activation sums wants).
///
/// Stored in 96 bytes: byte `i < 64` holds the low nibbles of `v[i]`
/// (bits 0..4) and `v[64 + i]` (bits 4..8); byte `64 + i` (i < 32) holds
/// the top two bits of `v[i]`, `v[32 + i]`, `v[64 + i]`, `v[96 + i]`, in
/// bit pairs from the bottom.
pub struct K4Scales;

impl K4Scales {
    pub fn pack(v: &[u8; 128]) -> [u8; 96] {
        let mut out = [0u8; 96];
        for i in 0..64 {
            out[i] = (v[i] & 0xF) | (v[64 + i] & 0xF) << 4;
        }
        for i in 0..32 {
            out[64 + i] = (0..4).fold(0, |b, k| b | (v[32 * k + i] >> 4) << (2 * k));
        }
        out
    }

    pub fn unpack(p: &[u8; 96]) -> [u8; 128] {
        std::array::from_fn(|i| {
            let low = if i < 64 { p[i] & 0xF } else { p[i - 64] >> 4 };
            low | ((p[64 + i % 32] >> (2 * (i / 32))) & 3) << 4
        })
    }

    /// Index in [`K4Scales::unpack`]'s output of row `j`'s scale and min of
    /// sub-block `s`.
    pub fn at(s: usize, j: usize) -> (usize, usize) {
        (8 * s + j, 64 + 16 * (s / 2) + 2 * j + s % 2)
    }

    /// Regroup eight rows' ggml-packed scales and mins (Q4_K's and Q5_K's
    /// 12 bytes).
    pub fn from_rows(rows: [&[u8; 12]; ROWS]) -> [u8; 96] {
        let mut v = [0u8; 128];
        for (j, r) in rows.iter().enumerate() {
            for s in 0..8 {
                let (at_sc, at_m) = Self::at(s, j);
                (v[at_sc], v[at_m]) = get_scale_min_k4(s, r);
            }
        }
        Self::pack(&v)
    }

    /// Row `j`'s 12 ggml-packed bytes back out of [`K4Scales::from_rows`].
    pub fn row(p: &[u8; 96], j: usize) -> [u8; 12] {
        let v = Self::unpack(p);
        let sc = std::array::from_fn(|s| v[Self::at(s, j).0]);
        let m = std::array::from_fn(|s| v[Self::at(s, j).1]);
        pack_scale_min_k4(&sc, &m)
    }
}

/// Put the rows' quant bytes side by side in `CHUNK`-byte chunks: chunk
/// `c` of row `j` goes to `out[(c * ROWS + j) * CHUNK..]`.
fn interleave_chunks<Q: Copy>(rows: [&[Q]; ROWS], out: &mut [Q]) {
    for (j, r) in rows.iter().enumerate() {
        for (c, chunk) in r.chunks_exact(CHUNK).enumerate() {
            let at = (c * ROWS + j) * CHUNK;
            out[at..at + CHUNK].copy_from_slice(chunk);
        }
    }
}

/// Row `j`'s quant bytes back out of [`interleave_chunks`]'s layout.
fn row_chunks<Q: Copy>(src: &[Q], j: usize, out: &mut [Q]) {
    for (c, chunk) in out.chunks_exact_mut(CHUNK).enumerate() {
        let at = (c * ROWS + j) * CHUNK;
        chunk.copy_from_slice(&src[at..at + CHUNK]);
    }
}

/// An interleaved block and the ggml block it is made of.
pub trait Interleaved: Copy + Send + Sync + 'static {
    type Source: crate::GgmlType;
    fn from_rows(rows: [&Self::Source; ROWS]) -> Self;
    fn to_rows(&self) -> [Self::Source; ROWS];
}

/// Both layouts are "f16 scale, then quant bytes", chunked the same way;
/// only the number of quant bytes differs.
macro_rules! interleaved {
    ($x8:ident, $src:ident, $q:ty, $n:expr) => {
        impl Interleaved for $x8 {
            type Source = $src;

            fn from_rows(rows: [&$src; ROWS]) -> Self {
                let mut out = Self { d: rows.map(|r| r.d), qs: [0; $n * ROWS] };
                interleave_chunks(rows.map(|r| &r.qs[..]), &mut out.qs);
                out
            }

            fn to_rows(&self) -> [$src; ROWS] {
                std::array::from_fn(|j| {
                    let mut qs: [$q; $n] = [0; $n];
                    row_chunks(&self.qs, j, &mut qs);
                    $src { d: self.d[j], qs }
                })
            }
        }
    };
}
interleaved!(BlockQ4_0x8, BlockQ4_0, u8, 16);
interleaved!(BlockQ8_0x8, BlockQ8_0, i8, 32);

/// Q4_1, Q5_0 and Q5_1: [`BlockQ4_0x8`]'s layout with the rows' mins
/// (`m`) and fifth bits (`qh`, regrouped) where the type has them.
macro_rules! interleaved_nibbles {
    ($x8:ident, $src:ident $(, $m:ident)? $(; $qh:ident)?) => {
        impl Interleaved for $x8 {
            type Source = $src;

            fn from_rows(rows: [&$src; ROWS]) -> Self {
                let mut out = Self { d: rows.map(|r| r.d), $($m: rows.map(|r| r.$m),)? $($qh: [0; 4 * ROWS],)? qs: [0; 16 * ROWS] };
                $(for (j, r) in rows.iter().enumerate() {
                    out.$qh[4 * j..4 * j + 4].copy_from_slice(&fifth_bits_by_chunk(r.$qh));
                })?
                interleave_chunks(rows.map(|r| &r.qs[..]), &mut out.qs);
                out
            }

            fn to_rows(&self) -> [$src; ROWS] {
                std::array::from_fn(|j| {
                    let mut qs = [0; 16];
                    row_chunks(&self.qs, j, &mut qs);
                    $src {
                        d: self.d[j],
                        $($m: self.$m[j],)?
                        $($qh: fifth_bits_by_weight(self.$qh[4 * j..4 * j + 4].try_into().expect("4 bytes")),)?
                        qs,
                    }
                })
            }
        }
    };
}
interleaved_nibbles!(BlockQ4_1x8, BlockQ4_1, m);
interleaved_nibbles!(BlockQ5_0x8, BlockQ5_0; qh);
interleaved_nibbles!(BlockQ5_1x8, BlockQ5_1, m; qh);

/// Q4_K and Q5_K: two f16 scales, the regrouped scales and mins, and the
/// named quant fields (`field: bytes per row`), each chunked.
macro_rules! interleaved_k4 {
    ($x8:ident, $src:ident, $($f:ident: $n:expr),*) => {
        impl Interleaved for $x8 {
            type Source = $src;

            fn from_rows(rows: [&$src; ROWS]) -> Self {
                let mut out = Self {
                    d: rows.map(|r| r.d),
                    dmin: rows.map(|r| r.dmin),
                    scales: K4Scales::from_rows(rows.map(|r| &r.scales)),
                    $($f: [0; $n * ROWS]),*
                };
                $(interleave_chunks(rows.map(|r| &r.$f[..]), &mut out.$f);)*
                out
            }

            fn to_rows(&self) -> [$src; ROWS] {
                std::array::from_fn(|j| {
                    let mut b = $src {
                        d: self.d[j],
                        dmin: self.dmin[j],
                        scales: K4Scales::row(&self.scales, j),
                        $($f: [0; $n]),*
                    };
                    $(row_chunks(&self.$f, j, &mut b.$f);)*
                    b
                })
            }
        }
    };
}
interleaved_k4!(BlockQ4Kx8, BlockQ4K, qs: 128);
interleaved_k4!(BlockQ5Kx8, BlockQ5K, qh: 32, qs: 128);

impl Interleaved for BlockQ6Kx8 {
    type Source = BlockQ6K;

    fn from_rows(rows: [&BlockQ6K; ROWS]) -> Self {
        let mut out = Self { d: rows.map(|r| r.d), scales: [0; 128], ql: [0; 1024], qh: [0; 512] };
        for (j, r) in rows.iter().enumerate() {
            for (s, &sc) in r.scales.iter().enumerate() {
                out.scales[Self::scale_at(s, j)] = sc;
            }
        }
        interleave_chunks(rows.map(|r| &r.ql[..]), &mut out.ql);
        interleave_chunks(rows.map(|r| &r.qh[..]), &mut out.qh);
        out
    }

    fn to_rows(&self) -> [BlockQ6K; ROWS] {
        std::array::from_fn(|j| {
            let mut b = BlockQ6K {
                d: self.d[j],
                scales: std::array::from_fn(|s| self.scales[Self::scale_at(s, j)]),
                ql: [0; 128],
                qh: [0; 64],
            };
            row_chunks(&self.ql, j, &mut b.ql);
            row_chunks(&self.qh, j, &mut b.qh);
            b
        })
    }
}

/// Whether a `rows` x `cols` matrix of `dtype` has an interleaved layout.
pub fn can_interleave(dtype: GgmlDType, rows: usize, cols: usize) -> bool {
    use GgmlDType::*;
    rows.is_multiple_of(ROWS)
        && match dtype {
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4K | Q5K | Q6K => true,
            F16 | BF16 | F32 => rows.is_multiple_of(FLOAT_ROWS) && cols.is_multiple_of(2),
            _ => false,
        }
}

/// Repack a row-major matrix (`rows` rows of `row_bytes` bytes) into the
/// interleaved layout, group by group: `dst` holds group `g`'s blocks in
/// block order, then group `g + 1`'s. Same size as `src`.
///
/// Panics unless `can_interleave` and the sizes match (callers check).
pub fn interleave(dtype: GgmlDType, rows: usize, src: &[u8], dst: &mut [u8]) {
    match dtype {
        GgmlDType::Q4_0 => interleave_as::<BlockQ4_0x8>(rows, src, dst),
        GgmlDType::Q4_1 => interleave_as::<BlockQ4_1x8>(rows, src, dst),
        GgmlDType::Q5_0 => interleave_as::<BlockQ5_0x8>(rows, src, dst),
        GgmlDType::Q5_1 => interleave_as::<BlockQ5_1x8>(rows, src, dst),
        GgmlDType::Q8_0 => interleave_as::<BlockQ8_0x8>(rows, src, dst),
        GgmlDType::Q4K => interleave_as::<BlockQ4Kx8>(rows, src, dst),
        GgmlDType::Q5K => interleave_as::<BlockQ5Kx8>(rows, src, dst),
        GgmlDType::Q6K => interleave_as::<BlockQ6Kx8>(rows, src, dst),
        GgmlDType::F16 => floats_as::<f16>(rows, src, dst, true),
        GgmlDType::BF16 => floats_as::<bf16>(rows, src, dst, true),
        GgmlDType::F32 => floats_as::<f32>(rows, src, dst, true),
        _ => panic!("{dtype} has no interleaved layout"),
    }
}

/// The inverse of [`interleave`] (for tests and for reading rows back).
pub fn deinterleave(dtype: GgmlDType, rows: usize, src: &[u8], dst: &mut [u8]) {
    match dtype {
        GgmlDType::Q4_0 => deinterleave_as::<BlockQ4_0x8>(rows, src, dst),
        GgmlDType::Q4_1 => deinterleave_as::<BlockQ4_1x8>(rows, src, dst),
        GgmlDType::Q5_0 => deinterleave_as::<BlockQ5_0x8>(rows, src, dst),
        GgmlDType::Q5_1 => deinterleave_as::<BlockQ5_1x8>(rows, src, dst),
        GgmlDType::Q8_0 => deinterleave_as::<BlockQ8_0x8>(rows, src, dst),
        GgmlDType::Q4K => deinterleave_as::<BlockQ4Kx8>(rows, src, dst),
        GgmlDType::Q5K => deinterleave_as::<BlockQ5Kx8>(rows, src, dst),
        GgmlDType::Q6K => deinterleave_as::<BlockQ6Kx8>(rows, src, dst),
        GgmlDType::F16 => floats_as::<f16>(rows, src, dst, false),
        GgmlDType::BF16 => floats_as::<bf16>(rows, src, dst, false),
        GgmlDType::F32 => floats_as::<f32>(rows, src, dst, false),
        _ => panic!("{dtype} has no interleaved layout"),
    }
}

fn interleave_as<X: Interleaved>(rows: usize, src: &[u8], dst: &mut [u8]) {
    assert!(
        rows.is_multiple_of(ROWS) && src.len() == dst.len(),
        "interleave: {rows} rows, {} -> {} bytes",
        src.len(),
        dst.len()
    );
    let src: &[X::Source] = super::cast_blocks(src);
    let dst: &mut [X] = cast_mut(dst);
    let nb = src.len() / rows;
    for (g, out) in dst.chunks_exact_mut(nb).enumerate() {
        let row = |j: usize| &src[(g * ROWS + j) * nb..][..nb];
        for (b, o) in out.iter_mut().enumerate() {
            *o = X::from_rows(std::array::from_fn(|j| &row(j)[b]));
        }
    }
}

fn deinterleave_as<X: Interleaved>(rows: usize, src: &[u8], dst: &mut [u8]) {
    assert!(
        rows.is_multiple_of(ROWS) && src.len() == dst.len(),
        "deinterleave: {rows} rows, {} -> {} bytes",
        src.len(),
        dst.len()
    );
    let src: &[X] = cast(src);
    let dst: &mut [X::Source] = super::cast_blocks_mut(dst);
    let nb = dst.len() / rows;
    for (g, group) in src.chunks_exact(nb).enumerate() {
        for (b, x) in group.iter().enumerate() {
            for (j, blk) in x.to_rows().into_iter().enumerate() {
                dst[(g * ROWS + j) * nb + b] = blk;
            }
        }
    }
}

/// The float layouts, both ways ([`float_at`]).
fn floats_as<E: crate::GgmlType>(rows: usize, src: &[u8], dst: &mut [u8], interleave: bool) {
    assert!(
        rows.is_multiple_of(FLOAT_ROWS) && src.len() == dst.len(),
        "float interleave: {rows} rows, {} -> {} bytes",
        src.len(),
        dst.len()
    );
    let (src, dst): (&[E], &mut [E]) = (super::cast_blocks(src), super::cast_blocks_mut(dst));
    let cols = src.len() / rows;
    assert!(cols.is_multiple_of(2), "float interleave: {cols} columns is odd");
    for (s, d) in src.chunks_exact(FLOAT_ROWS * cols).zip(dst.chunks_exact_mut(FLOAT_ROWS * cols)) {
        for j in 0..FLOAT_ROWS {
            for k in 0..cols {
                let (row, block) = (j * cols + k, float_at(E::DTYPE, j, k));
                if interleave {
                    d[block] = s[row];
                } else {
                    d[row] = s[block];
                }
            }
        }
    }
}

/// View bytes as interleaved blocks.
///
/// Panics when `bytes` is not a whole number of blocks or is misaligned.
pub fn cast<X: Interleaved>(bytes: &[u8]) -> &[X] {
    let size = std::mem::size_of::<X>();
    assert!(bytes.len().is_multiple_of(size) && bytes.as_ptr().align_offset(std::mem::align_of::<X>()) == 0);
    // SAFETY: the interleaved blocks are padding-free `repr(C)` POD (f16 and
    // integer arrays) for which every bit pattern is valid; length and
    // alignment were checked above, and the slice borrows `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<X>(), bytes.len() / size) }
}

fn cast_mut<X: Interleaved>(bytes: &mut [u8]) -> &mut [X] {
    let size = std::mem::size_of::<X>();
    assert!(bytes.len().is_multiple_of(size) && bytes.as_ptr().align_offset(std::mem::align_of::<X>()) == 0);
    // SAFETY: as in `cast`; the unique borrow of `bytes` makes the unique
    // borrow of the blocks sound.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<X>(), bytes.len() / size) }
}
