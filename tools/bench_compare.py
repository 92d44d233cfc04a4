#!/usr/bin/env python3
"""Side-by-side speed of qllama and the reference engines on the same files.

For each file and thread count, runs `qllama bench`, llama.cpp's `llama-bench`
and ik_llama.cpp's `llama-bench` (with and without `-rtr 1`, its run-time
repacking) one after the other, in a rotating order per round, so that the
machine's drift hits every program alike. Each run measures pp (prompt
processing) and tg (generation) like llama-bench does. Prints one markdown
table of median tokens/s over the rounds, with ratios to llama.cpp and to the
best ik_llama.cpp figure, and writes the raw runs as JSON next to it.

  python3 tools/bench_compare.py -t 1,2 --rounds 2 /tmp/synth7b-q4_0.gguf /tmp/synth7b-q8_0.gguf

Binaries: target/release/qllama, ~/.cache/qllama-ref/llama.cpp/build/bin/llama-bench
(../shared/tools/build-llama-cpp.sh), ~/.cache/qllama-ref/ik_llama.cpp/build/bin/llama-bench
(../shared/tools/build-ik-llama-cpp.sh).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HOME = Path.home()
REF = HOME / ".cache/qllama-ref"


def run_qllama(binary, model, threads, p, n, reps):
    cmd = [binary, "bench", "-m", model, "-p", str(p), "-n", str(n), "-t", str(threads), "-r", str(reps), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {t["test"]: t["avg_ts"] for t in json.loads(out)["tests"]}


def run_llama_bench(binary, model, threads, p, n, reps, extra):
    cmd = [binary, "-m", model, "-p", str(p), "-n", str(n), "-t", str(threads), "-r", str(reps), "-o", "json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    for t in json.loads(out):
        name = f"pp{t['n_prompt']}" if t["n_prompt"] > 0 else f"tg{t['n_gen']}"
        res[name] = t["avg_ts"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("-t", "--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=1, help="repetitions inside each program run")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of all programs (median over rounds)")
    ap.add_argument("--qllama", default="target/release/qllama")
    ap.add_argument("--llama-bench", default=str(REF / "llama.cpp/build/bin/llama-bench"))
    ap.add_argument("--ik-bench", default=str(REF / "ik_llama.cpp/build/bin/llama-bench"))
    ap.add_argument("--only", help="comma-separated subset of: qllama,llama.cpp,ik,ik-rtr")
    ap.add_argument("--json", default="/tmp/bench_compare.json", help="raw results")
    args = ap.parse_args()

    programs = {
        "qllama": lambda m, t: run_qllama(args.qllama, m, t, args.p, args.n, args.reps),
        "llama.cpp": lambda m, t: run_llama_bench(args.llama_bench, m, t, args.p, args.n, args.reps, []),
        "ik": lambda m, t: run_llama_bench(args.ik_bench, m, t, args.p, args.n, args.reps, []),
        "ik-rtr": lambda m, t: run_llama_bench(args.ik_bench, m, t, args.p, args.n, args.reps, ["-rtr", "1"]),
    }
    if args.only:
        keep = args.only.split(",")
        programs = {k: v for k, v in programs.items() if k in keep}
    for name, path in [("llama.cpp", args.llama_bench), ("ik", args.ik_bench), ("qllama", args.qllama)]:
        if any(k.startswith(name.split(".")[0]) for k in programs) and not os.access(path, os.X_OK):
            sys.exit(f"{path}: not built")

    threads = [int(t) for t in args.threads.split(",")]
    raw = []
    names = list(programs)
    for rnd in range(args.rounds):
        for model in args.files:
            for t in threads:
                # Rotate the order each round.
                order = names[rnd % len(names):] + names[: rnd % len(names)]
                for prog in order:
                    t0 = time.time()
                    res = programs[prog](model, t)
                    raw.append({"round": rnd, "model": model, "threads": t, "program": prog, "results": res})
                    print(f"[round {rnd}] {Path(model).name} t={t} {prog}: {res} ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
                    Path(args.json).write_text(json.dumps(raw, indent=1))

    tests = [f"pp{args.p}", f"tg{args.n}"]
    print(f"| file | threads | test | {' | '.join(names)} | qllama / llama.cpp | qllama / best ik |")
    print("|---|---:|---|" + "---:|" * len(names) + "---:|---:|")
    for model in args.files:
        for t in threads:
            for test in tests:
                med = {}
                for prog in names:
                    vals = [r["results"].get(test) for r in raw if r["model"] == model and r["threads"] == t and r["program"] == prog]
                    vals = [v for v in vals if v is not None]
                    med[prog] = statistics.median(vals) if vals else None
                cells = " | ".join(f"{med[p]:.2f}" if med[p] else "–" for p in names)
                q, l = med.get("qllama"), med.get("llama.cpp")
                iks = [med[p] for p in ("ik", "ik-rtr") if med.get(p)]
                r1 = f"{q / l:.2f}×" if q and l else "–"
                r2 = f"{q / max(iks):.2f}×" if q and iks else "–"
                print(f"| {Path(model).name} | {t} | {test} | {cells} | {r1} | {r2} |")


if __name__ == "__main__":
    main()
