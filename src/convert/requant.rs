//! `qllama quantize`: requantize an F32/F16/BF16 GGUF (ours or llama.cpp's).
//! Metadata is copied (with `general.file_type` updated); 2-D weights are
//! requantized with the same type rules as `convert`; norms and other 1-D
//! tensors are copied as they are.

use super::{check_output, progress_bar, stream_rows, tensor_type, OutType, Summary, TensorKind, QUANTIZATION_VERSION};
use crate::gguf::{GgufFile, GgufValue, GgufWriter, TensorPlan};
use anyhow::{bail, Result};
use qllama_kernels::GgmlDType;
use std::path::Path;

pub fn requantize(input: &Path, out: &Path, out_type: OutType, force: bool, progress: bool) -> Result<Summary> {
    check_output(out, &[input.to_path_buf()], force)?;
    let src = GgufFile::open(input)?;
    let has_output = src.tensor_info("output.weight").is_some();

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
        let is_weight = t.dims.len() >= 2 && !t.name.ends_with("_norm.weight");
        let dtype = if !is_weight {
            t.dtype
        } else if matches!(t.dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            let kind = if t.name == "output.weight" || (t.name == "token_embd.weight" && !has_output) {
                TensorKind::Output
            } else {
                TensorKind::Other
            };
            tensor_type(out_type, kind, t.dims[0] as usize)
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
