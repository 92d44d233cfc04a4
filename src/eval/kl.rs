//! KL divergence of a model against a reference model's saved logits.
//!
//! The reference run (`--save-logits`) stores, for every scored token, its
//! negative log-likelihood and the top-K log-probabilities (f32) with their
//! token ids. A later run (`--kl-base`) on the same text compares its own
//! distribution with them. KL(P‖Q) is computed over the reference's top K
//! tokens plus one bucket holding the rest of the probability mass, which is
//! exact when the top K hold all the mass and a lower bound otherwise (with
//! K = 32 the rest holds well under 1% of the mass for a trained model).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const TOP_K: usize = 32;
const MAGIC: &[u8; 8] = b"QLLOGIT1";
const HEADER_BYTES: usize = 8 + 4 * 4 + 8 + 8;
const RECORD_BYTES: usize = 4 + TOP_K * 4 + TOP_K * 4;

/// What a logits file belongs to: the text's tokens and the chunking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogitsKey {
    pub n_ctx: u32,
    pub n_chunks: u32,
    pub n_vocab: u32,
    /// FNV-1a of the evaluated token ids.
    pub tokens_hash: u64,
    pub n_records: u64,
}

/// FNV-1a over token ids: identifies the tokenized text.
pub fn hash_tokens(tokens: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tokens {
        for b in t.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Log-softmax of one row, in f64.
fn log_softmax(logits: &[f32], out: &mut Vec<f64>) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let log_z = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    out.clear();
    out.extend(logits.iter().map(|&x| x as f64 - log_z));
}

/// Writes the reference logits as the reference run goes.
pub struct LogitsWriter {
    out: BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
    key: LogitsKey,
    written: u64,
    lp: Vec<f64>,
    idx: Vec<u32>,
}

impl LogitsWriter {
    pub fn create(path: &Path, key: LogitsKey) -> anyhow::Result<Self> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create a temporary file: {e}", path.display()))?;
        let mut out = BufWriter::new(tmp);
        out.write_all(MAGIC)?;
        for v in [key.n_ctx, key.n_chunks, key.n_vocab, TOP_K as u32] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&key.tokens_hash.to_le_bytes())?;
        out.write_all(&key.n_records.to_le_bytes())?;
        Ok(Self { out, path: path.to_path_buf(), key, written: 0, lp: Vec::new(), idx: Vec::new() })
    }

    /// One scored token: the reference's logits and the true next token.
    pub fn push(&mut self, logits: &[f32], target: u32) -> anyhow::Result<()> {
        log_softmax(logits, &mut self.lp);
        let lp = &self.lp;
        self.idx.clear();
        self.idx.extend(0..lp.len() as u32);
        let k = TOP_K.min(lp.len());
        self.idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
        self.idx[..k].sort_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
        self.out.write_all(&(-(lp[target as usize] as f32)).to_le_bytes())?;
        for i in 0..TOP_K {
            let id = self.idx.get(i).copied().filter(|_| i < k).unwrap_or(u32::MAX);
            self.out.write_all(&id.to_le_bytes())?;
        }
        for i in 0..TOP_K {
            let v = if i < k { lp[self.idx[i] as usize] as f32 } else { f32::NEG_INFINITY };
            self.out.write_all(&v.to_le_bytes())?;
        }
        self.written += 1;
        Ok(())
    }

    /// Check the record count and move the file into place.
    pub fn finish(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.written == self.key.n_records,
            "{}: wrote {} records, expected {}",
            self.path.display(),
            self.written,
            self.key.n_records
        );
        let tmp = self.out.into_inner().map_err(|e| anyhow::anyhow!("{}: {}", self.path.display(), e.error()))?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| anyhow::anyhow!("{}: cannot write: {}", self.path.display(), e.error))?;
        Ok(())
    }
}

/// The reference logits, read back and checked against this run.
pub struct LogitsFile {
    path: PathBuf,
    data: Vec<u8>,
    pub key: LogitsKey,
}

