//! Attention's inner loops over a KV cache of f16 (or f32) rows:
//! `q · k` for each cached key and `out += a · v` for each cached value.
//! Short rows (a head is 64 to 128 values) called millions of times per
//! prompt, so the f16 widening is done in registers (F16C) rather than
//! through a buffer. Tested against the f64 reference in
//! `kernels/tests/attn.rs`.

use super::Isa;
use half::f16;

/// Something a cache row can be stored as.
pub trait CacheElem: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
}
impl CacheElem for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}
impl CacheElem for f16 {
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// `Σ q[i] · k[i]`.
#[inline]
pub fn dot<T: AttnKernels>(isa: Isa, q: &[f32], k: &[T]) -> f32 {
    assert_eq!(q.len(), k.len(), "dot product of rows of different lengths");
    T::dot(isa, q, k)
}

/// `out[i] += a · v[i]`.
#[inline]
pub fn axpy<T: AttnKernels>(isa: Isa, a: f32, v: &[T], out: &mut [f32]) {
    assert_eq!(v.len(), out.len(), "axpy of rows of different lengths");
    T::axpy(isa, a, v, out)
}

/// Portable versions: eight independent partial sums, which compilers turn
/// into vector code (a single running sum cannot be reordered).
pub fn dot_portable<T: CacheElem>(q: &[f32], k: &[T]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (qc, qt) = q.as_chunks::<8>();
    let (kc, kt) = k.as_chunks::<8>();
    for (a, b) in qc.iter().zip(kc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i].to_f32();
        }
    }
    let tail: f32 = qt.iter().zip(kt).map(|(a, b)| a * b.to_f32()).sum();
    acc.iter().sum::<f32>() + tail
}

pub fn axpy_portable<T: CacheElem>(a: f32, v: &[T], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += a * x.to_f32();
    }
}

/// Queries per attention tile: the rows of a prompt batch that attend to
/// the same keys, so each key and value is widened once for all of them.
pub const TILE: usize = 8;

/// A tile of `m <= TILE` query rows against `n` cache rows: the rows of
/// each operand are `stride` values apart, `len` long.
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    pub count: usize,
    pub len: usize,
    pub stride: usize,
}

impl Rows {
    fn check(&self, what: &str, have: usize) {
        assert!(self.len <= self.stride || self.count <= 1, "{what}: rows overlap");
        assert!(self.count == 0 || (self.count - 1) * self.stride + self.len <= have, "{what}: rows out of bounds");
    }
}

/// `scores[j * sr.stride + p] = scale * (q_j · k_p)` for the `qr.count`
/// query rows of `q` and the `kr.count` key rows of `k`.
pub fn dot_tile<T: AttnKernels>(
    isa: Isa,
    q: &[f32],
    qr: Rows,
    k: &[T],
    kr: Rows,
    scale: f32,
    scores: &mut [f32],
    sr: Rows,
) {
    assert!(qr.count <= TILE && qr.len == kr.len && sr.count == qr.count && sr.len == kr.count, "tile shapes");
    qr.check("queries", q.len());
    kr.check("keys", k.len());
    sr.check("scores", scores.len());
    T::dot_tile(isa, q, qr, k, kr, scale, scores, sr)
}

/// `out_j = Σ_p a[j * ar.stride + p] · v_p` (overwriting `out_j`) for the
/// `ar.count` rows of weights `a` and the `vr.count` value rows of `v`.
pub fn axpy_tile<T: AttnKernels>(isa: Isa, a: &[f32], ar: Rows, v: &[T], vr: Rows, out: &mut [f32], or: Rows) {
    assert!(ar.count <= TILE && ar.len == vr.count && or.count == ar.count && or.len == vr.len, "tile shapes");
    ar.check("weights", a.len());
    vr.check("values", v.len());
    or.check("outputs", out.len());
    T::axpy_tile(isa, a, ar, v, vr, out, or)
}

/// The tiles row by row with [`dot`] and [`axpy`]: the reference, and the
/// path for shapes the vector tiles do not take.
#[allow(clippy::too_many_arguments)]
pub fn dot_tile_rows<T: AttnKernels>(
    isa: Isa,
    q: &[f32],
    qr: Rows,
    k: &[T],
    kr: Rows,
    scale: f32,
    scores: &mut [f32],
    sr: Rows,
) {
    for j in 0..qr.count {
        let qj = &q[j * qr.stride..][..qr.len];
        for p in 0..kr.count {
            scores[j * sr.stride + p] = T::dot(isa, qj, &k[p * kr.stride..][..kr.len]) * scale;
        }
    }
}

/// See [`dot_tile_rows`].
pub fn axpy_tile_rows<T: AttnKernels>(isa: Isa, a: &[f32], ar: Rows, v: &[T], vr: Rows, out: &mut [f32], or: Rows) {
    for j in 0..ar.count {
        let o = &mut out[j * or.stride..][..or.len];
        o.fill(0.0);
        for p in 0..vr.count {
            T::axpy(isa, a[j * ar.stride + p], &v[p * vr.stride..][..vr.len], o);
        }
    }
}

