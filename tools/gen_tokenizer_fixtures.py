#!/usr/bin/env python3
"""Reference token ids for tests/tokenizer.rs, made with the `sentencepiece`
package (the reference implementation) from Meta's Llama 2 tokenizer.model.

Writes tests/fixtures/tokenizer/sentencepiece.json:
  eval:    ids of every paragraph of ../shared/data/eval.txt (split on "\n\n"),
           encoded without BOS, as sentencepiece does;
  cases:   tricky strings (spaces, newlines, tabs, byte fallback, "<s>" text,
           accents, ...) and seeded random strings, with their ids and
           sentencepiece's decoding of those ids;
  eval_whole: the count and a checksum (see ids_checksum) of the ids of the
           whole eval.txt with BOS, as perplexity tokenizes it;
  decode:  hand-picked id sequences (BOS first, <unk>, stray byte tokens) and
           sentencepiece's decoding of them.

Usage: python3 tools/gen_tokenizer_fixtures.py [SHARED_DIR]   (default ../shared)
"""
import json
import os
import random
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared")
MODEL = os.path.join(SHARED, "models", "llama2-tokenizer", "tokenizer.model")
EVAL = os.path.join(SHARED, "data", "eval.txt")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "sentencepiece.json")

TRICKY = [
    "",
    " ",
    "  ",
    "Hello",
    " Hello",
    "  Hello",
    "Hello ",
    "Hello  ",
    "Hello world",
    "Hello  world",
    "Hello   world",
    "a\nb",
    "\n",
    "\n\n",
    "line one\nline two\n",
    "\ttab\tseparated\t",
    "\r\n",
    "emoji 😀 and 👍🏽 and 👨‍👩‍👧",
    "😀",
    "日本語のテキスト",
    "中文 你好 世界",
    "한국어",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "<s>",
    "</s>",
    "<unk>",
    "<s>Hello</s>",
    "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST]",
    "<0x41>",
    "café naïve résumé",
    "cafe\u0301",  # decomposed accent: no normalization, kept as is
    "Ångström Øre ßtraße",
    "▁",
    "▁▁ already ▁ escaped",
    "\ufffd",
    "\x00\x01\x7f",
    "\x08backspace",
    "1234567890 3.14159 -42 1e10",
    "def f(x):\n    return x * 2\n",
    "    indented four",
    "trailing spaces    ",
    "Mixed CASE and numbers 2024!?",
    "don't can't won't it's",
    "\"quoted\" 'single' (paren) [bracket] {brace}",
    "http://example.com/path?q=1&r=2#frag",
    "~!@#$%^&*()_+-=`",
    "Привет, мир",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
] + [" " * n for n in range(1, 21)] + [
    "a" + " " * n + "b" for n in range(1, 21)
] + ["x" + " " * n for n in range(1, 21)] + [" " * n + "x" for n in range(1, 21)] + [
    "\n" + " " * n + "y" for n in range(1, 9)
]

# Random strings over a pool that mixes words, runs of spaces and characters
# that need byte fallback: a cheap stress test of merge order and tie-breaking.
POOL = (
    ["the", "The", "and", "of", "LORD", "unto", "said", "in", "ing", "er", "a", "I"]
    + [" "] * 12
    + ["  ", "   ", "\n", "\t", ".", ",", "'", "\"", "-", "0", "7"]
    + ["é", "ü", "ß", "日", "本", "😀", "🎉", "𝔘", "ж", "\u0301", "▁", "<s>"]
)


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(n)]


DECODE_IDS = [
    [1, 450, 4274],
    [450, 4274],
    [29871, 450],
    [29871, 29871, 450],
    [1, 29871, 450],
    [259, 450],
    [13, 450],
    [1, 13, 450],
    [35, 450],
    [0, 450],
    [450, 0],
    [1, 2],
    [450, 2, 450],
    [243, 162, 155, 131],  # 😀 as four byte tokens
    [243, 162, 155],  # truncated: one replacement char per byte
    [243, 450],
    [450, 162, 450],  # stray continuation byte
    [72, 243, 162, 155, 131, 73],
]


def ids_checksum(ids):
    """A polynomial hash of an id list (tests/tokenizer.rs computes the same)."""
    h = 0
    for i in ids:
        h = (h * 1000003 + i) % (2**61 - 1)
    return h


def main():
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    with open(EVAL, encoding="utf-8") as f:
        text = f.read()
    paragraphs = text.split("\n\n")
    whole = [sp.bos_id()] + sp.encode(text)
    cases = []
    for s in TRICKY + random_strings(300):
        ids = sp.encode(s)
        cases.append({"text": s, "ids": ids, "decoded": sp.decode(ids)})
    out = {
        "generator": "tools/gen_tokenizer_fixtures.py",
        "sentencepiece": spm.__version__,
        "vocab_size": sp.get_piece_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "eval_bytes": len(text.encode("utf-8")),
        "eval": [sp.encode(p) for p in paragraphs],
        "eval_whole": {"len": len(whole), "checksum": ids_checksum(whole)},
        "cases": cases,
        "decode": [{"ids": ids, "text": sp.decode(ids)} for ids in DECODE_IDS],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    n_tok = sum(len(p) for p in out["eval"])
    print(f"wrote {OUT}: {len(paragraphs)} paragraphs, {n_tok} tokens, {len(cases)} cases")


if __name__ == "__main__":
    main()
