//! Chat sessions: template rendering, KV reuse across turns, context
//! overflow, and the piped CLI.

use qllama::chat::{ChatSession, ChatTemplate, Message, Role, StopReason, LLAMA2_TEMPLATE};
use qllama::model::{BatchToken, KvType, LogitRows, Model};
use qllama::sampling::{argmax, SamplerParams};
use qllama::tokenizer::Tokenizer;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

fn default_model() -> Model {
    Model::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-llama2-q8_0.gguf")).unwrap()
}

#[test]
fn llama2_template_renders_meta_format() {
    let t = ChatTemplate::new(None, "<s>", "</s>").unwrap();
    let msgs = [
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, " Hi "),
        Message::new(Role::Assistant, "Hello."),
        Message::new(Role::User, "Bye"),
    ];
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        // As transformers renders it: strip() applies after the system block is prepended.
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] Bye [/INST]"
    );
    // The delta of a new user turn is exactly its own text.
    assert_eq!(t.render_delta(&msgs[..3], &msgs[3]).unwrap(), "<s>[INST] Bye [/INST]");
    // Roles that do not alternate are the template's error, not a panic.
    let bad = [Message::new(Role::User, "a"), Message::new(Role::User, "b")];
    assert!(t.render(&bad, true).unwrap_err().to_string().contains("alternate"));
    // The file's own template is the same text as the fallback.
    let model = default_model();
    assert_eq!(model.file.get_str("tokenizer.chat_template").unwrap(), Some(LLAMA2_TEMPLATE));
}

/// Greedy continuation of `prompt` computed independently of the session:
/// a fresh cache, the prompt as one batch, then argmax token by token.
fn greedy(model: &Model, tok: &Tokenizer, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut kv = model.new_kv_cache(512, 1, KvType::F16).unwrap();
    let mut s = model.new_scratch(prompt.len(), 512);
    let batch: Vec<_> = prompt.iter().enumerate().map(|(pos, &token)| BatchToken { token, pos, seq: 0 }).collect();
    model.forward(&batch, &mut kv, &mut s, LogitRows::Last).unwrap();
    let mut out = Vec::new();
    for pos in prompt.len()..prompt.len() + n {
        let next = argmax(s.logits(0));
        if tok.is_eog(next) {
            break;
        }
        out.push(next);
        model.forward(&[BatchToken { token: next, pos, seq: 0 }], &mut kv, &mut s, LogitRows::Last).unwrap();
    }
    out
}

#[test]
fn each_turn_evaluates_only_its_new_tokens_and_answers_as_greedy_does() {
    let model = default_model();
    let tok = Tokenizer::from_gguf(&model.file).unwrap();
    let mut chat =
        ChatSession::new(&model, &tok, 512, KvType::F16, SamplerParams::greedy(), Some("You are wise.".into()))
            .unwrap();
    chat.max_answer = 12;
    let stop = AtomicBool::new(false);
    let template = ChatTemplate::new(None, "<s>", "</s>").unwrap();

    let (a1, s1) = chat.respond("Who made the earth?", &stop, |_| Ok(())).unwrap();
    let prompt1 = tok
        .encode_special(
            &template
                .render(
                    &[Message::new(Role::System, "You are wise."), Message::new(Role::User, "Who made the earth?")],
                    true,
                )
                .unwrap(),
            false,
        )
        .unwrap();
    assert_eq!(s1.prompt_evaluated, prompt1.len());
    assert_eq!(s1.prompt_reused, 0);
    // The answer is the greedy continuation of the rendered prompt.
    let want = greedy(&model, &tok, &prompt1, 12);
    assert_eq!(a1, tok.decode(&want), "chat answer differs from greedy decoding");
    assert_eq!(s1.generated, want.len());

    let cached_after_1 = chat.cached_tokens().len();
    let (_, s2) = chat.respond("And the sea?", &stop, |_| Ok(())).unwrap();
    let delta = tok.encode_special("<s>[INST] And the sea? [/INST]", false).unwrap();
    // Only this turn's text (plus an end-of-turn token when the answer was cut).
    let cut = (s1.stop != StopReason::EndOfText) as usize;
    assert_eq!(s2.prompt_evaluated, delta.len() + cut, "{s2:?}");
    assert_eq!(s2.prompt_reused, cached_after_1);
    let (_, s3) = chat.respond("Thanks.", &stop, |_| Ok(())).unwrap();
    assert!(s3.prompt_reused > s2.prompt_reused);
    assert!(s3.prompt_evaluated < 16, "{s3:?}");

    chat.reset();
    let (_, s4) = chat.respond("Who made the earth?", &stop, |_| Ok(())).unwrap();
    assert_eq!(s4.prompt_evaluated, prompt1.len());
}

#[test]
fn a_full_context_drops_the_oldest_turns_and_keeps_the_system_prompt() {
    let model = default_model();
    let tok = Tokenizer::from_gguf(&model.file).unwrap();
    let n_ctx = 96;
    let mut chat =
        ChatSession::new(&model, &tok, n_ctx, KvType::F16, SamplerParams::greedy(), Some("Be kind.".into())).unwrap();
    chat.max_answer = 16;
    let stop = AtomicBool::new(false);
    let system_prefix = tok.encode_special("<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>", false).unwrap();
    let mut dropped = 0;
    for i in 0..8 {
        let (_, s) = chat.respond(&format!("Tell me about the number {i}."), &stop, |_| Ok(())).unwrap();
        dropped += s.turns_dropped;
        assert!(chat.cached_tokens().len() <= n_ctx);
        assert_eq!(&chat.cached_tokens()[..system_prefix.len()], &system_prefix[..], "system prompt kept");
    }
    assert!(dropped > 0, "eight turns cannot fit in {n_ctx} tokens without dropping");
    assert!(chat.messages().len() < 16);
}

#[test]
fn piped_chat_answers_each_line_and_reports_reuse() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qllama"))
        .args(["chat", "--temp", "0", "-n", "8", "--ctx", "256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello there\nWho are you?\n/reset\nHello there\n/exit\nnever read\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stats: Vec<&str> = err.lines().filter(|l| l.starts_with("[prompt:")).collect();
    assert_eq!(stats.len(), 3, "three answered turns: {err}");
    assert!(stats[0].contains(" 0 reused"), "{}", stats[0]);
    assert!(!stats[1].contains(" 0 reused"), "second turn reuses the cache: {}", stats[1]);
    assert!(stats[2].contains(" 0 reused"), "after /reset: {}", stats[2]);
    assert_eq!(stats[0].split(',').next(), stats[2].split(',').next(), "same first turn, same prompt count");
    assert!(err.contains("[conversation reset]"));
}
