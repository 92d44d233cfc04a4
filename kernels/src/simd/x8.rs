//! Kernels for the row-interleaved layouts (`formats::interleaved`): eight
//! weight rows times `T` activation rows in one pass over the blocks, giving
//! an 8 x `T` tile of outputs. `T = 1` is generation; prompt batches use
//! larger `T`, so each weight block is loaded and unpacked once per `T`
//! tokens.
//!
//! The scalar kernel is the reference: per (row, token) it accumulates in
//! the same order as `scalar::vec_dot_*`, so it equals the one-row kernels
//! bit for bit. The AVX2 kernels agree with it to f32 rounding and are tested
//! against it in `kernels/tests/interleaved.rs`.

#[cfg(target_arch = "x86_64")]
use super::cpu_has;
use super::scalar::BlockInts;
use super::Isa;
use crate::formats::interleaved::{BlockQ4_0x8, BlockQ4_1x8, BlockQ5_0x8, BlockQ5_1x8, BlockQ8_0x8, Interleaved, ROWS};
use crate::formats::{BlockQ8_0, BlockQ8_1};
use std::ops::Range;

/// `T` activation rows quantized to Q8_0 (Q8_1 for the types with mins), packed block-major: entry
/// `b * T + t` is token `t`'s block `b` (so a range of blocks is one
/// contiguous run, and the `T` blocks a weight block meets sit together).
/// Each entry has its 32 values, its scale as f32, and what the kernels of
/// the chosen instruction set read beside it ([`Needs`]):
/// - for the AVX2 Q4_0 and Q5_0 kernels, the offset term
///   `-BIAS * d * sum(q)` (they multiply raw levels 0..16 or 0..32 and add
///   this per block instead of subtracting 8 or 16 from every weight);
/// - for the AVX2 Q8_0 kernel, the values widened to 16-bit pairs by
///   [`pairs`];
/// - for the AVX-512 VNNI kernels, `-X8Dot::BIAS * sum(q)` as an integer
///   (they multiply unsigned weights, `w + BIAS`, and start each block's
///   integer sum from this, which is exact);
/// - for the types with mins (Q4_1, Q5_1), Q8_1's `s = d * sum(q)`, which
///   the rows' mins multiply.
#[derive(Clone, Copy)]
pub struct Act<'a> {
    pub q: &'a [[i8; 32]],
    pub d: &'a [f32],
    pub offset: &'a [f32],
    pub pairs: &'a [u32],
    pub bias: &'a [i32],
    pub s: &'a [f32],
}

/// An activation block the interleaved kernels read: Q8_0, or Q8_1 for
/// the weight types with mins (ggml's `vec_dot_type`s).
pub trait ActBlock: BlockInts + crate::GgmlType + Sync {
    /// `d * sum(q)` as the block stores it (Q8_1); unused for Q8_0.
    fn s(&self) -> f32 {
        0.0
    }
}

impl ActBlock for BlockQ8_0 {}

impl ActBlock for BlockQ8_1 {
    fn s(&self) -> f32 {
        self.s.to_f32()
    }
}

/// Which of [`Act`]'s optional parts a type's kernels read on an
/// instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    pub offset: bool,
    pub pairs: bool,
    pub bias: bool,
    pub s: bool,
}

/// Rows per two-group step ([`gemm2`]).
pub const ROWS2: usize = 2 * ROWS;

/// Whether [`gemm2`] runs one kernel over both groups on `isa` (AVX-512
/// VNNI), rather than the one-group kernel twice.
#[inline]
pub fn two_group_kernel(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return cpu_has(Isa::Avx512);
    }
    let _ = isa;
    false
}

/// 32-bit words per activation block in [`pairs`]' layout.
pub const PAIR_WORDS: usize = 16;

/// The `tokens` activation rows of `q` (token after token) as 16-bit pairs,
/// block-major as in [`Act`]: `out[(b * tokens + t) * 16 + k]` holds values `(4k, 4k + 2)` of token
/// `t`'s block `b` for `k < 8`, and `(4(k - 8) + 1, 4(k - 8) + 3)` for
/// `k >= 8`, low half first. These are the even and odd bytes of chunk `k`,
/// matching the even and odd weight bytes the Q8_0 kernel widens.
pub fn pairs<Y: ActBlock>(q: &[Y], tokens: usize, out: &mut [u32]) {
    let nb = q.len() / tokens;
    assert!(q.len() == nb * tokens && out.len() == q.len() * PAIR_WORDS, "pair buffer does not match");
    let pair = |a: i8, b: i8| (a as i16 as u16 as u32) | (b as i16 as u16 as u32) << 16;
    for (i, yb) in q.iter().enumerate() {
        let (t, b) = (i / nb, i % nb);
        let o = &mut out[(b * tokens + t) * PAIR_WORDS..][..PAIR_WORDS];
        for (k, c) in yb.ints().chunks_exact(4).enumerate() {
            o[k] = pair(c[0], c[2]);
            o[8 + k] = pair(c[1], c[3]);
        }
    }
}