/// Per element type: AVX2 where the CPU has it (x86-64), else portable;
/// the tiles in AVX-512 for f16 caches.
pub trait AttnKernels: CacheElem {
    fn dot(isa: Isa, q: &[f32], k: &[Self]) -> f32;
    fn axpy(isa: Isa, a: f32, v: &[Self], out: &mut [f32]);
    #[allow(clippy::too_many_arguments)]
    fn dot_tile(isa: Isa, q: &[f32], qr: Rows, k: &[Self], kr: Rows, scale: f32, scores: &mut [f32], sr: Rows) {
        dot_tile_rows(isa, q, qr, k, kr, scale, scores, sr)
    }
    fn axpy_tile(isa: Isa, a: &[f32], ar: Rows, v: &[Self], vr: Rows, out: &mut [f32], or: Rows) {
        axpy_tile_rows(isa, a, ar, v, vr, out, or)
    }
}

macro_rules! attn_kernels {
    ($t:ty, $dot:ident, $axpy:ident $(, tiles: $tiles:ident)?) => {
        impl AttnKernels for $t {
            $(
            #[inline]
            fn dot_tile(isa: Isa, q: &[f32], qr: Rows, k: &[Self], kr: Rows, scale: f32, scores: &mut [f32], sr: Rows) {
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx512 && super::cpu_has(Isa::Avx512) && $tiles::takes(kr.len) {
                    // SAFETY: the CPU has AVX-512 F and F16C/FMA (checked
                    // just above); shapes and bounds checked by `dot_tile`.
                    return unsafe { $tiles::dot_tile(q, qr, k, kr, scale, scores, sr) };
                }
                dot_tile_rows(isa, q, qr, k, kr, scale, scores, sr)
            }
            #[inline]
            fn axpy_tile(isa: Isa, a: &[f32], ar: Rows, v: &[Self], vr: Rows, out: &mut [f32], or: Rows) {
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx512 && super::cpu_has(Isa::Avx512) && $tiles::takes(vr.len) {
                    // SAFETY: as for `dot_tile`, checked by `axpy_tile`.
                    return unsafe { $tiles::axpy_tile(a, ar, v, vr, out, or) };
                }
                axpy_tile_rows(isa, a, ar, v, vr, out, or)
            }
            )?
            #[inline]
            fn dot(isa: Isa, q: &[f32], k: &[Self]) -> f32 {
                #[cfg(target_arch = "x86_64")]
                if matches!(isa, Isa::Avx2 | Isa::Avx512) && super::cpu_has(Isa::Avx2) {
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked just
                    // above); the lengths are equal (checked by `dot`).
                    return unsafe { avx2::$dot(q, k) };
                }
                let _ = isa;
                dot_portable(q, k)
            }
            #[inline]
            fn axpy(isa: Isa, a: f32, v: &[Self], out: &mut [f32]) {
                #[cfg(target_arch = "x86_64")]
                if matches!(isa, Isa::Avx2 | Isa::Avx512) && super::cpu_has(Isa::Avx2) {
                    // SAFETY: as for `dot`.
                    return unsafe { avx2::$axpy(a, v, out) };
                }
                let _ = isa;
                axpy_portable(a, v, out)
            }
        }
    };
}
attn_kernels!(f16, dot_f16, axpy_f16, tiles: avx512);
attn_kernels!(f32, dot_f32, axpy_f32);

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use core::arch::x86_64::*;

    /// Eight values of a row as f32.
    trait Load8: CacheElem {
        /// # Safety
        /// `p` must point to 8 readable values; AVX2 and F16C available.
        unsafe fn load8(p: *const Self) -> __m256;
    }
    impl Load8 for f32 {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn load8(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable values.
            unsafe { _mm256_loadu_ps(p) }
        }
    }
    impl Load8 for f16 {
        #[inline]
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn load8(p: *const f16) -> __m256 {
            // SAFETY: the caller guarantees 8 readable values (16 bytes).
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot<T: Load8>(q: &[f32], k: &[T]) -> f32 {
        let n = q.len().min(k.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8j + 8 <= n, inside both slices.
                let (x, y) =
                    unsafe { (_mm256_loadu_ps(q.as_ptr().add(i + 8 * j)), T::load8(k.as_ptr().add(i + 8 * j))) };
                *a = _mm256_fmadd_ps(x, y, *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, inside both slices.
            let (x, y) = unsafe { (_mm256_loadu_ps(q.as_ptr().add(i)), T::load8(k.as_ptr().add(i))) };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum(sum) + q[i..n].iter().zip(&k[i..n]).map(|(a, b)| a * b.to_f32()).sum::<f32>()
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn axpy<T: Load8>(a: f32, v: &[T], out: &mut [f32]) {
        let n = v.len().min(out.len());
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, inside both slices; `out` is borrowed
            // mutably, so nothing else aliases it.
            unsafe {
                let o = out.as_mut_ptr().add(i);
                _mm256_storeu_ps(o, _mm256_fmadd_ps(av, T::load8(v.as_ptr().add(i)), _mm256_loadu_ps(o)));
            }
            i += 8;
        }
        for (o, x) in out[i..n].iter_mut().zip(&v[i..n]) {
            *o += a * x.to_f32();
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
        // SAFETY: same target features; bounds handled inside.
        unsafe { dot(q, k) }
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f32(q: &[f32], k: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { dot(q, k) }
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(a: f32, v: &[f16], out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { axpy(a, v, out) }
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f32(a: f32, v: &[f32], out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { axpy(a, v, out) }
    }
}

/// The f16 tiles in AVX-512: each key and value row is widened once per
/// tile and used for all its queries; rows of 32, 64 or 128 values (a
/// const number of 16-lane vectors, kept in registers).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use core::arch::x86_64::*;

    pub fn takes(len: usize) -> bool {
        matches!(len, 32 | 64 | 128)
    }

    /// # Safety
    /// AVX-512 F, F16C and FMA; the shapes and bounds `dot_tile` checks;
    /// `takes(kr.len)`.
    #[target_feature(enable = "avx512f,avx2,f16c,fma")]
    pub unsafe fn dot_tile(q: &[f32], qr: Rows, k: &[f16], kr: Rows, scale: f32, scores: &mut [f32], sr: Rows) {
        // SAFETY: as the caller's contract.
        unsafe {
            match kr.len {
                32 => dot_n::<2>(q, qr, k, kr, scale, scores, sr),
                64 => dot_n::<4>(q, qr, k, kr, scale, scores, sr),
                _ => dot_n::<8>(q, qr, k, kr, scale, scores, sr),
            }
        }
    }

    /// Rows of `16 N` values.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,f16c,fma")]
    unsafe fn dot_n<const N: usize>(
        q: &[f32],
        qr: Rows,
        k: &[f16],
        kr: Rows,
        scale: f32,
        scores: &mut [f32],
        sr: Rows,
    ) {
        for p in 0..kr.count {
            // SAFETY: key row p holds 16 N values inside `k` (checked by
            // `dot_tile`); 32-byte unaligned loads.
            let key: [__m512; N] = std::array::from_fn(|c| unsafe {
                _mm512_cvtph_ps(_mm256_loadu_si256(k.as_ptr().add(p * kr.stride + 16 * c).cast()))
            });
            for j in 0..qr.count {
                let mut acc = _mm512_setzero_ps();
                for (c, key) in key.iter().enumerate() {
                    // SAFETY: query row j holds 16 N values inside `q`.
                    let x = unsafe { _mm512_loadu_ps(q.as_ptr().add(j * qr.stride + 16 * c)) };
                    acc = _mm512_fmadd_ps(x, *key, acc);
                }
                scores[j * sr.stride + p] = _mm512_reduce_add_ps(acc) * scale;
            }
        }
    }

    /// # Safety
    /// As for [`dot_tile`], with `axpy_tile`'s checks and `takes(vr.len)`.
    #[target_feature(enable = "avx512f,avx2,f16c,fma")]
    pub unsafe fn axpy_tile(a: &[f32], ar: Rows, v: &[f16], vr: Rows, out: &mut [f32], or: Rows) {
        // Two vectors (32 values) of the row at a time, for every query:
        // 2 * TILE accumulators, and each value slice widened once.
        for c in (0..vr.len).step_by(32) {
            let mut acc = [[_mm512_setzero_ps(); 2]; TILE];
            for p in 0..vr.count {
                // SAFETY: value row p holds `vr.len` values inside `v`, and
                // c + 32 <= vr.len (a multiple of 32).
                let x: [__m512; 2] = std::array::from_fn(|h| unsafe {
                    _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().add(p * vr.stride + c + 16 * h).cast()))
                });
                for (j, acc) in acc.iter_mut().enumerate().take(ar.count) {
                    let w = _mm512_set1_ps(a[j * ar.stride + p]);
                    acc[0] = _mm512_fmadd_ps(w, x[0], acc[0]);
                    acc[1] = _mm512_fmadd_ps(w, x[1], acc[1]);
                }
            }
            for (j, acc) in acc.iter().enumerate().take(ar.count) {
                let o = &mut out[j * or.stride + c..][..32];
                // SAFETY: 32 floats of `o`; unaligned stores.
                unsafe {
                    _mm512_storeu_ps(o.as_mut_ptr(), acc[0]);
                    _mm512_storeu_ps(o.as_mut_ptr().add(16), acc[1]);
                }
            }
        }
    }
}
