//! `matmul` against an f64 reference: dequantized weights times the
//! activations as the kernel sees them (quantized to the weight type's
//! `vec_dot_type`, then dequantized), on every instruction set this CPU has.

mod common;

use common::{dequantize, Aligned, Rng};
use qllama_kernels::matmul::matmul_with;
use qllama_kernels::simd::Isa;
use qllama_kernels::{matmul, GgmlDType, MatmulScratch, QMatrix};

/// Every type with a dot product.
fn dot_types() -> Vec<GgmlDType> {
    GgmlDType::ALL.into_iter().filter(|t| t.can_dot()).collect()
}

struct Case {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    n_tokens: usize,
    w: Aligned,
    x: Vec<f32>,
}

impl Case {
    fn new(rng: &mut Rng, dtype: GgmlDType, rows: usize, cols: usize, n_tokens: usize) -> Self {
        let w = rng.normals(rows * cols, 0.05);
        // A few large activations, as real residual streams have.
        let mut x = rng.normals(n_tokens * cols, 1.0);
        for v in x.iter_mut().step_by(37) {
            *v *= 20.0;
        }
        Case { dtype, rows, cols, n_tokens, w: Aligned::quantize(dtype, &w), x }
    }

    fn matrix(&self) -> QMatrix<'_> {
        QMatrix::new(self.dtype, self.rows, self.cols, self.w.as_ref()).expect("valid matrix")
    }

    /// f64 reference and per-output tolerance. The tolerance bounds f32
    /// rounding in any summation order (a few roundings per block product
    /// and one per running-sum step, relative to the sum of |products|),
    /// plus, for offset weights, ggml's use of the activations' f16 `s`
    /// (= d * sum(q), rounded) in place of the exact sum: at most 2^-10 of
    /// |m| * sum|a| per block, where `m` is the block minimum.
    fn reference(&self) -> (Vec<f64>, Vec<f64>) {
        let (rows, cols) = (self.rows, self.cols);
        let wd = dequantize(self.dtype, self.w.as_ref(), rows * cols);
        let at = self.dtype.vec_dot_type();
        let xq = Aligned::quantize(at, &self.x);
        let xd = dequantize(at, xq.as_ref(), self.x.len());
        let bs = self.dtype.block_size();
        let offset = matches!(self.dtype, GgmlDType::Q4_1 | GgmlDType::Q5_1);
        let eps = 2f64.powi(-24);
        let (mut want, mut tol) = (Vec::new(), Vec::new());
        for t in 0..self.n_tokens {
            let a = &xd[t * cols..(t + 1) * cols];
            for r in 0..rows {
                let w = &wd[r * cols..(r + 1) * cols];
                let dot: f64 = w.iter().zip(a).map(|(&w, &a)| w as f64 * a as f64).sum();
                let mut mag: f64 = w.iter().zip(a).map(|(&w, &a)| (w as f64 * a as f64).abs()).sum();
                let mut s_err = 0.0;
                if offset {
                    for (wb, ab) in w.chunks(bs).zip(a.chunks(bs)) {
                        // Quantizer output has q = 0 at the block minimum, so
                        // the smallest dequantized value is exactly m.
                        let m = wb.iter().fold(f32::MAX, |m, &v| m.min(v)).abs() as f64;
                        let sa: f64 = ab.iter().map(|&v| v.abs() as f64).sum();
                        mag += m * sa;
                        s_err += m * sa * 2f64.powi(-10) * 1.01;
                    }
                }
                let steps = (cols / bs) as f64 + 40.0;
                want.push(dot);
                tol.push(steps * 2.0 * eps * mag + s_err + f64::MIN_POSITIVE);
            }
        }
        (want, tol)
    }

    fn check(&self, isa: Option<Isa>, scratch: &mut MatmulScratch) {
        let mut out = vec![f32::NAN; self.n_tokens * self.rows];
        let m = self.matrix();
        match isa {
            Some(isa) => matmul_with(isa, &m, &self.x, self.n_tokens, &mut out, scratch),
            None => matmul(&m, &self.x, self.n_tokens, &mut out, scratch),
        }
        let (want, tol) = self.reference();
        for (i, ((&got, &want), &tol)) in out.iter().zip(&want).zip(&tol).enumerate() {
            assert!(
                (got as f64 - want).abs() <= tol,
                "{} {}x{} n_tokens {} on {}: out[token {}, row {}] = {got:e}, f64 reference {want:e}, tolerance {tol:e}",
                self.dtype,
                self.rows,
                self.cols,
                self.n_tokens,
                isa.map_or("default", Isa::name),
                i / self.rows,
                i % self.rows
            );
        }
    }
}

