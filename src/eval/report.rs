//! `qllama report`: convert a checkpoint to every supported type and measure
//! each one's accuracy (perplexity, KL divergence and top-1 agreement against
//! the full-precision file) next to its size and speed; write the table as
//! Markdown and the trade-off as an SVG plot, both generated from the
//! measurements.

use super::bench::{bench, BenchRow};
use super::kl::KlSummary;
use super::perplexity::{evaluate_text, PerplexityOptions};
use crate::convert::{convert, ConvertOptions, OutType};
use crate::model::{KvType, Model};
use crate::tokenizer::Tokenizer;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub struct ReportOptions {
    pub hf_dir: PathBuf,
    pub text: PathBuf,
    pub out_dir: PathBuf,
    pub types: Vec<OutType>,
    pub n_ctx: usize,
    /// Chunks of the text to evaluate (0 = all).
    pub chunks: usize,
    pub bench_prompt: usize,
    pub bench_gen: usize,
    pub bench_reps: usize,
    pub threads: usize,
}

/// One type's measurements.
pub struct ReportRow {
    pub name: &'static str,
    pub file: PathBuf,
    pub bytes: u64,
    pub params: u64,
    pub ppl: f64,
    pub ppl_err: f64,
    /// Against the reference file; `None` for the reference itself.
    pub kl: Option<KlSummary>,
    pub speed: Vec<BenchRow>,
}

impl ReportRow {
    pub fn bits_per_weight(&self) -> f64 {
        8.0 * self.bytes as f64 / self.params.max(1) as f64
    }
    fn speed(&self, prefix: &str) -> Option<&BenchRow> {
        self.speed.iter().find(|r| r.test.starts_with(prefix))
    }
}

/// The reference type first (F16 when asked for, else F32, else the first).
fn reference_first(types: &[OutType]) -> Vec<OutType> {
    let base = [OutType::F16, OutType::F32].into_iter().find(|t| types.contains(t)).unwrap_or(types[0]);
    // The rest from most to fewest bits, as OutType::ALL lists them.
    let rest = OutType::ALL.into_iter().filter(|&t| t != base && types.contains(&t));
    std::iter::once(base).chain(rest).collect()
}

pub fn run_report(opts: &ReportOptions) -> anyhow::Result<Vec<ReportRow>> {
    anyhow::ensure!(!opts.types.is_empty(), "no types to report on");
    let models = opts.out_dir.join("models");
    std::fs::create_dir_all(&models)?;
    let text = std::fs::read(&opts.text).map_err(|e| anyhow::anyhow!("{}: {e}", opts.text.display()))?;
    let text = String::from_utf8(text).map_err(|_| anyhow::anyhow!("{}: not valid UTF-8", opts.text.display()))?;
    let base_logits = opts.out_dir.join("reference.logits");
    let stem = opts.hf_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads).build()?;

    let mut rows = Vec::new();
    for (i, t) in reference_first(&opts.types).into_iter().enumerate() {
        let file = models.join(format!("{stem}-{}.gguf", t.name()));
        eprintln!("== {} ==", t.name());
        let summary = pool.install(|| {
            convert(&ConvertOptions {
                dir: opts.hf_dir.clone(),
                out: file.clone(),
                out_type: t,
                force: true,
                progress: false,
            })
        })?;
        let model = Model::open(&file)?;
        let tok = Tokenizer::from_gguf(&model.file)?;
        let tokens = tok.encode(&text, tok.add_bos())?;
        let popts = PerplexityOptions {
            n_ctx: opts.n_ctx,
            n_batch: opts.n_ctx.min(512),
            max_chunks: opts.chunks,
            kv_type: KvType::F16,
        };
        let (save, base) =
            if i == 0 { (Some(base_logits.as_path()), None) } else { (None, Some(base_logits.as_path())) };
        let ev =
            pool.install(|| evaluate_text(&model, tok.bos_id(), tok.add_bos(), &tokens, &popts, save, base, true))?;
        let speed = bench(&model, opts.bench_prompt, opts.bench_gen, opts.bench_reps, opts.threads, opts.threads)?;
        eprintln!(
            "{}: {:.2} bits/weight, PPL {:.4}{}",
            t.name(),
            8.0 * summary.bytes as f64 / summary.params as f64,
            ev.result.ppl(),
            ev.kl.map(|k| format!(", KLD {:.6}, top-1 {:.2}%", k.mean_kl, 100.0 * k.top1)).unwrap_or_default()
        );
        rows.push(ReportRow {
            name: t.name(),
            file,
            bytes: summary.bytes,
            params: summary.params,
            ppl: ev.result.ppl(),
            ppl_err: ev.result.ppl_err(),
            kl: ev.kl,
            speed,
        });
    }
    Ok(rows)
}

