//! Instruction-set selection. One file per instruction set; the best one the
//! CPU has is picked once at start-up by runtime detection (never by
//! compile-time flags), and `QLLAMA_SIMD=scalar|avx2|avx512|neon` forces one.

pub mod attn;
pub mod exp;
pub mod rowtile;
pub mod scalar;
pub mod x8;
pub mod x8k;
pub mod xf;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use std::sync::OnceLock;

/// An instruction set a kernel can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (implies AVX2).
    Avx512,
    /// NEON; SDOT/i8mm are detected inside the NEON kernels.
    Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every instruction set this CPU supports, best last.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon].into_iter().filter(|i| i.supported()).collect()
    }

    fn detect() -> Isa {
        if let Ok(forced) = std::env::var("QLLAMA_SIMD") {
            let want = forced.trim().to_ascii_lowercase();
            match [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon].into_iter().find(|i| i.name() == want) {
                Some(isa) if isa.supported() => return isa,
                Some(isa) => eprintln!("QLLAMA_SIMD={forced}: this CPU lacks {}, detecting instead", isa.name()),
                None => eprintln!("QLLAMA_SIMD={forced}: unknown (scalar|avx2|avx512|neon), detecting instead"),
            }
        }
        *Isa::available().last().unwrap_or(&Isa::Scalar)
    }
}

/// The instruction set kernels use, detected once.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(Isa::detect)
}

/// Whether `isa` is supported, from a bitmask computed once (one atomic
/// load per call, cheap enough to check on every row dot).
#[inline]
fn cpu_has(isa: Isa) -> bool {
    static MASK: OnceLock<u8> = OnceLock::new();
    let mask = *MASK.get_or_init(|| Isa::available().iter().fold(0u8, |m, i| m | 1 << *i as u8));
    mask & (1 << isa as u8) != 0
}

#[cold]
#[inline(never)]
fn unsupported(isa: Isa) -> ! {
    panic!("instruction set {} is not supported by this CPU (pick one from Isa::available())", isa.name())
}

/// One block of 32 values quantized to 8 bits as ggml's Q8_0 does
/// (`d = amax / 127`, `q = roundf(x / d)`), in vector code where there is
/// some: bit-identical to the scalar reference, which the other sets use.
#[inline]
pub fn quantize_q8(isa: Isa, x: &[f32]) -> (f32, [i8; 32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if cpu_has(Isa::Avx2) => {
            let x: &[f32; 32] = x.try_into().expect("one block of 32 values");
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::quantize_q8(x) }
        }
        _ => crate::formats::quantize_q8(x),
    }
}

/// How far ahead of the block being read a one-token kernel asks for
/// weights. Generation streams each weight once from memory, and in this
/// VM the hardware prefetchers alone can leave much of the bandwidth
/// unused for the quantized kernels, which spend more instructions per
/// byte than a read loop. `examples/gemv_rate.rs` (cold 4096x4096
/// matrices on huge pages), GB/s for 0/2/4/8/16 KiB ahead: Q4_0 one
/// thread 15/26/28/35/33, two threads 29/39/55/60/60; Q6_K 2 against 8
/// KiB: 21 against 33 on one thread, 25 against 41 on two. In the model,
/// 7B Q4_0 tg64 on one thread, 4 against 8 KiB, alternating: 7.4/7.2/7.2
/// against 8.3/8.1/8.1 t/s.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 8192;

/// Software prefetch for a front-to-back walk over quantized weight
/// blocks: asks for each cache line once, [`PREFETCH`] bytes ahead of the
/// block being read (asking once per line rather than for every line of
/// every block: Q4_0 matvec 34.5 against 36.7 GB/s on one thread, 43
/// against 46 on two), into L2 only ([`prefetch_l2`]).
///
/// (The float kernels do without: they spend few instructions per byte,
/// and the hardware prefetchers keep up. `gemv_rate` on a 7B layer's
/// shapes, one/two threads, none against `prefetcht0`: F16 +46%/+16%,
/// BF16 +11%/+4%, F32 +21%/+8%.)
#[cfg(target_arch = "x86_64")]
pub(crate) struct Ahead {
    next: usize,
}

#[cfg(target_arch = "x86_64")]
impl Ahead {
    pub(crate) fn new<X>(blocks: &[X]) -> Self {
        Self { next: (blocks.as_ptr() as usize + PREFETCH) & !63 }
    }

    /// Call before reading `block`. Addresses past the end of the weights
    /// are harmless: a prefetch never faults.
    #[inline(always)]
    pub(crate) fn before<X>(&mut self, block: &X) {
        let end = block as *const X as usize + std::mem::size_of::<X>() + PREFETCH;
        while self.next < end {
            prefetch_l2(self.next as *const u8);
            self.next += 64;
        }
    }
}

