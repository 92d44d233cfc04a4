#!/usr/bin/env python3
"""Build the tiny random Llama checkpoints and reference logits for tests/parity.rs.

Each case under tests/fixtures/parity/<case>/ is a Hugging Face checkpoint
(config.json, model.safetensors in float32, a SentencePiece tokenizer trained
to the case's vocabulary size so the converter has a tokenizer) plus
expected.safetensors: for each prompt length n in 1, 7, 64, `tokens_n` (random
ids, i64) and `logits_n` (transformers' float32 logits at every position,
[n, vocab]).

Weights are drawn wider than transformers' default init (std 0.02 gives
near-zero logits that would make a 1e-3 tolerance meaningless) and the norm
weights are perturbed around 1 so that a missing norm multiply shows up.

Usage: python3 tools/gen_parity_fixtures.py  (needs torch, transformers,
sentencepiece, safetensors; run from the repository root)
"""
import json
import os
import shutil
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "parity")
CORPUS = os.path.join(ROOT, "..", "shared", "data", "eval.txt")
PROMPT_LENGTHS = (1, 7, 64)

CASES = {
    # Multi-head attention, untied output head, odd vocabulary.
    "mha": dict(hidden=64, heads=4, kv_heads=4, ffn=160, layers=2, vocab=1001, theta=10000.0,
                tied=False, scaling=None, eps=1e-5),
    # Grouped-query attention 4:1, rope theta 500000, tied embeddings.
    "gqa": dict(hidden=128, heads=8, kv_heads=2, ffn=128, layers=2, vocab=401, theta=500000.0,
                tied=True, scaling=None, eps=1e-6),
    # Multi-query attention, three layers, linear rope scaling.
    "mqa": dict(hidden=64, heads=4, kv_heads=1, ffn=128, layers=3, vocab=1001, theta=10000.0,
                tied=False, scaling={"type": "linear", "factor": 2.0}, eps=1e-5),
}


def train_tokenizer(vocab, out_dir):
    """A SentencePiece BPE model with byte fallback and exactly `vocab` pieces."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "sp")
        spm.SentencePieceTrainer.train(
            input=CORPUS, model_prefix=prefix, vocab_size=vocab, model_type="bpe",
            byte_fallback=True, character_coverage=1.0, split_digits=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            input_sentence_size=20000, shuffle_input_sentence=False, minloglevel=2)
        shutil.copy(prefix + ".model", os.path.join(out_dir, "tokenizer.model"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))
    assert sp.get_piece_size() == vocab
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}, f, indent=1)


def build_case(name, c, seed):
    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    torch.manual_seed(seed)
    rope = {"rope_theta": c["theta"]}
    config = LlamaConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["ffn"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
        num_key_value_heads=c["kv_heads"], max_position_embeddings=128, rms_norm_eps=c["eps"],
        rope_theta=c["theta"], rope_scaling=c["scaling"], tie_word_embeddings=c["tied"],
        bos_token_id=1, eos_token_id=2, initializer_range=0.02)
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "embed_tokens" in pname or "lm_head" in pname:
                p.normal_(0.0, 0.5)
            else:
                p.normal_(0.0, 1.0 / np.sqrt(p.shape[1]))
    model.save_pretrained(out_dir, safe_serialization=True)
    train_tokenizer(c["vocab"], out_dir)

    gen = torch.Generator().manual_seed(seed + 1)
    expected = {}
    for n in PROMPT_LENGTHS:
        tokens = torch.randint(0, c["vocab"], (n,), generator=gen)
        with torch.no_grad():
            logits = model(tokens[None, :]).logits[0].float()
        expected[f"tokens_{n}"] = tokens.to(torch.int64).contiguous()
        expected[f"logits_{n}"] = logits.contiguous()
        print(f"{name}: n={n} logit std {logits.std():.3f} max {logits.abs().max():.3f}")
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
    print(name, sizes)


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, c) in enumerate(CASES.items()):
        build_case(name, c, seed=1000 + 17 * i)


if __name__ == "__main__":
    main()
