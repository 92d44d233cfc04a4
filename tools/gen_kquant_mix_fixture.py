#!/usr/bin/env python3
"""Record llama-quantize's per-tensor types for each K-quant mix, for
tests/convert_kquants.rs (fixture: tests/fixtures/kquant_mixes/types.json).

Two models: llama.cpp's own F16 conversion of tiny-llama2 (rows of 256 and
768, 4 layers, 4:1 grouped-query attention), and a random 16-layer checkpoint
(tools/synth_hf_checkpoint.py) with hidden size 288, so most rows are not whole
256-weight super-blocks and llama.cpp's fallbacks show, with tied embeddings
and no grouped-query attention. Only the type names are stored, not weights.

Needs llama.cpp built by ../shared/tools/build-llama-cpp.sh.

    tools/gen_kquant_mix_fixture.py
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf

ROOT = Path(__file__).resolve().parent.parent
LLAMA = Path.home() / ".cache/qllama-ref/llama.cpp"
QUANTIZE = LLAMA / "build/bin/llama-quantize"
CONVERT = LLAMA / "src/convert_hf_to_gguf.py"
TINY_F16 = ROOT.parent / "shared/models/tiny-llama2-gguf/tiny-llama2-f16.gguf"
OUT = ROOT / "tests/fixtures/kquant_mixes/types.json"
MIXES = ["Q8_0", "Q6_K", "Q5_1", "Q5_K_M", "Q5_0", "Q5_K_S", "Q4_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_M", "Q2_K"]


def model_record(f16: Path, tmp: Path):
    r = gguf.GGUFReader(f16)
    field = lambda k: int(r.fields[k].parts[-1][0])
    rec = {
        "source": f16.name,
        "n_layer": field("llama.block_count"),
        "n_head": field("llama.attention.head_count"),
        "n_head_kv": field("llama.attention.head_count_kv"),
        "tied_output": all(t.name != "output.weight" for t in r.tensors),
        "tensors": {t.name: {"ne": [int(d) for d in t.shape], "f16_type": t.tensor_type.name} for t in r.tensors},
        "types": {},
    }
    for mix in MIXES:
        out = tmp / f"{f16.stem}-{mix}.gguf"
        subprocess.run([str(QUANTIZE), str(f16), str(out), mix], check=True, capture_output=True)
        q = gguf.GGUFReader(out)
        rec["types"][mix] = {
            "file_type": int(q.fields["general.file_type"].parts[-1][0]),
            "tensors": {t.name: t.tensor_type.name for t in q.tensors},
        }
        out.unlink()
    return rec


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hf = tmp / "synth-h288-l16"
        subprocess.run([sys.executable, str(ROOT / "tools/synth_hf_checkpoint.py"), str(hf), "--hidden", "288",
                        "--ffn", "768", "--layers", "16", "--heads", "9", "--attn", "mha", "--tie"], check=True)
        synth_f16 = tmp / "synth-h288-l16-f16.gguf"
        subprocess.run([sys.executable, str(CONVERT), str(hf), "--outtype", "f16", "--outfile", str(synth_f16)],
                       check=True, capture_output=True)
        fixture = {
            "made_by": "tools/gen_kquant_mix_fixture.py: llama.cpp 0.3.36 llama-quantize F16 -> each quantized type",
            "models": {
                "tiny-llama2": model_record(TINY_F16, tmp),
                "synth-h288-l16": dict(model_record(synth_f16, tmp),
                                       synth_args="--hidden 288 --ffn 768 --layers 16 --heads 9 --attn mha --tie"),
            },
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
