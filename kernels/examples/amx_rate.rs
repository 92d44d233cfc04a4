//! What Intel's AMX (`tdpbssd` on 8-bit tiles) could do for Q8_0 prompt
//! products, next to the AVX-512 VNNI kernel the runtime uses, on the same
//! interleaved weights in L1, one thread: a measurement for planning, not a
//! runtime path.
//!
//! The interleaved Q8_0 block (`BlockQ8_0x8`: chunk `c` of eight rows, four
//! bytes each, side by side) is already an AMX "B" tile: eight tile rows of
//! 32 bytes, row `c` holding weights `4c..4c+4` of the eight rows. One
//! `tdpbssd` multiplies it by sixteen tokens' activation block (the "A"
//! tile, 16 x 32 bytes, as `x8::ActBuf` packs a 16-token tile) into a 16 x 8
//! tile of exact i32 block sums. ggml's scales are per block of 32, so each
//! block's sums leave the tiles (`tilestored`) and meet the two scales on
//! 512-bit registers, as in the VNNI kernel's float tail.
//!
//! `cargo run --release -p qllama-kernels --example amx_rate` (Linux on a
//! CPU with AMX-INT8; it says so and stops elsewhere). Session 11, Intel
//! Xeon with AMX, one thread: AMX 290 G MAC/s (the tiles alone, without the
//! scales, 402), the VNNI kernel 269: 1.08x. The per-block `tilestored`
//! and float tail eat most of what the tiles offer.

