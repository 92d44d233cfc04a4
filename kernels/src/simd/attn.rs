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

/// Per element type: AVX2 where the CPU has it (x86-64), else portable.
pub trait AttnKernels: CacheElem {
    fn dot(isa: Isa, q: &[f32], k: &[Self]) -> f32;
    fn axpy(isa: Isa, a: f32, v: &[Self], out: &mut [f32]);
}

macro_rules! attn_kernels {
    ($t:ty, $dot:ident, $axpy:ident) => {
        impl AttnKernels for $t {
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
attn_kernels!(f16, dot_f16, axpy_f16);
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
