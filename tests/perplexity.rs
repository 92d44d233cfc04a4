//! Perplexity and KL divergence against independent references.
//!
//! The reference perplexity comes from HF transformers (tools/gen_ppl_fixture.py)
//! on the float32 tiny-llama2 checkpoint; we evaluate llama.cpp's own F16
//! conversion of it (the same weights), with the same chunking.

use qllama::eval::{perplexity, PerplexityOptions};
use qllama::model::{KvType, Model};
use qllama::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn reference() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perplexity/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The text the reference used: the first `text_chars` characters.
fn eval_text(chars: usize) -> String {
    let text = std::fs::read_to_string(shared().join("data/eval.txt")).unwrap();
    text.chars().take(chars).collect()
}

#[test]
fn perplexity_matches_transformers_within_0_1_percent() {
    let r = reference();
    let n_ctx = r["n_ctx"].as_u64().unwrap() as usize;
    let chunks = r["chunks"].as_u64().unwrap() as usize;
    let model = Model::open(shared().join("models/tiny-llama2-gguf/tiny-llama2-f16.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&model.file).unwrap();
    let tokens = tok.encode(&eval_text(r["text_chars"].as_u64().unwrap() as usize), true).unwrap();
    assert_eq!(tokens.len() as u64, r["n_tokens"].as_u64().unwrap(), "tokenization differs from SentencePiece");
    for n_batch in [n_ctx, 48] {
        let opts = PerplexityOptions { n_ctx, n_batch, max_chunks: chunks, kv_type: KvType::F32 };
        let res = perplexity(&model, &tokens, tok.bos_id(), true, &opts, |_, _, _, _| Ok(())).unwrap();
        assert_eq!(res.chunks, chunks);
        assert_eq!(res.scored as u64, r["scored_tokens"].as_u64().unwrap());
        for (i, (ours, theirs)) in res.running.iter().zip(r["running"].as_array().unwrap()).enumerate() {
            let theirs = theirs.as_f64().unwrap();
            let rel = (ours - theirs).abs() / theirs;
            assert!(
                rel < 1e-3,
                "chunk {i} (batch {n_batch}): ppl {ours} vs transformers {theirs} ({:.4}%)",
                rel * 100.0
            );
        }
    }
}

fn qllama(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qllama")).args(args).output().unwrap()
}

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "qllama failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn kl_divergence_of_a_model_against_itself_is_zero_and_bad_logits_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, eval_text(6000)).unwrap();
    let other = dir.path().join("other.txt");
    std::fs::write(&other, eval_text(12000).chars().skip(6000).collect::<String>()).unwrap();
    let base = dir.path().join("base.logits");
    let model = shared().join("models/tiny-llama2-gguf/tiny-llama2-q8_0.gguf");
    let (m, t, b) = (model.to_str().unwrap(), text.to_str().unwrap(), base.to_str().unwrap());
    let common = ["perplexity", "-m", m, "-c", "64", "--chunks", "4", "--json"];

    let saved = stdout_json(&qllama(&[&common[..], &["-f", t, "--save-logits", b]].concat()));
    let again = stdout_json(&qllama(&[&common[..], &["-f", t, "--kl-base", b]].concat()));
    let kl = &again["kl"];
    assert_eq!(kl["mean"].as_f64().unwrap(), 0.0, "{kl}");
    assert_eq!(kl["max"].as_f64().unwrap(), 0.0, "{kl}");
    assert_eq!(kl["top1"].as_f64().unwrap(), 1.0, "{kl}");
    assert_eq!(kl["delta_ppl"].as_f64().unwrap(), 0.0, "{kl}");
    assert_eq!(saved["ppl"], again["ppl"]);

    // A quantized model against the same base: positive divergence.
    let q4 = shared().join("models/tiny-llama2-gguf/tiny-llama2-q4_0.gguf");
    let common_q4 = ["perplexity", "-m", q4.to_str().unwrap(), "-c", "64", "--chunks", "4", "--json"];
    let q = stdout_json(&qllama(&[&common_q4[..], &["-f", t, "--kl-base", b]].concat()));
    assert!(q["kl"]["mean"].as_f64().unwrap() > 1e-4, "{}", q["kl"]);
    assert!(q["kl"]["top1"].as_f64().unwrap() < 1.0);

    // Another text: refused, naming the file.
    let out = qllama(&[&common[..], &["-f", other.to_str().unwrap(), "--kl-base", b]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("base.logits") && err.contains("different text"), "{err}");

    // Truncated: refused.
    let bytes = std::fs::read(&base).unwrap();
    let cut = dir.path().join("cut.logits");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let out = qllama(&[&common[..], &["-f", t, "--kl-base", cut.to_str().unwrap()]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cut.logits") && err.contains("truncated"), "{err}");

    // Not a logits file at all.
    let out = qllama(&[&common[..], &["-f", t, "--kl-base", t]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not a qllama logits file"), "{err}");
}

#[test]
fn report_measures_each_type_and_draws_one_point_per_type() {
    use qllama::convert::OutType;
    use qllama::eval::report::{markdown, run_report, svg, ReportOptions};
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, eval_text(8000)).unwrap();
    let opts = ReportOptions {
        hf_dir: shared().join("models/tiny-llama2"),
        text,
        out_dir: dir.path().join("out"),
        types: vec![OutType::Q4_0, OutType::Q8_0, OutType::F16],
        n_ctx: 64,
        chunks: 4,
        bench_prompt: 16,
        bench_gen: 4,
        bench_reps: 1,
        threads: 2,
    };
    let rows = run_report(&opts).unwrap();
    let names: Vec<_> = rows.iter().map(|r| r.name).collect();
    assert_eq!(names, ["f16", "q8_0", "q4_0"], "the reference comes first");
    assert!(rows[0].kl.is_none());
    let (q8, q4) = (rows[1].kl.unwrap(), rows[2].kl.unwrap());
    assert!(
        q8.mean_kl > 0.0 && q8.mean_kl < q4.mean_kl,
        "more bits, less divergence: {} vs {}",
        q8.mean_kl,
        q4.mean_kl
    );
    assert!(rows[1].bits_per_weight() > rows[2].bits_per_weight());
    for r in &rows {
        assert!(r.file.is_file());
        assert!(r.speed.iter().all(|b| b.mean > 0.0));
    }
    let md = markdown(&rows, &opts, "qllama report");
    assert_eq!(md.lines().filter(|l| l.starts_with("| q") || l.starts_with("| f")).count(), 3, "{md}");
    assert!(md.contains(&format!("{:.6}", q4.mean_kl)), "{md}");
    let plot = svg(&rows);
    assert_eq!(plot.matches("<circle").count(), 2 * rows.len(), "one point per type in each panel");
    assert!(plot.contains("q4_0") && plot.contains("f16 (reference)"));
}
