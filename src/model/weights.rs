//! Where each weight lives in the file. Nothing is copied except the small
//! F32 norm vectors; matrices are handed out as [`QMatrix`] views borrowing
//! the memory map (see [`super::Model::matrix`]).

use super::HParams;
use crate::gguf::{GgufError, GgufFile};
use qllama_kernels::{GgmlDType, QMatrix};

/// A weight matrix in the file: `rows` rows of `cols` values.
#[derive(Clone, Debug)]
pub struct WeightRef {
    pub name: String,
    /// Where the data lies in the mapped file.
    pub range: std::ops::Range<usize>,
    pub dtype: GgmlDType,
    pub rows: usize,
    pub cols: usize,
    /// Where the matrix lies in the model's repacked (interleaved) copy, if
    /// it was repacked at load (see `repack.rs`).
    pub packed: Option<std::ops::Range<usize>>,
}

#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: WeightRef,
    pub wk: WeightRef,
    pub wv: WeightRef,
    pub wo: WeightRef,
    pub ffn_norm: Vec<f32>,
    pub w_gate: WeightRef,
    pub w_up: WeightRef,
    pub w_down: WeightRef,
}

#[derive(Clone, Debug)]
pub struct Weights {
    /// `n_vocab` rows of `n_embd`; rows are dequantized on demand.
    pub token_embd: WeightRef,
    pub output_norm: Vec<f32>,
    /// The output head; `token_embd` itself when the embeddings are tied.
    pub output: WeightRef,
    pub tied: bool,
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    /// Find every tensor, check its type and shape against `hp`, and check
    /// that its bytes form a valid matrix view.
    pub fn open(file: &GgufFile, hp: &HParams) -> Result<Self, GgufError> {
        let (e, kv, ff) = (hp.n_embd, hp.kv_dim(), hp.n_ff);
        let token_embd = matrix(file, "token_embd.weight", hp.n_vocab, e, Use::Embedding)?;
        let output_norm = norm(file, "output_norm.weight", e)?;
        let (output, tied) = match file.tensor_info("output.weight") {
            Some(_) => (matrix(file, "output.weight", hp.n_vocab, e, Use::Matmul)?, false),
            None => (matrix(file, "token_embd.weight", hp.n_vocab, e, Use::Matmul)?, true),
        };
        let layers = (0..hp.n_layer)
            .map(|i| {
                let name = |t: &str| format!("blk.{i}.{t}.weight");
                Ok(LayerWeights {
                    attn_norm: norm(file, &name("attn_norm"), e)?,
                    wq: matrix(file, &name("attn_q"), e, e, Use::Matmul)?,
                    wk: matrix(file, &name("attn_k"), kv, e, Use::Matmul)?,
                    wv: matrix(file, &name("attn_v"), kv, e, Use::Matmul)?,
                    wo: matrix(file, &name("attn_output"), e, e, Use::Matmul)?,
                    ffn_norm: norm(file, &name("ffn_norm"), e)?,
                    w_gate: matrix(file, &name("ffn_gate"), ff, e, Use::Matmul)?,
                    w_up: matrix(file, &name("ffn_up"), ff, e, Use::Matmul)?,
                    w_down: matrix(file, &name("ffn_down"), e, ff, Use::Matmul)?,
                })
            })
            .collect::<Result<_, GgufError>>()?;
        Ok(Self { token_embd, output_norm, output, tied, layers })
    }

    /// Bytes of all the weight tensors the decoder reads.
    pub fn bytes(&self) -> u64 {
        let m = |w: &WeightRef| (w.dtype.row_bytes(w.cols).unwrap_or(0) * w.rows) as u64;
        let norms = |n: &[f32]| (n.len() * 4) as u64;
        let mut total = m(&self.token_embd) + norms(&self.output_norm);
        if !self.tied {
            total += m(&self.output);
        }
        for l in &self.layers {
            total += [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].into_iter().map(m).sum::<u64>();
            total += norms(&l.attn_norm) + norms(&l.ffn_norm);
        }
        total
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Use {
    Embedding,
    Matmul,
}

/// Shape in ggml order: `[cols, rows]`.
fn check_shape(file: &GgufFile, name: &str, dims: &[u64], want: &[usize]) -> Result<(), GgufError> {
    let ok = dims.len() == want.len() && dims.iter().zip(want).all(|(&d, &w)| d == w as u64);
    if ok {
        Ok(())
    } else {
        Err(file.error(format!("tensor {name} has shape {dims:?}, expected {want:?}")))
    }
}

fn matrix(file: &GgufFile, name: &str, rows: usize, cols: usize, usage: Use) -> Result<WeightRef, GgufError> {
    let view = file.tensor(name)?;
    if name == "token_embd.weight" && view.info.dims.len() == 2 && view.info.dims[1] != rows as u64 {
        return Err(file.error(format!(
            "vocabulary size {rows} differs from the {} rows of token_embd.weight",
            view.info.dims[1]
        )));
    }
    check_shape(file, name, &view.info.dims, &[cols, rows])?;
    let dtype = view.info.dtype;
    let usable = match usage {
        Use::Embedding => dtype.can_dequantize(),
        Use::Matmul => dtype.can_dot(),
    };
    if !usable {
        return Err(file.error(format!("tensor {name} has type {dtype}, which qllama cannot compute with yet")));
    }
    QMatrix::new(dtype, rows, cols, view.data).map_err(|e| file.error(format!("tensor {name}: {e}")))?;
    // The view is a subslice of the map: its offset there is its address
    // difference (no unsafe needed, and the same range the parser checked).
    let start = view.data.as_ptr() as usize - file.bytes().as_ptr() as usize;
    Ok(WeightRef { name: name.to_string(), range: start..start + view.data.len(), dtype, rows, cols, packed: None })
}

/// A norm weight vector, which must be F32 (as every converter writes it).
fn norm(file: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>, GgufError> {
    let view = file.tensor(name)?;
    check_shape(file, name, &view.info.dims, &[n])?;
    if view.info.dtype != GgmlDType::F32 {
        return Err(file.error(format!("tensor {name} has type {}, expected f32", view.info.dtype)));
    }
    if view.data.len() != n * 4 {
        return Err(file.error(format!("tensor {name} has {} bytes, expected {}", view.data.len(), n * 4)));
    }
    Ok(view.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}