fn main() {
    #[cfg(target_arch = "x86_64")]
    if let Err(e) = x86::run() {
        eprintln!("amx_rate: {e}");
        std::process::exit(1);
    }
    #[cfg(not(target_arch = "x86_64"))]
    eprintln!("amx_rate: AMX is an x86-64 extension");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::asm;
    use core::arch::x86_64::*;
    use qllama_kernels::formats::interleaved::{self, BlockQ8_0x8, ROWS};
    use qllama_kernels::formats::{cast_blocks, BlockQ8_0};
    use qllama_kernels::simd::x8::{self, Act, ActBuf, X8Dot};
    use qllama_kernels::{simd, GgmlDType};
    use std::time::Instant;

    /// Tokens per AMX tile (rows of the A tile).
    const T: usize = 16;
    const COLS: usize = 1024;
    const NB: usize = COLS / 32;

    /// The 64-byte tile configuration `ldtilecfg` reads (palette 1).
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-INT8 (bit 25).
    fn has_amx_int8() -> bool {
        let r = __cpuid_count(7, 0);
        r.edx & (3 << 24) == 3 << 24
    }

    /// Linux hands out the tile state on request only:
    /// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`.
    fn request_tiles() -> bool {
        let ret: i64;
        // SAFETY: system call 158 (arch_prctl) with two integer arguments;
        // it reads and writes no memory of ours. The kernel clobbers rcx and
        // r11.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64, in("rsi") 18i64,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// Tile 0: sixteen tokens' activation block (16 x 32 bytes); tiles 1
    /// and 2: one block of each of two groups (8 x 32 bytes); tiles 3 and 4:
    /// their sums (16 tokens x 8 rows of i32).
    fn configure() {
        let mut c = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        for (t, rows) in [(0, 16), (1, 8), (2, 8), (3, 16), (4, 16)] {
            c.rows[t] = rows;
            c.colsb[t] = 32;
        }
        // SAFETY: the CPU has AMX and Linux granted the tile state
        // (checked by the caller); `c` is a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &c, options(nostack, readonly)) };
    }

    /// Sixteen rows (a pair of groups) x sixteen tokens, as
    /// `x8::gemm2`: `out[t][j]`.
    ///
    /// # Safety
    /// Tiles configured by [`configure`]; the CPU has AVX-512 F and F16C;
    /// `act` holds `T * w[0].len()` blocks and scales.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
    unsafe fn amx_gemm(w: [&[BlockQ8_0x8]; 2], act: Act, out: &mut [[f32; 16]; T], bare: bool) {
        #[repr(C, align(64))]
        struct Sums([[i32; 16]; T]);
        let mut sums = Sums([[0; 16]; T]);
        let mut acc = [_mm512_setzero_ps(); T];
        for (b, (wa, wb)) in w[0].iter().zip(w[1]).enumerate() {
            let a = act.q[b * T..].as_ptr();
            // SAFETY: the tiles read 16 x 32 bytes of activations (the
            // tile's 16 tokens of block b, side by side) and 8 x 32 bytes of
            // each block's `qs`, and write 16 x 64 bytes of `sums`: group 0's
            // eight rows in the low half of each line, group 1's in the high.
            unsafe {
                asm!(
                    "tilezero tmm3",
                    "tilezero tmm4",
                    "tileloadd tmm0, [{a} + {s32}*1]",
                    "tileloadd tmm1, [{w0} + {s32}*1]",
                    "tileloadd tmm2, [{w1} + {s32}*1]",
                    "tdpbssd tmm3, tmm0, tmm1",
                    "tdpbssd tmm4, tmm0, tmm2",
                    "tilestored [{c0} + {s64}*1], tmm3",
                    "tilestored [{c1} + {s64}*1], tmm4",
                    a = in(reg) a,
                    w0 = in(reg) wa.qs.as_ptr(),
                    w1 = in(reg) wb.qs.as_ptr(),
                    c0 = in(reg) sums.0.as_mut_ptr().cast::<i32>(),
                    c1 = in(reg) sums.0.as_mut_ptr().cast::<i32>().add(8),
                    s32 = in(reg) 32usize,
                    s64 = in(reg) 64usize,
                    options(nostack),
                );
            }
            if bare {
                continue;
            }
            // SAFETY: 16 bytes of each group's eight f16 scales.
            let dw = unsafe {
                _mm512_cvtph_ps(_mm256_set_m128i(
                    _mm_loadu_si128(wb.d.as_ptr().cast()),
                    _mm_loadu_si128(wa.d.as_ptr().cast()),
                ))
            };
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: line t of `sums` (64 aligned bytes); scale b*T+t of
                // the caller's T * nb.
                let (s, dy) =
                    unsafe { (_mm512_load_si512(sums.0[t].as_ptr().cast()), *act.d.get_unchecked(b * T + t)) };
                *acc = _mm512_fmadd_ps(dw, _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dy)), *acc);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: the sixteen floats of `o`.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
    }

    pub fn run() -> Result<(), String> {
        if !has_amx_int8() {
            return Err("this CPU has no AMX-INT8".into());
        }
        if !request_tiles() {
            return Err("Linux refused the AMX tile state (arch_prctl)".into());
        }
        if simd::isa() != simd::Isa::Avx512 {
            return Err("the comparison needs the AVX-512 VNNI kernels".into());
        }
        configure();
        // Sixteen rows of weights and sixteen tokens, Q8_0.
        let val = |i: usize| ((i.wrapping_mul(2654435761) >> 7) % 2001) as f32 / 1000.0 - 1.0;
        let row_bytes = GgmlDType::Q8_0.row_bytes(COLS).expect("whole blocks");
        let quantize = |n: usize, seed: usize| {
            let mut q = vec![0u8; n * row_bytes];
            for (r, out) in q.chunks_mut(row_bytes).enumerate() {
                let src: Vec<f32> = (0..COLS).map(|c| val(seed + r * COLS + c)).collect();
                GgmlDType::Q8_0.quantize_row(&src, out);
            }
            q
        };
        let q = quantize(2 * ROWS, 0);
        let mut packed = vec![0u8; q.len()];
        interleaved::interleave(GgmlDType::Q8_0, 2 * ROWS, &q, &mut packed);
        let blocks: &[BlockQ8_0x8] = interleaved::cast(&packed);
        let w = [&blocks[..NB], &blocks[NB..]];
        let y = quantize(T, 99);
        let y: &[BlockQ8_0] = cast_blocks(&y);
        let isa = simd::isa();
        // One tile of 16 tokens for AMX; two of 8 for the VNNI kernel.
        let mut act16 = ActBuf::default();
        act16.pack(y, T, T, BlockQ8_0x8::needs(isa), BlockQ8_0x8::BIAS);
        let mut act8 = ActBuf::default();
        act8.pack(y, T, 8, BlockQ8_0x8::needs(isa), BlockQ8_0x8::BIAS);

        // Correctness first: against the scalar reference, per group.
        let mut got = [[0f32; 16]; T];
        // SAFETY: tiles configured, AVX-512 checked, 16 * NB blocks packed.
        unsafe { amx_gemm(w, act16.tile(0..T, 0..NB), &mut got, false) };
        for (g, wg) in w.iter().enumerate() {
            let mut want = [[0f32; ROWS]; T];
            x8::reference::<BlockQ8_0x8, T>(wg, act16.tile(0..T, 0..NB), &mut want);
            for t in 0..T {
                for j in 0..ROWS {
                    let (a, b) = (got[t][g * ROWS + j], want[t][j]);
                    if (a - b).abs() > 1e-4 * b.abs().max(1.0) {
                        return Err(format!("wrong sum: group {g} row {j} token {t}: {a} against {b}"));
                    }
                }
            }
        }

        let macs = (2 * ROWS * COLS * T) as f64;
        let time = |f: &mut dyn FnMut()| {
            let reps = 20_000;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..reps {
                    f();
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            macs * reps as f64 / best / 1e9
        };
        for round in 0..3 {
            let amx = time(&mut || {
                // SAFETY: as above.
                unsafe { amx_gemm(w, act16.tile(0..T, 0..NB), &mut got, false) };
                std::hint::black_box(&mut got);
            });
            let bare = time(&mut || {
                // SAFETY: as above.
                unsafe { amx_gemm(w, act16.tile(0..T, 0..NB), &mut got, true) };
                std::hint::black_box(&mut got);
            });
            let mut out = [[0f32; x8::ROWS2]; 8];
            let vnni = time(&mut || {
                for t0 in [0, 8] {
                    x8::gemm2::<BlockQ8_0x8, 8>(isa, w, act8.tile(t0..t0 + 8, 0..NB), &mut out);
                }
                std::hint::black_box(&mut out);
            });
            println!(
                "round {round}: 16 rows x {COLS} x 16 tokens in L1, one thread, G MAC/s: AMX {amx:.0} \
                 (tiles alone {bare:.0}), VNNI kernel {vnni:.0}: AMX {:.2}x",
                amx / vnni
            );
        }
        Ok(())
    }
}
