//! The forward pass, top to bottom as in llama2.c's `forward()`, for a batch
//! of tokens from one or more sequences.

use super::kv_cache::{KvData, KvElem, KvLayout, KvStore};
use super::*;
use qllama_kernels::simd::{self, attn, exp};
use qllama_kernels::{matmul, matmul_many};
use rayon::prelude::*;

impl Model {
    /// Evaluate `batch`: store its keys and values in `kv` and compute the
    /// logits of the rows `want` asks for (read them with
    /// [`Scratch::logits`]). Each token attends to the positions `0..=pos`
    /// of its own sequence, which are either cached or earlier in the batch.
    pub fn forward(
        &self,
        batch: &[BatchToken],
        kv: &mut KvCache,
        s: &mut Scratch,
        want: LogitRows<'_>,
    ) -> Result<(), ForwardError> {
        self.check_batch(batch, kv, s, want)?;
        // The other threads poll for the pass's products rather than sleep
        // between them.
        qllama_kernels::team::with_team(|| self.run_batch(batch, kv, s, want));
        Ok(())
    }

    /// [`Self::forward`] on a batch that passed [`Self::check_batch`]: nothing
    /// here can fail.
    fn run_batch(&self, batch: &[BatchToken], kv: &mut KvCache, s: &mut Scratch, want: LogitRows<'_>) {
        let hp = &self.hp;
        let n = batch.len();
        let (e, kvd, ff) = (hp.n_embd, hp.kv_dim(), hp.n_ff);
        let w = &self.weights;

        // Token embeddings, and each row's rotation angles.
        for (t, x) in batch.iter().zip(s.x.chunks_exact_mut(e)) {
            self.embed(t.token, x);
        }
        for (t, cs) in batch.iter().zip(s.rope.chunks_exact_mut(hp.rope_dim)) {
            for (pair, &freq) in cs.chunks_exact_mut(2).zip(&self.rope_freqs) {
                let (sin, cos) = (t.pos as f64 * freq).sin_cos();
                pair[0] = cos as f32;
                pair[1] = sin as f32;
            }
        }

        let x = &mut s.x[..n * e];
        let xb = &mut s.xb[..n * e];
        let xb2 = &mut s.xb2[..n * e];
        let q = &mut s.q[..n * e];
        let k = &mut s.k[..n * kvd];
        let v = &mut s.v[..n * kvd];
        let att_out = &mut s.att_out[..n * e];
        let hb = &mut s.hb[..n * ff];
        let hb2 = &mut s.hb2[..n * ff];
        let rope = &s.rope[..n * hp.rope_dim];
        let mm = &mut s.mm;

        for (l, lw) in w.layers.iter().enumerate() {
            // Attention: RMSNorm, then Q, K, V projections.
            rmsnorm_rows(xb, x, &lw.attn_norm, hp.rms_eps);
            let (wq, wk, wv) = (self.matrix(&lw.wq), self.matrix(&lw.wk), self.matrix(&lw.wv));
            matmul_many(&mut [(wq, &mut *q), (wk, &mut *k), (wv, &mut *v)], xb, n, mm);

            // Rotary embeddings on each head of Q and K.
            rope_rows(q, rope, hp.head_dim(), hp.rope_dim);
            rope_rows(k, rope, hp.head_dim(), hp.rope_dim);

            // Store K and V, then attend over each sequence's cache.
            let layout = kv.layout;
            match &mut kv.data {
                KvData::F16(store) => attention(hp, layout, store, l, batch, q, k, v, att_out, &mut s.scores),
                KvData::F32(store) => attention(hp, layout, store, l, batch, q, k, v, att_out, &mut s.scores),
            }

            // Output projection and residual.
            matmul(&self.matrix(&lw.wo), att_out, n, xb2, mm);
            add(x, xb2);

            // Feed-forward: RMSNorm, SwiGLU, down projection, residual.
            rmsnorm_rows(xb, x, &lw.ffn_norm, hp.rms_eps);
            let (w_gate, w_up) = (self.matrix(&lw.w_gate), self.matrix(&lw.w_up));
            matmul_many(&mut [(w_gate, &mut *hb), (w_up, &mut *hb2)], xb, n, mm);
            swiglu(hb, hb2);
            matmul(&self.matrix(&lw.w_down), hb, n, xb2, mm);
            add(x, xb2);
        }

        for t in batch {
            kv.set_len(t.seq, t.pos + 1);
        }

        // Final norm and output head, for the requested rows only.
        let rows: &[usize] = match want {
            LogitRows::None => &[],
            LogitRows::Last => &[n - 1],
            LogitRows::All => &ALL_ROWS[..n],
            LogitRows::Rows(r) => r,
        };
        let m = rows.len();
        s.n_logit_rows = m;
        if m == 0 {
            return;
        }
        grow(&mut s.out_rows, m * e);
        grow(&mut s.logits, m * hp.n_vocab);
        for (&row, out) in rows.iter().zip(s.out_rows.chunks_exact_mut(e)) {
            rmsnorm(out, &s.x[row * e..(row + 1) * e], &w.output_norm, hp.rms_eps);
        }
        matmul(&self.matrix(&w.output), &s.out_rows[..m * e], m, &mut s.logits[..m * hp.n_vocab], &mut s.mm);
    }