impl LogitsFile {
    /// Open a logits file and check it belongs to `expect` (same text, same
    /// chunking, same vocabulary) and is complete.
    pub fn open(path: &Path, expect: &LogitsKey) -> anyhow::Result<Self> {
        let err = |msg: String| anyhow::anyhow!("{}: {msg}", path.display());
        let mut f = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut head = [0u8; HEADER_BYTES];
        f.read_exact(&mut head).map_err(|_| err("too short to be a qllama logits file".into()))?;
        if &head[..8] != MAGIC {
            return Err(err("not a qllama logits file (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap());
        let key = LogitsKey {
            n_ctx: u32_at(8),
            n_chunks: u32_at(12),
            n_vocab: u32_at(16),
            tokens_hash: u64_at(24),
            n_records: u64_at(32),
        };
        if u32_at(20) as usize != TOP_K {
            return Err(err(format!("stores top-{} logits, this build reads top-{TOP_K}", u32_at(20))));
        }
        if key.tokens_hash != expect.tokens_hash {
            return Err(err("was made from a different text (token hashes differ)".into()));
        }
        if key != *expect {
            return Err(err(format!(
                "was made with context {} × {} chunks and vocabulary {}, this run has {} × {} and {}",
                key.n_ctx, key.n_chunks, key.n_vocab, expect.n_ctx, expect.n_chunks, expect.n_vocab
            )));
        }
        let want = (key.n_records as u128) * RECORD_BYTES as u128;
        let len = f.metadata()?.len() as u128 - HEADER_BYTES as u128;
        if len != want {
            return Err(err(format!("is truncated or padded: {len} bytes of records, expected {want}")));
        }
        let mut data = Vec::with_capacity(want as usize);
        f.read_to_end(&mut data)?;
        Ok(Self { path: path.to_path_buf(), data, key })
    }

    fn record(&self, i: usize) -> (f32, impl Iterator<Item = (u32, f32)> + '_) {
        let r = &self.data[i * RECORD_BYTES..(i + 1) * RECORD_BYTES];
        let nll = f32::from_le_bytes(r[..4].try_into().unwrap());
        let ids = r[4..4 + 4 * TOP_K].chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        let lps = r[4 + 4 * TOP_K..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
        (nll, ids.zip(lps).filter(|&(id, _)| id != u32::MAX))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Accumulates the comparison as the run goes.
#[derive(Default)]
pub struct KlStats {
    kls: Vec<f64>,
    /// Paired NLL differences (this model minus the reference).
    dnll: Vec<f64>,
    base_nll: f64,
    top1_same: usize,
    lp: Vec<f64>,
}

impl KlStats {
    /// Compare record `i` of `base` with this model's `logits`.
    pub fn push(&mut self, base: &LogitsFile, i: usize, logits: &[f32], target: u32) -> anyhow::Result<()> {
        anyhow::ensure!(
            (i as u64) < base.key.n_records,
            "{}: has {} records, this run needs more",
            base.path.display(),
            base.key.n_records
        );
        log_softmax(logits, &mut self.lp);
        let (base_nll, top) = base.record(i);
        let (mut kl, mut p_top, mut q_top) = (0.0f64, 0.0f64, 0.0f64);
        let mut first = None;
        for (id, lp) in top {
            let id = id as usize;
            anyhow::ensure!(id < self.lp.len(), "{}: token id {id} outside the vocabulary", base.path.display());
            first.get_or_insert(id);
            // Both sides rounded to f32 as stored, so a model compared with
            // itself gives exactly 0.
            let (lp, lq) = (lp as f64, self.lp[id] as f32 as f64);
            let p = lp.exp();
            kl += p * (lp - lq);
            p_top += p;
            q_top += lq.exp();
        }
        // The rest of the mass as one bucket.
        let (p_rest, q_rest) = ((1.0 - p_top).max(0.0), (1.0 - q_top).max(1e-30));
        if p_rest > 1e-12 {
            kl += p_rest * (p_rest.ln() - q_rest.ln());
        }
        self.kls.push(kl.max(0.0));
        let argmax = self.lp.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        self.top1_same += (first == argmax) as usize;
        let nll = -(self.lp[target as usize] as f32 as f64);
        self.dnll.push(nll - base_nll as f64);
        self.base_nll += base_nll as f64;
        Ok(())
    }

    pub fn summary(&self) -> KlSummary {
        let n = self.kls.len().max(1) as f64;
        let mean_kl = self.kls.iter().sum::<f64>() / n;
        let var_kl = self.kls.iter().map(|k| (k - mean_kl).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let mut sorted = self.kls.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = sorted.get(((sorted.len() as f64 - 1.0) * 0.99).round() as usize).copied().unwrap_or(0.0);
        let max = sorted.last().copied().unwrap_or(0.0);
        let mean_d = self.dnll.iter().sum::<f64>() / n;
        let var_d = self.dnll.iter().map(|d| (d - mean_d).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let ppl_base = (self.base_nll / n).exp();
        let ratio = mean_d.exp();
        let top1 = self.top1_same as f64 / n;
        KlSummary {
            n: self.kls.len(),
            mean_kl,
            mean_kl_err: (var_kl / n).sqrt(),
            p99_kl: p99,
            max_kl: max,
            top1,
            top1_err: (top1 * (1.0 - top1) / (n - 1.0).max(1.0)).sqrt(),
            ppl_base,
            ppl_ratio: ratio,
            // Delta method on the mean of the paired differences.
            ppl_ratio_err: ratio * (var_d / n).sqrt(),
            delta_ppl: ppl_base * (ratio - 1.0),
            delta_ppl_err: ppl_base * ratio * (var_d / n).sqrt(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct KlSummary {
    pub n: usize,
    pub mean_kl: f64,
    pub mean_kl_err: f64,
    pub p99_kl: f64,
    pub max_kl: f64,
    /// Fraction of tokens whose most likely next token is the reference's.
    pub top1: f64,
    pub top1_err: f64,
    pub ppl_base: f64,
    pub ppl_ratio: f64,
    pub ppl_ratio_err: f64,
    pub delta_ppl: f64,
    pub delta_ppl_err: f64,
}