/// The Markdown table.
pub fn markdown(rows: &[ReportRow], opts: &ReportOptions, command: &str) -> String {
    let mut s = String::new();
    let base = rows.first().map(|r| r.name).unwrap_or("-");
    let _ = writeln!(s, "Measured by `{command}` on {} ({} threads, SIMD {}); perplexity at context {} by llama.cpp's method; KL divergence, Δppl and top-1 agreement against the {base} file.\n",
        opts.text.display(), opts.threads, qllama_kernels::simd::isa().name(), opts.n_ctx);
    let pp = rows.first().and_then(|r| r.speed("pp")).map(|r| r.test.clone()).unwrap_or_else(|| "pp".into());
    let tg = rows.first().and_then(|r| r.speed("tg")).map(|r| r.test.clone()).unwrap_or_else(|| "tg".into());
    let _ = writeln!(
        s,
        "| type | size MiB | bits/weight | PPL | Δppl | mean KLD | 99% KLD | top-1 agree | {pp} t/s | {tg} t/s |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let kl = |f: &dyn Fn(&KlSummary) -> String| r.kl.as_ref().map(f).unwrap_or_else(|| "(reference)".into());
        let speed = |p: &str| r.speed(p).map(|b| format!("{:.1} ± {:.1}", b.mean, b.sd)).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.4} ± {:.4} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.bytes as f64 / (1 << 20) as f64,
            r.bits_per_weight(),
            r.ppl,
            r.ppl_err,
            kl(&|k| format!("{:+.4} ± {:.4}", k.delta_ppl, k.delta_ppl_err)),
            kl(&|k| format!("{:.6}", k.mean_kl)),
            kl(&|k| format!("{:.5}", k.p99_kl)),
            kl(&|k| format!("{:.2}%", 100.0 * k.top1)),
            speed("pp"),
            speed("tg"),
        );
    }
    s
}

/// A two-panel scatter plot: mean KL divergence (log scale) against bits per
/// weight, and against generation speed; one labelled point per type.
pub fn svg(rows: &[ReportRow]) -> String {
    const W: f64 = 460.0;
    const H: f64 = 360.0;
    const M: f64 = 60.0;
    let floor = 1e-6;
    // (name, bits/weight, tg t/s, mean KL clamped to the plot's floor, is the reference)
    let pts: Vec<(&str, f64, f64, f64, bool)> = rows
        .iter()
        .map(|r| {
            let kl = r.kl.map(|k| k.mean_kl.max(floor)).unwrap_or(floor);
            (r.name, r.bits_per_weight(), r.speed("tg").map(|b| b.mean).unwrap_or(0.0), kl, r.kl.is_none())
        })
        .collect();
    let (lo, hi) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.3.log10()), hi.max(p.3.log10())));
    let (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
    let y = |kl: f64| H - M - (kl.log10() - lo) / (hi - lo) * (H - 2.0 * M);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{H}" font-family="sans-serif" font-size="12">"#,
        2.0 * W
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (panel, (xlabel, xs)) in [
        ("bits per weight (size)", pts.iter().map(|p| p.1).collect::<Vec<_>>()),
        ("generation tokens/s", pts.iter().map(|p| p.2).collect()),
    ]
    .into_iter()
    .enumerate()
    {
        let ox = panel as f64 * W;
        let (xmin, xmax) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let pad = ((xmax - xmin) * 0.1).max(0.5);
        let (xmin, xmax) = (xmin - pad, xmax + pad);
        let x = |v: f64| ox + M + (v - xmin) / (xmax - xmin) * (W - 2.0 * M);
        let _ =
            writeln!(s, r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, ox + M, H - M, ox + W - M, H - M);
        let _ = writeln!(s, r#"<line x1="{}" y1="{M}" x2="{}" y2="{}" stroke="black"/>"#, ox + M, ox + M, H - M);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{xlabel}</text>"#, ox + W / 2.0, H - 15.0);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">mean KL divergence (log)</text>"#,
            ox + 15.0,
            H / 2.0,
            ox + 15.0,
            H / 2.0
        );
        for e in lo as i32..=hi as i32 {
            let yy = y(10f64.powi(e));
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" font-size="10">1e{e}</text>"##,
                ox + M,
                ox + W - M,
                ox + M - 4.0,
                yy + 4.0
            );
        }
        for i in 0..5 {
            let v = xmin + (xmax - xmin) * i as f64 / 4.0;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="10">{v:.1}</text>"#,
                x(v),
                H - M + 14.0
            );
        }
        for (p, &xv) in pts.iter().zip(&xs) {
            let (cx, cy) = (x(xv), y(p.3));
            let label = if p.4 { format!("{} (reference)", p.0) } else { p.0.to_string() };
            let _ = writeln!(
                s,
                r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="#2a6fdb"/><text x="{:.1}" y="{:.1}">{label}</text>"##,
                cx + 6.0,
                cy - 6.0
            );
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// Write `report.md` and `report.svg` into the output folder.
pub fn write_report(rows: &[ReportRow], opts: &ReportOptions, command: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let md = opts.out_dir.join("report.md");
    let svg_path = opts.out_dir.join("report.svg");
    write_atomic(&md, &markdown(rows, opts, command))?;
    write_atomic(&svg_path, &svg(rows))?;
    Ok((md, svg_path))
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