    /// Everything that could make a batch fail, checked before anything is
    /// changed.
    fn check_batch(
        &self,
        batch: &[BatchToken],
        kv: &KvCache,
        s: &Scratch,
        want: LogitRows<'_>,
    ) -> Result<(), ForwardError> {
        let n = batch.len();
        if n == 0 {
            return Err(ForwardError::EmptyBatch);
        }
        if n > s.max_batch || n > ALL_ROWS.len() {
            return Err(ForwardError::BatchTooLarge { got: n, max: s.max_batch.min(ALL_ROWS.len()) });
        }
        let l = kv.layout;
        if l.n_layer != self.hp.n_layer
            || l.kv_dim != self.hp.kv_dim()
            || s.n_ctx < l.n_ctx
            || s.n_vocab != self.hp.n_vocab
            || s.x.len() < s.max_batch * self.hp.n_embd
            || s.hb.len() < s.max_batch * self.hp.n_ff
        {
            return Err(ForwardError::Mismatch);
        }
        for (i, t) in batch.iter().enumerate() {
            if t.token as usize >= self.hp.n_vocab {
                return Err(ForwardError::BadToken { token: t.token, n_vocab: self.hp.n_vocab });
            }
            if t.seq >= kv.n_seq() {
                return Err(ForwardError::BadSeq { seq: t.seq, n_seq: kv.n_seq() });
            }
            if t.pos >= l.n_ctx {
                return Err(ForwardError::ContextFull { seq: t.seq, pos: t.pos, n_ctx: l.n_ctx });
            }
            // Positions of a sequence must continue its cache without gaps:
            // directly after its previous token in the batch, or at most at
            // the cached length (re-evaluating from an earlier position is
            // allowed).
            let ok = match batch[..i].iter().rev().find(|p| p.seq == t.seq) {
                Some(prev) => t.pos == prev.pos + 1,
                None => t.pos <= kv.seq_len(t.seq),
            };
            if !ok {
                let expected =
                    batch[..i].iter().rev().find(|p| p.seq == t.seq).map_or(kv.seq_len(t.seq), |p| p.pos + 1);
                return Err(ForwardError::PositionGap { seq: t.seq, pos: t.pos, expected });
            }
        }
        if let LogitRows::Rows(rows) = want {
            if let Some(&row) = rows.iter().find(|&&r| r >= n) {
                return Err(ForwardError::BadRow { row, n });
            }
        }
        Ok(())
    }
}

