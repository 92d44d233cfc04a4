//! `qllama bench`: prompt processing and generation speed, printed as
//! `llama-bench` prints them so the two can be compared line by line.

use super::run::{physical_cores, resolve_model};
use crate::eval::bench::bench;
use crate::model::Model;
use anyhow::bail;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (default: the model shipped in models/).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Prompt tokens for the prompt-processing test (0 = skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens for the generation test (0 = skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Generation threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Prompt-processing threads (default: as -t).
    #[arg(long = "tb")]
    pub threads_batch: Option<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also measure the machine's read bandwidth (just before and just
    /// after the tests) and the peak multiply-accumulate rate of the main
    /// weight type (8-bit dots, f32 FMAs or BF16 dots), and print
    /// the results as fractions of them.
    #[arg(long)]
    pub limits: bool,
    /// Buffer for the bandwidth test, in MiB (larger than the caches).
    #[arg(long, default_value_t = 1024, requires = "limits")]
    pub limits_mib: usize,
}

/// Read bandwidth with `threads` threads over a buffer of `mib` MiB.
fn bandwidth(threads: usize, buf: &[u8]) -> anyhow::Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    Ok(pool.install(|| qllama_kernels::limits::read_bandwidth(buf, 5)))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    let tg_threads = match args.threads {
        Some(0) => bail!("-t must be at least 1"),
        Some(t) => t,
        None => physical_cores(),
    };
    let pp_threads = args.threads_batch.unwrap_or(tg_threads).max(1);
    let path = resolve_model(args.model.as_deref())?;
    let t0 = Instant::now();
    let model = Model::open(&path)?;
    let load_s = t0.elapsed().as_secs_f64();
    // On huge pages, as the repacked weights are: fewer TLB misses, and the
    // prefetchers run across whole 2 MiB pages.
    let buf = if args.limits {
        let mut map = memmap2::MmapMut::map_anon(args.limits_mib.max(1) << 20)?;
        let _ = map.advise(memmap2::Advice::HugePage);
        map.fill(1);
        Some(map)
    } else {
        None
    };
    let buf: &[u8] = buf.as_deref().unwrap_or_default();
    let bw_before = if args.limits { Some(bandwidth(tg_threads, buf)?) } else { None };
    let rows = bench(&model, args.n_prompt, args.n_gen, args.reps, pp_threads, tg_threads)?;
    // Per token, every matrix is read once and each weight is one
    // multiply-accumulate (the embedding table is only looked up).
    let w = &model.weights;
    let mats = w.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
    let mats: Vec<_> = mats.chain([&w.output]).collect();
    // The peak that matters is that of the type holding most of the weights.
    let mut by_type: Vec<(qllama_kernels::GgmlDType, usize)> = vec![];
    for m in &mats {
        match by_type.iter_mut().find(|(t, _)| *t == m.dtype) {
            Some((_, bytes)) => *bytes += m.range.len(),
            None => by_type.push((m.dtype, m.range.len())),
        }
    }
    let main_type = by_type.iter().max_by_key(|(_, bytes)| *bytes).map(|(t, _)| *t);
    let limits = match (bw_before, main_type) {
        (Some(before), Some(main_type)) => {
            let after = bandwidth(tg_threads, buf)?;
            let pool = rayon::ThreadPoolBuilder::new().num_threads(pp_threads).build()?;
            Some((before, after, pool.install(|| qllama_kernels::limits::mac_peak(main_type))))
        }
        _ => None,
    };

    let size: u64 = model.file.tensors().iter().map(|t| t.size).sum();
    let params: u64 = model.file.tensors().iter().map(|t| t.n_elements()).sum();
    let isa = qllama_kernels::simd::isa().name();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if args.json {
        let tests: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"test": r.test, "threads": r.threads, "avg_ts": r.mean, "stddev_ts": r.sd}))
            .collect();
        let v = serde_json::json!({
            "model": path.display().to_string(), "size_bytes": size, "params": params,
            "simd": isa, "repetitions": args.reps, "load_seconds": load_s, "tests": tests,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("| model | size | params | simd | threads | test | t/s |");
        println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
        for r in &rows {
            println!(
                "| {name} | {:.2} MiB | {:.2} M | {isa} | {} | {} | {:.2} ± {:.2} |",
                size as f64 / (1024.0 * 1024.0),
                params as f64 / 1e6,
                r.threads,
                r.test,
                r.mean,
                r.sd
            );
        }
    }
    if let Some((before, after, peak)) = limits {
        let bytes: f64 = mats.iter().map(|m| m.range.len() as f64).sum();
        let macs: f64 = mats.iter().map(|m| (m.rows * m.cols) as f64).sum();
        let bw = (before + after) / 2.0;
        println!();
        println!(
            "read bandwidth ({tg_threads} threads): {:.1} GB/s before, {:.1} GB/s after",
            before / 1e9,
            after / 1e9
        );
        match peak {
            Some((p, how)) => {
                println!("multiply-accumulate peak ({pp_threads} threads): {:.0} G/s with {how}", p / 1e9)
            }
            None => println!("multiply-accumulate peak: not measured on this CPU"),
        }
        for r in &rows {
            if r.test.starts_with("tg") {
                let rate = r.mean * bytes;
                println!(
                    "{}: {:.1} GB/s of weights, {:.0}% of the mean read bandwidth",
                    r.test,
                    rate / 1e9,
                    100.0 * rate / bw
                );
            } else if let Some((p, _)) = peak {
                let rate = r.mean * macs;
                println!(
                    "{}: {:.0} G multiply-accumulates/s, {:.0}% of the peak",
                    r.test,
                    rate / 1e9,
                    100.0 * rate / p
                );
            }
        }
    }
    Ok(())
}