/// [`Act`]s for a whole batch, tile after tile: the tile of tokens
/// `t0..t0 + T` (`t0` a multiple of the tile length) holds entries
/// `t0 * nb..(t0 + T) * nb`, block-major inside.
#[derive(Default)]
pub struct ActBuf {
    nb: usize,
    q: Vec<[i8; 32]>,
    d: Vec<f32>,
    offset: Vec<f32>,
    pairs: Vec<u32>,
    bias: Vec<i32>,
    s: Vec<f32>,
}

impl ActBuf {
    /// Packs `y`, `n_tokens` rows of blocks one after the other, in tiles
    /// of `tile` tokens, with the parts `needs` asks for; `bias` is the
    /// weight type's [`X8Dot::BIAS`].
    pub fn pack<Y: ActBlock>(&mut self, y: &[Y], n_tokens: usize, tile: usize, needs: Needs, bias: i32) {
        use rayon::prelude::*;
        let nb = y.len() / n_tokens;
        assert!(nb * n_tokens == y.len() && tile > 0, "activations are not whole rows");
        self.nb = nb;
        // Each part `len` entries long where it is needed, empty elsewhere
        // (kept entries are all overwritten below).
        fn reset<V: Clone + Default>(v: &mut Vec<V>, len: usize, needed: bool) {
            v.resize(if needed { len } else { 0 }, V::default());
        }
        let len = y.len();
        reset(&mut self.q, len, true);
        reset(&mut self.d, len, true);
        reset(&mut self.offset, len, needs.offset);
        reset(&mut self.bias, len, needs.bias);
        reset(&mut self.pairs, len * PAIR_WORDS, needs.pairs);
        reset(&mut self.s, len, needs.s);
        let sum = |y: &Y| y.ints().iter().map(|&q| q as i32).sum::<i32>();
        per_tile(&mut self.q, y, nb, tile, Y::ints);
        per_tile(&mut self.d, y, nb, tile, Y::d);
        if needs.offset {
            per_tile(&mut self.offset, y, nb, tile, |y| -(bias as f32) * y.d() * sum(y) as f32);
        }
        if needs.s {
            per_tile(&mut self.s, y, nb, tile, ActBlock::s);
        }
        if needs.bias {
            per_tile(&mut self.bias, y, nb, tile, |y| -bias * sum(y));
        }
        if needs.pairs {
            y.par_chunks(tile * nb)
                .zip(self.pairs.par_chunks_mut(tile * nb * PAIR_WORDS))
                .for_each(|(q, p)| pairs(q, q.len() / nb, p));
        }
    }

    /// Blocks `blocks` of the tile of `tokens` (a tile as packed).
    pub fn tile(&self, tokens: Range<usize>, blocks: Range<usize>) -> Act<'_> {
        let n = tokens.len();
        let span = tokens.start * self.nb + blocks.start * n..tokens.start * self.nb + blocks.end * n;
        let part = |len: usize, span: Range<usize>| if len == 0 { 0..0 } else { span };
        let words = span.start * PAIR_WORDS..span.end * PAIR_WORDS;
        Act {
            q: &self.q[span.clone()],
            d: &self.d[span.clone()],
            offset: &self.offset[part(self.offset.len(), span.clone())],
            pairs: &self.pairs[part(self.pairs.len(), words)],
            bias: &self.bias[part(self.bias.len(), span.clone())],
            s: &self.s[part(self.s.len(), span)],
        }
    }
}

/// `part[i] = f(y[t * nb + b])` for entry `i` of block `b` of token `t`
/// in the block-major tile layout of [`ActBuf`], tiles across threads.
fn per_tile<V: Send, Y: Sync>(part: &mut [V], y: &[Y], nb: usize, tile: usize, f: impl Fn(&Y) -> V + Sync) {
    use rayon::prelude::*;
    part.par_chunks_mut(tile * nb).zip(y.par_chunks(tile * nb)).for_each(|(p, rows)| {
        let n = rows.len() / nb;
        for (t, row) in rows.chunks_exact(nb).enumerate() {
            for (b, y) in row.iter().enumerate() {
                p[b * n + t] = f(y);
            }
        }
    });
}