/// Row indices `0..MAX_BATCH`, so `LogitRows::All` needs no allocation.
static ALL_ROWS: [usize; MAX_BATCH] = {
    let mut rows = [0; MAX_BATCH];
    let mut i = 0;
    while i < MAX_BATCH {
        rows[i] = i;
        i += 1;
    }
    rows
};

/// Grow a buffer once to the largest size asked for.
fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// `out = x / rms(x) * weight`, the sum of squares in f64 as ggml does.
fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    // Eight running sums, so the loop vectorizes (one sum cannot be
    // reordered); the order changes the f64 sum by far less than f32's
    // rounding of the scale.
    let mut acc = [0.0f64; 8];
    let (chunks, tail) = x.as_chunks::<8>();
    for c in chunks {
        for i in 0..8 {
            acc[i] += (c[i] as f64) * (c[i] as f64);
        }
    }
    let ss: f64 = acc.iter().sum::<f64>() + tail.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
    let scale = 1.0 / ((ss / x.len() as f64) as f32 + eps).sqrt();
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(weight) {
        *o = xi * scale * wi;
    }
}

fn rmsnorm_rows(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    let e = weight.len();
    out.par_chunks_mut(e).zip(x.par_chunks(e)).for_each(|(o, xr)| rmsnorm(o, xr, weight, eps));
}

/// Rotate adjacent pairs `(x[2i], x[2i+1])` of the first `rope_dim` values
/// of every head by the row's angles (llama.cpp's "normal" rope mode; the
/// converters permute Q/K rows so that this matches Hugging Face's layout).
fn rope_rows(x: &mut [f32], rope: &[f32], head_dim: usize, rope_dim: usize) {
    let width = x.len() / (rope.len() / rope_dim);
    x.par_chunks_mut(width).zip(rope.par_chunks(rope_dim)).for_each(|(row, cs)| {
        for head in row.chunks_exact_mut(head_dim) {
            for (pair, c) in head[..rope_dim].chunks_exact_mut(2).zip(cs.chunks_exact(2)) {
                let (cos, sin) = (c[0], c[1]);
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * cos - x1 * sin;
                pair[1] = x0 * sin + x1 * cos;
            }
        }
    });
}

/// `x += y`, row by row across threads.
fn add(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096).zip(y.par_chunks(4096)).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(a, b)| *a += b));
}

/// `gate = silu(gate) * up`.
fn swiglu(gate: &mut [f32], up: &[f32]) {
    let isa = simd::isa();
    gate.par_chunks_mut(4096).zip(up.par_chunks(4096)).for_each(|(g, u)| exp::swiglu(isa, g, u));
}

/// How many tokens from the start of `batch` are one sequence at
/// consecutive positions (at least one).
fn run_len(batch: &[BatchToken]) -> usize {
    let t = &batch[0];
    batch.iter().enumerate().take_while(|(j, u)| u.seq == t.seq && u.pos == t.pos + j).count()
}

