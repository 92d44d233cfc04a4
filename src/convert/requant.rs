//! `qllama quantize`: requantize an F32/F16/BF16 GGUF (ours or llama.cpp's).
//! Metadata is copied (with `general.file_type` updated); 2-D weights are
//! requantized with the same per-tensor policy as `convert` (llama.cpp's, see
//! [`super::policy`]); norms and other 1-D tensors are copied as they are.

use super::policy::{allows_quantization, tensor_type, ModelInfo};
use super::{check_output, progress_bar, stream_rows, OutType, Summary, QUANTIZATION_VERSION};
use crate::gguf::{GgufFile, GgufValue, GgufWriter, TensorPlan};
use anyhow::{bail, Context, Result};
use qllama_kernels::GgmlDType;
use std::path::Path;

pub fn requantize(input: &Path, out: &Path, out_type: OutType, force: bool, progress: bool) -> Result<Summary> {
    check_output(out, &[input.to_path_buf()], force)?;
    let src = GgufFile::open(input)?;
    let model = model_info(&src).with_context(|| format!("{}: reading the model's shape", input.display()))?;

    let mut writer = GgufWriter::new();
    for (k, v) in src.metadata() {
        writer.set(k, v.clone());
    }
    writer.set("general.file_type", GgufValue::U32(out_type.file_type()));
    writer.set("general.quantization_version", GgufValue::U32(QUANTIZATION_VERSION));

    let mut params = 0u64;
    for t in src.tensors() {
        if t.dims.contains(&0) {
            bail!("{}: tensor {} has an empty dimension {:?}", input.display(), t.name, t.dims);
        }
        params += t.n_elements();
        let dtype = if !allows_quantization(&t.name, t.dims.len()) {
            t.dtype
        } else if matches!(t.dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            tensor_type(out_type, &model, &t.name, t.dims[0] as usize)
        } else {
            bail!(
                "{}: tensor {} is already {}; quantize needs an F32, F16 or BF16 file",
                input.display(),
                t.name,
                t.dtype
            );
        };
        writer.add_tensor(TensorPlan { name: t.name.clone(), dims: t.dims.clone(), dtype });
    }

    let total: u64 = writer.tensors().iter().map(super::plan_bytes).sum();
    let bar = progress_bar(progress, total);
    let n = src.tensors().len();
    writer.write(out, force, |i, plan, sink| {
        let info = &src.tensors()[i];
        bar.set_message(format!("{}/{n} {}", i + 1, plan.name));
        let view = src.tensor(&info.name).map_err(std::io::Error::other)?;
        if plan.dtype == info.dtype {
            sink.write_all(view.data)?;
            bar.inc(view.data.len() as u64);
            return Ok(());
        }
        let cols = info.dims[0] as usize;
        let rows = (info.n_elements() / info.dims[0].max(1)) as usize;
        let row_in = info.dtype.row_bytes(cols).expect("float types have 1-element blocks");
        stream_rows(plan.dtype, rows, cols, sink, &bar, |r, dst| {
            info.dtype.dequantize_row(&view.data[r * row_in..(r + 1) * row_in], dst)
        })
    })?;
    bar.finish_and_clear();
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(total);
    Ok(Summary { tensors: n, params, bytes })
}

/// What the type policy needs, from the file's `{arch}.*` keys. Without
/// `block_count` the layers are counted from the `blk.N.` tensor names.
fn model_info(src: &GgufFile) -> Result<ModelInfo> {
    let arch = src.get_str("general.architecture")?.unwrap_or("llama");
    let key = |k: &str| format!("{arch}.{k}");
    let from_names = || {
        let layer = |n: &str| n.strip_prefix("blk.")?.split_once('.')?.0.parse::<usize>().ok();
        src.tensors().iter().filter_map(|t| layer(&t.name)).max().map_or(0, |m| m + 1)
    };
    let n_layer = match src.get_u32(&key("block_count"))? {
        Some(n) => n as usize,
        None => from_names(),
    };
    let n_head = src.get_u32(&key("attention.head_count"))?.unwrap_or(0) as usize;
    let n_head_kv = src.get_u32(&key("attention.head_count_kv"))?.map_or(n_head, |n| n as usize);
    let tied_output = src.tensor_info("output.weight").is_none();
    Ok(ModelInfo { n_layer, n_head, n_head_kv, tied_output })
}