#[test]
fn matmul_matches_f64_reference() {
    let mut rng = Rng::new(11);
    let mut scratch = MatmulScratch::default();
    // Row counts around and across the 32-row chunks (and not multiples of
    // them); column counts of one, several and many blocks.
    // Legacy types get odd block counts; K-quants (256-wide blocks) get 256 and 512.
    let shapes = [(1, 32), (45, 64), (77, 96), (130, 320), (33, 256), (9, 512)];
    for dtype in dot_types() {
        for &(rows, cols) in shapes.iter().filter(|&&(_, c)| c % dtype.block_size() == 0) {
            for n_tokens in [1, 5] {
                let case = Case::new(&mut rng, dtype, rows, cols, n_tokens);
                case.check(None, &mut scratch);
                for isa in Isa::available() {
                    case.check(Some(isa), &mut scratch);
                }
            }
        }
    }
}

/// The scratch buffer is reused across calls of different sizes (smaller
/// after larger) without stale data leaking into results.
#[test]
fn scratch_reuse_gives_same_results() {
    let mut rng = Rng::new(12);
    let big = Case::new(&mut rng, GgmlDType::Q4_0, 40, 256, 5);
    let small = Case::new(&mut rng, GgmlDType::Q8_0, 33, 64, 2);
    let run = |c: &Case, scratch: &mut MatmulScratch| {
        let mut out = vec![0.0; c.n_tokens * c.rows];
        matmul(&c.matrix(), &c.x, c.n_tokens, &mut out, scratch);
        out
    };
    let fresh = run(&small, &mut MatmulScratch::default());
    let mut scratch = MatmulScratch::default();
    run(&big, &mut scratch);
    assert_eq!(run(&small, &mut scratch), fresh);
    assert!(fresh.iter().any(|&v| v != 0.0));
}

#[test]
fn qmatrix_rejects_bad_shapes() {
    let data = Aligned::zeroed(18 * 4 + 2);
    let bytes = &data.as_ref()[..18 * 4];
    let ok = QMatrix::new(GgmlDType::Q4_0, 2, 64, bytes).expect("2 rows of 2 blocks");
    assert_eq!((ok.rows, ok.cols, ok.row_bytes()), (2, 64, 36));
    assert_eq!(ok.row(1).len(), 36);

    let err = |r: Result<QMatrix, String>| r.expect_err("should be rejected");
    // One byte short or long.
    assert!(err(QMatrix::new(GgmlDType::Q4_0, 2, 64, &bytes[..71])).contains("needs 72 bytes, got 71"));
    assert!(err(QMatrix::new(GgmlDType::Q4_0, 2, 64, &data.as_ref()[..73])).contains("got 73"));
    // Rows that are not a whole number of blocks.
    assert!(err(QMatrix::new(GgmlDType::Q4_0, 4, 36, bytes)).contains("not a whole number of q4_0 blocks"));
    // A type without a kernel.
    assert!(err(QMatrix::new(GgmlDType::Q8K, 1, 256, Aligned::zeroed(292).as_ref())).contains("no matmul kernel"));
    // A size that overflows instead of allocating or wrapping around.
    assert!(err(QMatrix::new(GgmlDType::Q8_0, usize::MAX / 2, 64, bytes)).contains("overflows"));
    // Misaligned data.
    assert!(err(QMatrix::new(GgmlDType::Q4_0, 1, 32, &data.as_ref()[1..19])).contains("aligned"));
    assert!(err(QMatrix::new(GgmlDType::F32, 1, 4, &data.as_ref()[2..18])).contains("aligned"));
}