/// An interleaved weight type with kernels.
pub trait X8Dot: Interleaved<Source: BlockInts> {
    /// The activation blocks its dot products take (ggml's `vec_dot_type`).
    type Act: ActBlock;
    /// Whether the rows have mins (`w = d * q + m`), applied through
    /// [`Act::s`].
    const HAS_MIN: bool = false;
    /// A source row block's min (the types with mins).
    fn row_min(_row: &Self::Source) -> f32 {
        0.0
    }
    /// Whether the kernels read [`Act::offset`].
    const NEEDS_OFFSET: bool;
    /// Whether the kernels read [`Act::pairs`] (laid out for the tile's `T`).
    const NEEDS_PAIRS: bool;
    /// Tokens per tile the kernels are fastest at (they take 1..=8).
    const TILE: usize;
    /// What the VNNI kernels add to each weight to make it unsigned
    /// (Q4_0's nibbles are `w + 8`, Q5_0's levels `w + 16`; Q8_0's
    /// `w ^ 0x80` is `w + 128`; the types with mins are unsigned already).
    const BIAS: i32;
    /// What the kernels on `isa` read beside the activation blocks.
    fn needs(isa: Isa) -> Needs {
        if two_group_kernel(isa) {
            Needs { offset: false, pairs: false, bias: true, s: Self::HAS_MIN }
        } else {
            Needs { offset: Self::NEEDS_OFFSET, pairs: Self::NEEDS_PAIRS, bias: false, s: Self::HAS_MIN }
        }
    }
    /// Tokens per tile on `isa`.
    fn tile(isa: Isa) -> usize {
        if two_group_kernel(isa) {
            TILE_VNNI
        } else {
            Self::TILE
        }
    }
    #[cfg(target_arch = "x86_64")]
    /// Adds the products to `out`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `act` must hold `T * w.len()`
    /// blocks (and scales, and offsets when needed).
    unsafe fn avx2<const T: usize>(w: &[Self], act: Act, out: &mut [[f32; ROWS]; T]);
    #[cfg(target_arch = "x86_64")]
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; both
    /// groups have `nb` blocks and `act` holds `T * nb` blocks, scales and
    /// bias terms.
    unsafe fn avx512<const T: usize>(w: [&[Self]; 2], act: Act, out: &mut [[f32; ROWS2]; T]);
}

/// Tokens per tile of the AVX-512 VNNI kernels: 16 rows x 8 tokens keep
/// eight unsigned weight chunks and eight accumulators in 32 registers.
pub const TILE_VNNI: usize = 8;

/// `out[t][j] += dot(row j of w, activation row t)` for the eight rows of
/// one interleaved group and `T` activation rows.
#[inline]
pub fn gemm<X: X8Dot, const T: usize>(isa: Isa, w: &[X], act: Act, out: &mut [[f32; ROWS]; T])
where
    X::Source: BlockInts,
{
    let n = w.len() * T;
    assert!(act.q.len() == n && act.d.len() == n, "activations do not match the weights");
    let needs = X::needs(Isa::Avx2);
    assert!(!needs.offset || act.offset.len() == n, "activation offsets missing");
    assert!(!needs.pairs || act.pairs.len() == n * PAIR_WORDS, "activation pairs missing");
    assert!(!needs.s || act.s.len() == n, "activation sums missing");
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if cpu_has(Isa::Avx2) => {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above);
            // lengths are checked above.
            unsafe { X::avx2::<T>(w, act, out) }
        }
        // No NEON kernels for these layouts: the runtime interleaves only on
        // x86-64, and other callers get the reference.
        _ => reference::<X, T>(w, act, out),
    }
}

/// [`gemm`] for two interleaved groups of `nb` blocks each: rows 0..8 of
/// `out[t]` add `w[0]`'s products, 8..16 `w[1]`'s. On AVX-512 VNNI one kernel
/// covers both (a 512-bit register holds a chunk of 16 rows); elsewhere it
/// is [`gemm`] twice. Pass the same group twice to get one group's rows.
#[inline]
pub fn gemm2<X: X8Dot, const T: usize>(isa: Isa, w: [&[X]; 2], act: Act, out: &mut [[f32; ROWS2]; T])
where
    X::Source: BlockInts,
{
    assert_eq!(w[0].len(), w[1].len(), "groups of different lengths");
    #[cfg(target_arch = "x86_64")]
    if two_group_kernel(isa) {
        let n = w[0].len() * T;
        assert!(act.q.len() == n && act.d.len() == n, "activations do not match the weights");
        assert!(act.bias.len() == n, "activation bias terms missing");
        assert!(!X::HAS_MIN || act.s.len() == n, "activation sums missing");
        // SAFETY: the CPU has AVX-512 F/BW/VL/VNNI and, with it here, AVX2,
        // FMA and F16C (`two_group_kernel`); lengths are checked above.
        unsafe { X::avx512::<T>(w, act, out) };
        return;
    }
    per_group(w, out, |w, o| gemm::<X, T>(isa, w, act, o));
}

/// A two-group step as a one-group kernel on each group: `one(w[g], o)`
/// adds to group `g`'s rows of `out`.
pub(crate) fn per_group<W, const T: usize>(
    w: [W; 2],
    out: &mut [[f32; ROWS2]; T],
    mut one: impl FnMut(W, &mut [[f32; ROWS]; T]),
) {
    for (g, w) in w.into_iter().enumerate() {
        let mut o: [[f32; ROWS]; T] = std::array::from_fn(|t| out[t][g * ROWS..][..ROWS].try_into().expect("8 rows"));
        one(w, &mut o);
        for (out, o) in out.iter_mut().zip(o) {
            out[g * ROWS..(g + 1) * ROWS].copy_from_slice(&o);
        }
    }
}

