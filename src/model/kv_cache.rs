//! The KV cache: for each sequence slot and layer, the K and V rows of every
//! position so far, F16 (default, as llama.cpp) or F32.

use super::HParams;
use half::f16;
use qllama_kernels::simd::attn::AttnKernels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F16,
    F32,
}

impl KvType {
    pub fn bytes(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

/// An element type the cache can store; attention's two loops over cached
/// rows (`q · k` and `out += a · v`) are the kernels crate's.
pub trait KvElem: AttnKernels + Default {
    /// `dst[i] = src[i]` rounded to `Self` (to nearest, ties to even).
    fn from_f32_slice(dst: &mut [Self], src: &[f32]);
}

impl KvElem for f32 {
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        dst.copy_from_slice(src)
    }
}

impl KvElem for f16 {
    /// In vector code where the CPU has it (F16C; `half` detects it).
    fn from_f32_slice(dst: &mut [Self], src: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src)
    }
}

/// K and V storage of one element type, laid out `[seq][layer][pos][kv_dim]`.
pub struct KvStore<T> {
    pub k: Vec<T>,
    pub v: Vec<T>,
}

pub enum KvData {
    F16(KvStore<f16>),
    F32(KvStore<f32>),
}

pub struct KvCache {
    pub(crate) data: KvData,
    pub(crate) layout: KvLayout,
    n_seq: usize,
    /// Positions filled so far, per sequence.
    len: Vec<usize>,
}

/// Where (seq, layer, pos) lives in a store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KvLayout {
    pub n_layer: usize,
    pub n_ctx: usize,
    pub kv_dim: usize,
}

impl KvLayout {
    /// Element offset of the K (or V) row of (seq, layer, pos); the rows of
    /// later positions follow at `kv_dim` strides.
    pub fn offset(&self, seq: usize, layer: usize, pos: usize) -> usize {
        ((seq * self.n_layer + layer) * self.n_ctx + pos) * self.kv_dim
    }
}

/// Bytes a cache of `n_seq` sequences of `n_ctx` positions takes, or `None`
/// on overflow.
pub fn kv_cache_bytes(hp: &HParams, n_ctx: usize, n_seq: usize, kv_type: KvType) -> Option<u64> {
    let elems = (hp.n_layer as u64)
        .checked_mul(hp.kv_dim() as u64)?
        .checked_mul(n_ctx as u64)?
        .checked_mul(n_seq as u64)?
        .checked_mul(2)?;
    elems.checked_mul(kv_type.bytes() as u64)
}

impl KvCache {
    /// A cache for `n_seq` sequences of up to `n_ctx` positions each. The
    /// caller checks the size first ([`kv_cache_bytes`], memory estimate).
    pub fn new(hp: &HParams, n_ctx: usize, n_seq: usize, kv_type: KvType) -> anyhow::Result<Self> {
        anyhow::ensure!(n_ctx > 0, "context size must be at least 1");
        anyhow::ensure!(n_seq > 0, "need at least one sequence slot");
        kv_cache_bytes(hp, n_ctx, n_seq, kv_type)
            .filter(|&b| usize::try_from(b).is_ok())
            .ok_or_else(|| anyhow::anyhow!("KV cache for context {n_ctx} × {n_seq} sequences is too large"))?;
        let n = n_seq * hp.n_layer * n_ctx * hp.kv_dim();
        fn store<T: KvElem>(n: usize) -> KvStore<T> {
            KvStore { k: vec![T::default(); n], v: vec![T::default(); n] }
        }
        let data = match kv_type {
            KvType::F16 => KvData::F16(store(n)),
            KvType::F32 => KvData::F32(store(n)),
        };
        let layout = KvLayout { n_layer: hp.n_layer, n_ctx, kv_dim: hp.kv_dim() };
        Ok(Self { data, layout, n_seq, len: vec![0; n_seq] })
    }

    pub fn kv_type(&self) -> KvType {
        match self.data {
            KvData::F16(_) => KvType::F16,
            KvData::F32(_) => KvType::F32,
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.layout.n_ctx
    }

    pub fn n_seq(&self) -> usize {
        self.n_seq
    }

    /// Positions of `seq` filled so far (the next position to evaluate).
    pub fn seq_len(&self, seq: usize) -> usize {
        self.len[seq]
    }

    /// Forget everything after the first `len` positions of `seq` (e.g. to
    /// re-evaluate from there). Growing is not allowed.
    pub fn truncate(&mut self, seq: usize, len: usize) {
        self.len[seq] = self.len[seq].min(len);
    }

    /// Forget all of `seq`.
    pub fn clear(&mut self, seq: usize) {
        self.len[seq] = 0;
    }

    pub fn bytes(&self) -> u64 {
        let l = self.layout;
        (self.n_seq * l.n_layer * l.n_ctx * l.kv_dim * 2 * self.kv_type().bytes()) as u64
    }

    pub(crate) fn set_len(&mut self, seq: usize, len: usize) {
        self.len[seq] = len;
    }
}
