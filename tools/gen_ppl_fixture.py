#!/usr/bin/env python3
"""Reference perplexity for tests/perplexity.rs, computed with HF transformers.

llama.cpp's method: the whole text tokenized once with BOS; chunks of n_ctx
tokens, each evaluated from a fresh context with BOS as its first token; the
second half of each chunk scored (row j predicts token j+1, j in
[n_ctx/2, n_ctx-1)). The model is ../shared/models/tiny-llama2 in float32
(its fp16 weights upcast), the text the first part of ../shared/data/eval.txt.

Writes tests/fixtures/perplexity/reference.json.
"""
import json, math, os, sys
import torch
import sentencepiece as spm
from transformers import LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
N_CTX, N_CHUNKS = 128, 6

def main():
    sp = spm.SentencePieceProcessor(model_file=os.path.join(SHARED, "models/llama2-tokenizer/tokenizer.model"))
    text = open(os.path.join(SHARED, "data/eval.txt"), encoding="utf-8").read()
    # Enough text for the chunks; the test encodes the same prefix.
    text = text[:20000]
    toks = [sp.bos_id()] + sp.encode(text)
    assert len(toks) >= N_CTX * N_CHUNKS, len(toks)
    model = LlamaForCausalLM.from_pretrained(os.path.join(SHARED, "models/tiny-llama2"), torch_dtype=torch.float32)
    model.eval()
    first = N_CTX // 2
    nll, nll2, count, running = 0.0, 0.0, 0, []
    for c in range(N_CHUNKS):
        chunk = toks[c * N_CTX:(c + 1) * N_CTX]
        chunk[0] = sp.bos_id()
        with torch.no_grad():
            logits = model(torch.tensor([chunk])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        for j in range(first, N_CTX - 1):
            v = -logp[j, chunk[j + 1]].item()
            nll += v; nll2 += v * v; count += 1
        running.append(math.exp(nll / count))
    out = {
        "model": "../shared/models/tiny-llama2 (float32)",
        "text_chars": 20000, "n_ctx": N_CTX, "chunks": N_CHUNKS,
        "scored_tokens": count, "ppl": math.exp(nll / count), "running": running,
        "n_tokens": len(toks),
    }
    path = os.path.join(ROOT, "tests/fixtures/perplexity/reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))

if __name__ == "__main__":
    main()