/// The scalar reference: ggml's `sumf += (dx * dy) * sumi` per row and
/// token (`+ m * s` for the types with mins), continuing from `out`.
pub fn reference<X: X8Dot, const T: usize>(w: &[X], act: Act, out: &mut [[f32; ROWS]; T]) {
    for (b, wb) in w.iter().enumerate() {
        for (j, row) in wb.to_rows().iter().enumerate() {
            let wi = row.ints();
            for (t, o) in out.iter_mut().enumerate() {
                let i = b * T + t;
                let sumi: i32 = wi.iter().zip(&act.q[i]).map(|(&a, &b)| a as i32 * b as i32).sum();
                if X::HAS_MIN {
                    o[j] += (row.d() * act.d[i]) * sumi as f32 + X::row_min(row) * act.s[i];
                } else {
                    o[j] += (row.d() * act.d[i]) * sumi as f32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::Ahead;
    use super::avx512::Unsigned;
    use super::*;
    use core::arch::x86_64::*;

    /// Chunk `c` of an activation block (its values `4c..4c+4`) in every
    /// 32-bit lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn chunk(y: &[i8; 32], c: usize) -> __m256i {
        let b = &y[c * 4..c * 4 + 4];
        _mm256_set1_epi32(i32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]))
    }

    /// The accumulators, from `out`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load<const T: usize>(out: &[[f32; ROWS]; T]) -> [__m256; T] {
        // SAFETY: reads exactly the eight floats of `out[t]`; unaligned.
        std::array::from_fn(|t| unsafe { _mm256_loadu_ps(out[t].as_ptr()) })
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn scales(d: &[half::f16; ROWS]) -> __m256 {
        // SAFETY: reads exactly the 16 bytes of `d`; the load is unaligned.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d.as_ptr().cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store<const T: usize>(acc: [__m256; T], out: &mut [[f32; ROWS]; T]) {
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: writes exactly the eight floats of `o`; unaligned store.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
        }
    }

    /// Levels 0..16 (Q4_0, Q4_1) or 0..32 (Q5_0, Q5_1) times activations
    /// in 16-bit pair sums, widened to 32 bits once per block (eight 4-bit
    /// chunks stay below 8 * 2 * 15 * 128 < 2^15; 5-bit ones are widened
    /// four at a time), the `-8` or `-16` of the types without mins folded
    /// in through the block's offset term, the mins through `s`.
    ///
    /// # Safety
    /// As for [`X8Dot::avx2`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn nibbles<X: X8Dot + Unsigned, const T: usize>(w: &[X], act: Act, out: &mut [[f32; ROWS]; T]) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = load(out);
        let mut ahead = Ahead::new(w);
        for (b, wb) in w.iter().enumerate() {
            if T == 1 {
                ahead.before(wb);
            }
            let dw = scales(wb.scales());
            let mins = wb.mins().map(|m| scales(m));
            // SAFETY: the CPU has AVX2 (this function's features).
            let q = unsafe { X::chunks256(wb) };
            for (t, acc) in acc.iter_mut().enumerate() {
                let i = b * T + t;
                // SAFETY: b < nb and t < T, inside the T * nb entries
                // (checked by `gemm`).
                let (y, d) = unsafe { (act.q.get_unchecked(i), *act.d.get_unchecked(i)) };
                let p: [__m256i; 8] = std::array::from_fn(|c| _mm256_maddubs_epi16(q[c], chunk(y, c)));
                let s03 = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
                let s47 = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
                let s = if X::LEVELS <= 16 {
                    _mm256_madd_epi16(_mm256_add_epi16(s03, s47), ones)
                } else {
                    _mm256_add_epi32(_mm256_madd_epi16(s03, ones), _mm256_madd_epi16(s47, ones))
                };
                let s = _mm256_cvtepi32_ps(s);
                let v = if X::NEEDS_OFFSET {
                    // SAFETY: as for `y`; `gemm` checked the offsets.
                    _mm256_fmadd_ps(s, _mm256_set1_ps(d), _mm256_set1_ps(unsafe { *act.offset.get_unchecked(i) }))
                } else {
                    _mm256_mul_ps(s, _mm256_set1_ps(d))
                };
                *acc = _mm256_fmadd_ps(dw, v, *acc);
                if let Some(m) = mins {
                    // SAFETY: as for `y`; `gemm` checked the sums.
                    *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(unsafe { *act.s.get_unchecked(i) }), *acc);
                }
            }
        }
        store(acc, out);
    }

    impl X8Dot for BlockQ8_0x8 {
        type Act = BlockQ8_0;
        const NEEDS_OFFSET: bool = false;
        const NEEDS_PAIRS: bool = true;
        const TILE: usize = 8;
        const BIAS: i32 = 128;

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn avx512<const T: usize>(w: [&[Self]; 2], act: Act, out: &mut [[f32; ROWS2]; T]) {
            // SAFETY: the caller's contract is the kernel's.
            unsafe { super::avx512::gemm::<Self, T>(w, act, out) }
        }

        /// 16-bit multiplies: each weight chunk is split into its even and
        /// odd bytes, sign-extended in place (`w << 8 >> 8`, `w >> 8`), and
        /// `madd` against the matching activation pairs gives each row's
        /// chunk sum in its 32-bit lane. Two `madd` per chunk and token,
        /// against three ops for `maddubs` with the sign trick, and exact
        /// for any weights (|sum| <= 32 * 128 * 127). The weights are
        /// widened once per block and tile; [`pairs`] widened the
        /// activations once per matmul, next to each other per block, so
        /// every broadcast is one load at a fixed offset.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2<const T: usize>(w: &[Self], act: Act, out: &mut [[f32; ROWS]; T]) {
            let mut acc = load(out);
            let mut ahead = Ahead::new(w);
            for (b, wb) in w.iter().enumerate() {
                if T == 1 {
                    ahead.before(wb);
                }
                let dw = scales(&wb.d);
                // SAFETY: `act.pairs` holds `nb * T` blocks of words (checked
                // by `gemm`); this is block b's.
                let y = unsafe { act.pairs.as_ptr().add(b * T * PAIR_WORDS) };
                let mut sum = [_mm256_setzero_si256(); T];
                for c in 0..8 {
                    // SAFETY: chunk c's 32 bytes inside the 256 of `qs`.
                    let q = unsafe { _mm256_loadu_si256(wb.qs.as_ptr().add(32 * c).cast()) };
                    let even = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(q));
                    let odd = _mm256_srai_epi16::<8>(q);
                    for (t, sum) in sum.iter_mut().enumerate() {
                        // SAFETY: t < T and c < 8, inside block b's words.
                        let (ye, yo) = unsafe { (*y.add(t * PAIR_WORDS + c), *y.add(t * PAIR_WORDS + 8 + c)) };
                        let p = _mm256_add_epi32(
                            _mm256_madd_epi16(even, _mm256_set1_epi32(ye as i32)),
                            _mm256_madd_epi16(odd, _mm256_set1_epi32(yo as i32)),
                        );
                        *sum = _mm256_add_epi32(*sum, p);
                    }
                }
                for (t, (acc, sum)) in acc.iter_mut().zip(sum).enumerate() {
                    // SAFETY: b < nb and t < T, inside the T * nb entries
                    // (checked by `gemm`).
                    let d = unsafe { *act.d.get_unchecked(b * T + t) };
                    *acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(d)), _mm256_cvtepi32_ps(sum), *acc);
                }
            }
            store(acc, out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::*;
    use core::arch::x86_64::*;

    /// The unsigned weights (`w + X8Dot::BIAS`) of one block of two groups, chunk by chunk:
    /// lanes 0..8 of `chunks()[c]` hold group 0's rows' chunk `c` (the four
    /// weights that meet activation chunk `c`), lanes 8..16 group 1's.
    pub(super) trait Unsigned: Sized {
        /// Levels per weight (16 for 4 bits, 32 for 5, 256 for 8).
        const LEVELS: i32;
        /// # Safety
        /// The CPU must have AVX-512 F/BW.
        unsafe fn chunks(a: &Self, b: &Self) -> [__m512i; 8];
        /// The same for one group, eight rows in 256-bit registers.
        ///
        /// # Safety
        /// The CPU must have AVX2.
        unsafe fn chunks256(a: &Self) -> [__m256i; 8];
        /// For Q8_0, one group's chunks in pairs: lanes 0..8 of
        /// `chunk_pairs()[p]` hold chunk `2p`, lanes 8..16 chunk `2p + 1`,
        /// so that a block is four full-width loads. (The 4- and 5-bit
        /// types lose by it: `gemv_rate`, Q4_0 one thread, 0.70 of the read
        /// loop against 0.95, with their nibbles split in pairs.)
        ///
        /// # Safety
        /// The CPU must have AVX-512 F/BW.
        #[inline]
        unsafe fn chunk_pairs(_a: &Self) -> Option<[__m512i; 4]> {
            None
        }
        fn scales(&self) -> &[half::f16; ROWS];
        /// The rows' mins, for the types that have them.
        fn mins(&self) -> Option<&[half::f16; ROWS]> {
            None
        }
        /// The rows' fifth bits, for the 5-bit types.
        fn fifth_bits(&self) -> Option<&[u8; 32]> {
            None
        }
    }

    // Loads of one block of two groups, side by side (shared with the
    // K-quant kernels in `x8k`).

    /// 32 bytes at `a` and 32 at `b` as one register, `a` in the low half.
    ///
    /// # Safety
    /// Both point to 32 readable bytes; the CPU has AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn join(a: *const u8, b: *const u8) -> __m512i {
        // SAFETY: two unaligned 32-byte loads, in bounds by the contract.
        unsafe {
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_loadu_si256(a.cast())), _mm256_loadu_si256(b.cast()))
        }
    }

    /// 16 bytes at `a` and 16 at `b`, `a` in the low half.
    ///
    /// # Safety
    /// Both point to 16 readable bytes; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn join128(a: *const u8, b: *const u8) -> __m256i {
        // SAFETY: two unaligned 16-byte loads, in bounds by the contract.
        unsafe {
            _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(a.cast())), _mm_loadu_si128(b.cast()))
        }
    }

    /// Sixteen rows' f16 scales (two groups' eight) as f32.
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    pub(crate) fn halves16(a: &[half::f16; ROWS], b: &[half::f16; ROWS]) -> __m512 {
        // SAFETY: the 16 bytes of each array.
        _mm512_cvtph_ps(unsafe { join128(a.as_ptr().cast(), b.as_ptr().cast()) })
    }

    /// Bits 8k + c of each 32-bit lane moved to bit 8k + 4 (the fifth bit
    /// of byte k of chunk c, `BlockQ5_0x8::qh`), for `c` known when the
    /// kernel is unrolled.
    macro_rules! fifth_bit {
        ($h:expr, $c:expr, $slli:ident, $srli:ident) => {
            match $c {
                0 => $slli::<4>($h),
                1 => $slli::<3>($h),
                2 => $slli::<2>($h),
                3 => $slli::<1>($h),
                4 => $h,
                5 => $srli::<1>($h),
                6 => $srli::<2>($h),
                _ => $srli::<3>($h),
            }
        };
    }

    /// Chunk `c` < 4 is the low nibbles of quant chunk `c` (weights
    /// `4c..`), chunk `c` >= 4 the high nibbles of quant chunk `c - 4`
    /// (weights `16 + 4(c - 4) = 4c..`): activation chunk `c` either way.
    /// With `qh`, each level gets its fifth bit (16).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn levels512(qs: [&[u8; 128]; 2], qh: Option<[&[u8; 32]; 2]>) -> [__m512i; 8] {
        let (low, sixteen) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x10));
        // SAFETY: four 32-byte loads inside each block's 128-byte `qs`.
        let raw: [__m512i; 4] =
            std::array::from_fn(|g| unsafe { join(qs[0].as_ptr().add(32 * g), qs[1].as_ptr().add(32 * g)) });
        // SAFETY: 32 bytes of each group's `qh`.
        let h = qh.map(|[a, b]| unsafe { join(a.as_ptr(), b.as_ptr()) });
        std::array::from_fn(|c| {
            let q = _mm512_and_si512(if c < 4 { raw[c] } else { _mm512_srli_epi16::<4>(raw[c - 4]) }, low);
            match h {
                Some(h) => _mm512_or_si512(
                    q,
                    _mm512_and_si512(fifth_bit!(h, c, _mm512_slli_epi32, _mm512_srli_epi32), sixteen),
                ),
                None => q,
            }
        })
    }

    /// [`levels512`] for one group, in 256-bit registers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn levels256(qs: &[u8; 128], qh: Option<&[u8; 32]>) -> [__m256i; 8] {
        let (low, sixteen) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        // SAFETY: four 32-byte loads inside the block's 128-byte `qs`.
        let raw: [__m256i; 4] = std::array::from_fn(|g| unsafe { _mm256_loadu_si256(qs.as_ptr().add(32 * g).cast()) });
        // SAFETY: the 32 bytes of `qh`.
        let h = qh.map(|h| unsafe { _mm256_loadu_si256(h.as_ptr().cast()) });
        std::array::from_fn(|c| {
            let q = _mm256_and_si256(if c < 4 { raw[c] } else { _mm256_srli_epi16::<4>(raw[c - 4]) }, low);
            match h {
                Some(h) => _mm256_or_si256(
                    q,
                    _mm256_and_si256(fifth_bit!(h, c, _mm256_slli_epi32, _mm256_srli_epi32), sixteen),
                ),
                None => q,
            }
        })
    }

    /// The 4- and 5-bit types: their levels, fifth bits (`qh`) and mins
    /// (`m`) where they have them.
    macro_rules! unsigned_levels {
        ($x8:ty, $levels:expr, qh: |$bh:ident| $qh:expr, m: |$bm:ident| $m:expr) => {
            impl Unsigned for $x8 {
                const LEVELS: i32 = $levels;
                #[inline]
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn chunks(a: &Self, b: &Self) -> [__m512i; 8] {
                    levels512([&a.qs, &b.qs], a.fifth_bits().zip(b.fifth_bits()).map(|(a, b)| [a, b]))
                }
                #[inline]
                #[target_feature(enable = "avx2")]
                unsafe fn chunks256(a: &Self) -> [__m256i; 8] {
                    levels256(&a.qs, a.fifth_bits())
                }
                fn scales(&self) -> &[half::f16; ROWS] {
                    &self.d
                }
                fn mins(&self) -> Option<&[half::f16; ROWS]> {
                    let $bm = self;
                    $m
                }
                fn fifth_bits(&self) -> Option<&[u8; 32]> {
                    let $bh = self;
                    $qh
                }
            }
        };
    }
    unsigned_levels!(BlockQ4_0x8, 16, qh: |_b| None, m: |_b| None);
    unsigned_levels!(BlockQ4_1x8, 16, qh: |_b| None, m: |b| Some(&b.m));
    unsigned_levels!(BlockQ5_0x8, 32, qh: |b| Some(&b.qh), m: |_b| None);
    unsigned_levels!(BlockQ5_1x8, 32, qh: |b| Some(&b.qh), m: |b| Some(&b.m));

    impl Unsigned for BlockQ8_0x8 {
        const LEVELS: i32 = 256;
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn chunks(a: &Self, b: &Self) -> [__m512i; 8] {
            let flip = _mm512_set1_epi8(-128);
            let (a, b) = (a.qs.as_ptr().cast::<u8>(), b.qs.as_ptr().cast::<u8>());
            // SAFETY: eight 32-byte loads inside each block's 256-byte `qs`.
            std::array::from_fn(|c| _mm512_xor_si512(unsafe { join(a.add(32 * c), b.add(32 * c)) }, flip))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn chunks256(a: &Self) -> [__m256i; 8] {
            let flip = _mm256_set1_epi8(-128);
            // SAFETY: eight 32-byte loads inside the block's 256-byte `qs`.
            std::array::from_fn(|c| {
                _mm256_xor_si256(unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(32 * c).cast()) }, flip)
            })
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn chunk_pairs(a: &Self) -> Option<[__m512i; 4]> {
            let flip = _mm512_set1_epi8(-128);
            // SAFETY: four 64-byte loads inside the block's 256-byte `qs`.
            Some(std::array::from_fn(|p| {
                _mm512_xor_si512(unsafe { _mm512_loadu_si512(a.qs.as_ptr().add(64 * p).cast()) }, flip)
            }))
        }
        fn scales(&self) -> &[half::f16; ROWS] {
            &self.d
        }
    }

    /// Sixteen rows x `T` tokens: per block and token, the integer sum
    /// starts at `-BIAS * sum(y)` ([`Act::bias`]) and takes eight `vpdpbusd` (unsigned
    /// weights times signed activation chunks, broadcast from memory, four
    /// products per 32-bit lane, no saturation), so it ends exact; then a
    /// conversion, a multiply and an FMA by the two scales,
    /// `sumf += dx * (sumi * dy)` (ggml's `(dx * dy) * sumi` to f32
    /// rounding). Those three compete with `vpdpbusd` for the same two
    /// pipes on Zen 5; they, not the loads, keep the kernel near 70% of
    /// the `vpdpbusd` peak (`examples/gemm_rate.rs`).
    ///
    /// # Safety
    /// As for [`X8Dot::avx512`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn gemm<X: Unsigned, const T: usize>(w: [&[X]; 2], act: Act, out: &mut [[f32; ROWS2]; T]) {
        if T == 1 {
            // One token: each group on its own, so the weights are read as
            // one stream from memory rather than two.
            for (g, w) in w.into_iter().enumerate() {
                // SAFETY: the caller's contract, for one group.
                unsafe { gemv(w, act, &mut out[0][g * ROWS..]) };
            }
            return;
        }
        // SAFETY: reads exactly the sixteen floats of `out[t]`; unaligned.
        let mut acc: [__m512; T] = std::array::from_fn(|t| unsafe { _mm512_loadu_ps(out[t].as_ptr()) });
        for (b, (wa, wb)) in w[0].iter().zip(w[1]).enumerate() {
            let dw = halves16(wa.scales(), wb.scales());
            let mins = wa.mins().zip(wb.mins()).map(|(a, b)| halves16(a, b));
            // SAFETY: the CPU has AVX-512 F/BW (this function's features).
            let wq = unsafe { X::chunks(wa, wb) };
            for (t, acc) in acc.iter_mut().enumerate() {
                let i = b * T + t;
                // SAFETY: block b < nb of token t < T: in bounds, as `act`
                // holds T * nb blocks, scales and sums (the caller's
                // contract).
                let (y, dy, bias) =
                    unsafe { (act.q.get_unchecked(i), *act.d.get_unchecked(i), *act.bias.get_unchecked(i)) };
                let mut s = _mm512_set1_epi32(bias);
                for (c, wq) in wq.iter().enumerate() {
                    // SAFETY: four bytes at 4c inside the block's 32.
                    let yc = unsafe { std::ptr::read_unaligned(y.as_ptr().add(4 * c).cast::<i32>()) };
                    s = _mm512_dpbusd_epi32(s, *wq, _mm512_set1_epi32(yc));
                }
                // (s * dy) * dw rather than (dw * dy) * s: the same three
                // operations, but the product of the scales no longer
                // waits on a broadcast (about 4% on the bare kernel).
                *acc = _mm512_fmadd_ps(dw, _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dy)), *acc);
                if let Some(m) = mins {
                    // SAFETY: as above; the types with mins have the sums.
                    *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(unsafe { *act.s.get_unchecked(i) }), *acc);
                }
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: writes exactly the sixteen floats of `o`; unaligned.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
    }

    /// One group times one token, [`gemm`]'s arithmetic on 256-bit
    /// registers (eight rows), prefetching ahead
    /// ([`super::super::Ahead`]). Q8_0 takes its block's chunks in pairs,
    /// one full-width register each ([`Unsigned::chunk_pairs`]), against
    /// the activation block's matching pairs of chunks, permuted into place
    /// from one load; the halves' integer sums then meet in the eight
    /// rows' lanes, exact. (Against one 256-bit register per chunk, half
    /// the instructions; on an Intel Xeon, 7B layer shapes, `gemv_rate`,
    /// one thread: 1.00-1.03 of the read loop against 0.96.)
    ///
    /// # Safety
    /// As for [`gemm`] with `T = 1`, for the one group `w`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn gemv<X: Unsigned>(w: &[X], act: Act, out: &mut [f32]) {
        // SAFETY: reads exactly the eight floats of `out`; unaligned.
        let mut acc = unsafe { _mm256_loadu_ps(out[..ROWS].as_ptr()) };
        let mut ahead = super::super::Ahead::new(w);
        // Activation chunks 2p and 2p + 1, each in its half.
        let pick: [__m512i; 4] =
            std::array::from_fn(|p| _mm512_mask_set1_epi32(_mm512_set1_epi32(2 * p as i32), 0xFF00, 2 * p as i32 + 1));
        for (b, wb) in w.iter().enumerate() {
            ahead.before(wb);
            let dw = super::avx2::scales(wb.scales());
            // SAFETY: b < nb, inside the nb blocks, scales and bias terms
            // of the one token (the caller's contract).
            let (y, dy, bias) =
                unsafe { (act.q.get_unchecked(b), *act.d.get_unchecked(b), *act.bias.get_unchecked(b)) };
            // SAFETY: the CPU has AVX-512 F/BW (this function's features).
            let s = if let Some(wq) = unsafe { X::chunk_pairs(wb) } {
                // SAFETY: the 32 bytes of the activation block.
                let y = _mm512_castsi256_si512(unsafe { _mm256_loadu_si256(y.as_ptr().cast()) });
                let mut s = _mm512_maskz_set1_epi32(0x00FF, bias);
                for (wq, pick) in wq.iter().zip(&pick) {
                    s = _mm512_dpbusd_epi32(s, *wq, _mm512_permutexvar_epi32(*pick, y));
                }
                _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s))
            } else {
                // SAFETY: the CPU has AVX2 (this function's features).
                let wq = unsafe { X::chunks256(wb) };
                let mut s = _mm256_set1_epi32(bias);
                for (c, wq) in wq.iter().enumerate() {
                    // SAFETY: four bytes at 4c inside the block's 32 `qs`.
                    let yc = unsafe { std::ptr::read_unaligned(y.as_ptr().add(4 * c).cast::<i32>()) };
                    s = _mm256_dpbusd_epi32(s, *wq, _mm256_set1_epi32(yc));
                }
                s
            };
            acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(s), acc);
            if let Some(m) = wb.mins() {
                // SAFETY: b < nb as above, and the types with mins have the
                // sums.
                let s = unsafe { *act.s.get_unchecked(b) };
                acc = _mm256_fmadd_ps(super::avx2::scales(m), _mm256_set1_ps(s), acc);
            }
        }
        // SAFETY: writes exactly the eight floats of `out`; unaligned.
        unsafe { _mm256_storeu_ps(out[..ROWS].as_mut_ptr(), acc) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl X8Dot for BlockQ8_0x8 {
    type Act = BlockQ8_0;
    const NEEDS_OFFSET: bool = false;
    const NEEDS_PAIRS: bool = false;
    const TILE: usize = 4;
    const BIAS: i32 = 128;
}

/// The 4- and 5-bit types: unsigned levels (`w + BIAS`, or `q` itself for
/// the types with mins), the two-group VNNI kernel and `avx2::nibbles`.
macro_rules! x8_levels {
    ($x8:ty, act: $act:ty, bias: $bias:expr $(, min: |$r:ident| $m:expr)?) => {
        impl X8Dot for $x8 {
            type Act = $act;
            $(
                const HAS_MIN: bool = true;
                fn row_min($r: &Self::Source) -> f32 {
                    $m
                }
            )?
            const NEEDS_OFFSET: bool = !Self::HAS_MIN;
            const NEEDS_PAIRS: bool = false;
            const TILE: usize = 4;
            const BIAS: i32 = $bias;

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn avx2<const T: usize>(w: &[Self], act: Act, out: &mut [[f32; ROWS]; T]) {
                // SAFETY: the caller's contract is the kernel's.
                unsafe { avx2::nibbles::<Self, T>(w, act, out) }
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn avx512<const T: usize>(w: [&[Self]; 2], act: Act, out: &mut [[f32; ROWS2]; T]) {
                // SAFETY: the caller's contract is the kernel's.
                unsafe { avx512::gemm::<Self, T>(w, act, out) }
            }
        }
    };
}
x8_levels!(BlockQ4_0x8, act: BlockQ8_0, bias: 8);
x8_levels!(BlockQ4_1x8, act: BlockQ8_1, bias: 0, min: |r| r.m.to_f32());
x8_levels!(BlockQ5_0x8, act: BlockQ8_0, bias: 16);
x8_levels!(BlockQ5_1x8, act: BlockQ8_1, bias: 0, min: |r| r.m.to_f32());