/// Store the batch's K and V rows for layer `l`, then compute each (token,
/// head)'s attention output into `att_out`. Each worker writes one
/// contiguous slice of `att_out` and uses its own slice of `scores`.
#[allow(clippy::too_many_arguments)]
fn attention<T: KvElem>(
    hp: &HParams,
    layout: KvLayout,
    store: &mut KvStore<T>,
    l: usize,
    batch: &[BatchToken],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    att_out: &mut [f32],
    scores: &mut [f32],
) {
    let kvd = layout.kv_dim;
    // A run of one sequence's consecutive positions is one contiguous span
    // of the cache, stored across threads.
    let mut i0 = 0;
    while i0 < batch.len() {
        let (t, m) = (&batch[i0], run_len(&batch[i0..]));
        let at = layout.offset(t.seq, l, t.pos);
        for (cache, new) in [(&mut store.k, k), (&mut store.v, v)] {
            let (dst, src) = (&mut cache[at..at + m * kvd], &new[i0 * kvd..(i0 + m) * kvd]);
            dst.par_chunks_mut(kvd).zip(src.par_chunks(kvd)).for_each(|(d, s)| T::from_f32_slice(d, s));
        }
        i0 += m;
    }

    let (hd, n_head, n_gqa) = (hp.head_dim(), hp.n_head, hp.n_gqa());
    let scale = 1.0 / (hd as f32).sqrt();
    let (kc, vc) = (&store.k[..], &store.v[..]);
    let isa = simd::isa();
    let n = batch.len();
    let e = n_head * hd;
    if n >= 2 * attn::TILE {
        // Prompt batches: tiles of `attn::TILE` tokens, so that the tokens
        // of a sequence share each key and value row they read.
        let tiles = n.div_ceil(attn::TILE);
        let per_worker = tiles.div_ceil(ATT_WORKERS.min(tiles));
        att_out[..n * e]
            .par_chunks_mut(per_worker * attn::TILE * e)
            .zip(scores.par_chunks_mut(attn::TILE * layout.n_ctx))
            .enumerate()
            .for_each(|(w, (out, scores))| {
                for (i, out) in out.chunks_mut(attn::TILE * e).enumerate() {
                    let t0 = (w * per_worker + i) * attn::TILE;
                    let tile = &batch[t0..t0 + out.len() / e];
                    // Runs of one sequence at consecutive positions attend
                    // to the same keys, each up to its own position.
                    let mut r0 = 0;
                    while r0 < tile.len() {
                        let r1 = r0 + run_len(&tile[r0..]);
                        let run = &tile[r0..r1];
                        let (m, n_keys) = (run.len(), run[run.len() - 1].pos + 1);
                        let rows = |count, len, stride| attn::Rows { count, len, stride };
                        let (qr, kr, sr) = (rows(m, hd, e), rows(n_keys, hd, kvd), rows(m, n_keys, n_keys));
                        for h in 0..n_head {
                            let base = layout.offset(run[0].seq, l, 0) + (h / n_gqa) * hd;
                            let qh = &q[(t0 + r0) * e + h * hd..];
                            attn::dot_tile(isa, qh, qr, &kc[base..], kr, scale, scores, sr);
                            for (row, t) in scores.chunks_exact_mut(n_keys).zip(run) {
                                exp::softmax(isa, &mut row[..=t.pos]);
                                row[t.pos + 1..].fill(0.0);
                            }
                            attn::axpy_tile(isa, scores, sr, &vc[base..], kr, &mut out[r0 * e + h * hd..], qr);
                        }
                        r0 = r1;
                    }
                }
            });
        return;
    }
    // Generation: one work item per (token, head), in row order, so each
    // worker writes one contiguous slice of `att_out`.
    let items = n * n_head;
    let per_worker = items.div_ceil(ATT_WORKERS.min(items));
    att_out[..items * hd]
        .par_chunks_mut(per_worker * hd)
        .zip(scores.par_chunks_mut(layout.n_ctx))
        .enumerate()
        .for_each(|(w, (out, scores))| {
            for (j, out) in out.chunks_exact_mut(hd).enumerate() {
                let item = w * per_worker + j;
                let (t, h) = (&batch[item / n_head], item % n_head);
                let qh = &q[item * hd..(item + 1) * hd];
                // Rows of this sequence and layer, at this KV head.
                let base = layout.offset(t.seq, l, 0) + (h / n_gqa) * hd;
                let scores = &mut scores[..=t.pos];
                for (p, sc) in scores.iter_mut().enumerate() {
                    *sc = attn::dot(isa, qh, &kc[base + p * kvd..][..hd]) * scale;
                }
                exp::softmax(isa, scores);
                out.fill(0.0);
                for (p, &a) in scores.iter().enumerate() {
                    attn::axpy(isa, a, &vc[base + p * kvd..][..hd], out);
                }
            }
        });
}