/// Ask for the cache line at `p` into L2, not L1 (`prefetcht2`): the
/// kernel's own loads then move it on, and the L1's few miss buffers stay
/// free for them. `examples/gemv_rate.rs` on a 7B layer's shapes (4096x4096
/// x4, 11008x4096 x2, 4096x11008), one/two threads, against `prefetcht0`,
/// medians of 15 alternating passes: Q4_0 +22%/+21%, Q4_K +21%/+31%, Q6_K
/// +22%/+20%, Q5_0 +18%/+7%, Q8_0 +3%/+2%. In the model, alternating every
/// two tokens in one run, 7B Q4_0 tg: 5.49 against 4.43 t/s on one
/// thread, 7.28 against 6.15 on two; Q8_0 3.08 against 2.65 and 3.94
/// against 3.99.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_l2(p: *const u8) {
    // SAFETY: a prefetch is a hint; it never faults, whatever the address,
    // and SSE is part of every x86-64 CPU.
    unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T2 }>(p.cast()) };
}

/// Ask for the cache line at `p`, to be read soon.
#[inline(always)]
pub(crate) fn prefetch_read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address,
    // and SSE is part of every x86-64 CPU.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Ask for the cache line at `p`, which is about to be written: matmul
/// outputs land one token row apart, each line in its own page, and a
/// write that misses stalls the kernel after it (7B Q8_0 pp256: writing no
/// outputs at all was 10% faster than writing them unprefetched).
#[inline(always)]
pub(crate) fn prefetch_write(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as for `prefetch_read`.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

// Per-type dispatch: each format's `vec_dot` calls one of these, which routes
// to the instruction set's kernel. Every type has a kernel on every set, so
// there is no fallback; an unsupported `isa` panics rather than risk an
// illegal instruction.
use crate::formats::*;

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $x:ty, $y:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(isa: Isa, x: &[$x], y: &[$y]) -> f32 {
            assert_eq!(x.len(), y.len(), "dot product of rows of different lengths");
            match isa {
                Isa::Scalar => scalar::$name(x, y),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 if cpu_has(Isa::Avx2) => {
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked just
                    // above), all the kernel is compiled for; lengths match.
                    unsafe { avx2::$name(x, y) }
                }
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 if cpu_has(Isa::Avx512) => {
                    // SAFETY: the CPU has AVX2, FMA, F16C and AVX-512
                    // F/BW/VL/VNNI (checked just above); lengths match.
                    unsafe { avx512::$name(x, y) }
                }
                #[cfg(target_arch = "aarch64")]
                Isa::Neon if cpu_has(Isa::Neon) => {
                    // SAFETY: the CPU has NEON (checked just above; every
                    // aarch64 CPU does); lengths match.
                    unsafe { neon::$name(x, y) }
                }
                #[allow(unreachable_patterns)]
                _ => unsupported(isa),
            }
        }
    };
}

dispatch!(
    /// Q4_0 weights · Q8_0 activations.
    vec_dot_q4_0_q8_0, BlockQ4_0, BlockQ8_0
);
dispatch!(
    /// Q4_1 weights · Q8_1 activations.
    vec_dot_q4_1_q8_1, BlockQ4_1, BlockQ8_1
);
dispatch!(
    /// Q5_0 weights · Q8_0 activations.
    vec_dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0
);
dispatch!(
    /// Q5_1 weights · Q8_1 activations.
    vec_dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1
);
dispatch!(
    /// Q8_0 weights · Q8_0 activations. The SIMD paths assume the
    /// activations `y` hold -127..=127, as the Q8 quantizer writes (x86 uses
    /// ggml's |x|·sign(y, x) trick, which negates y); weights may hold -128.
    vec_dot_q8_0_q8_0, BlockQ8_0, BlockQ8_0
);
dispatch!(
    /// Q8_1 · Q8_1, with the same assumption on `y` as Q8_0.
    vec_dot_q8_1_q8_1, BlockQ8_1, BlockQ8_1
);
dispatch!(
    /// Q2_K weights · Q8_K activations (likewise Q3_K … Q6_K below).
    vec_dot_q2_k_q8_k, BlockQ2K, BlockQ8K
);
dispatch!(vec_dot_q3_k_q8_k, BlockQ3K, BlockQ8K);
dispatch!(vec_dot_q4_k_q8_k, BlockQ4K, BlockQ8K);
dispatch!(vec_dot_q5_k_q8_k, BlockQ5K, BlockQ8K);
dispatch!(vec_dot_q6_k_q8_k, BlockQ6K, BlockQ8K);
dispatch!(vec_dot_f32, f32, f32);
dispatch!(vec_dot_f16, half::f16, half::f16);
dispatch!(vec_dot_bf16, half::bf16, half::bf16);
