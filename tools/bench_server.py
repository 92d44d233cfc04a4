#!/usr/bin/env python3
"""Aggregate generation speed of `qllama serve` next to llama.cpp's `llama-server`.

For each --parallel N in --parallel-list, the script starts both servers on
the same GGUF file with the same threads, N slots and the same context per
slot, then fires N concurrent streaming requests (temperature 0, ignore_eos,
max_tokens M) at each server, alternating the programs rep by rep, and
prints medians over --reps as a markdown table, with each server's memory.

Definitions (per batch of N streams):
  t0        the moment the N requests are sent (connections already open)
  first_i   arrival of stream i's first generated text
  end       arrival of the last stream's end ([DONE])
  aggregate t/s = sum of completion tokens / (end - t0)
                  (includes prompt evaluation and HTTP overhead)
  decode t/s    = tokens that arrived after max(first_i) / (end - max(first_i))
                  (only the part where all N streams decode together)
Completion tokens are taken from `usage` (stream_options.include_usage); the
decode count uses the streamed chunks (one per token in both servers),
scaled per stream to `usage` if the two differ.

Memory, read from /proc/PID/status just before each server is stopped:
  peak RSS = VmHWM (includes the mapped model file pages that were touched),
  anon     = RssAnon (heap: KV cache, buffers; no file pages).

Every request has a unique prefix ("Run R, stream I.") so neither server can
reuse a cached prompt from an earlier rep; each rep evaluates its prompts.

Standard library only. Example (the tiny default model, quick):
  cargo build --release
  python3 tools/bench_server.py --model models/tiny-llama2-q8_0.gguf --threads 2
A 7B run:
  python3 tools/bench_server.py --model /path/llama-2-7b.Q4_0.gguf --threads 2 \
      --ctx 1024 --max-tokens 64 --reps 3 --json /tmp/bench.json
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "tiny-llama2-q8_0.gguf"
DEFAULT_QLLAMA = REPO / "target" / "release" / "qllama"
DEFAULT_LLAMA = Path.home() / ".cache/qllama-ref/llama.cpp/build/bin/llama-server"

PROMPT = (
    "Once upon a time, in a small village at the edge of a great forest, there lived "
    "an old clockmaker and his curious granddaughter. Every morning they"
)
CHAT_PROMPT = "Tell me a long story about an old clockmaker and his curious granddaughter."


def physical_cores():
    """Distinct (package, core) pairs in /proc/cpuinfo; the CPU count if unreadable."""
    cores, phys = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = val.strip()
                elif key == "core id":
                    cores.add((phys, val.strip()))
    except OSError:
        pass
    return len(cores) or os.cpu_count() or 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    """VmHWM, VmRSS, RssAnon, RssFile of a process in MiB (missing keys absent)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(val.split()[0]) / 1024  # kB -> MiB
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: fields start after its ')'.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """One server process on a free port, with its log in a temporary file."""

    def __init__(self, name, argv, port, logdir):
        self.name, self.port = name, port
        self.log_path = Path(logdir) / f"{name}-{port}.log"
        self.log = open(self.log_path, "wb")
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log_tail(self, n=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode} before it was ready:\n"
                    f"  {' '.join(self.argv)}\n{self.log_tail()}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:  # llama-server answers 503 while loading
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def request_body(args, prompt_prefix, max_tokens):
    body = {
        "temperature": 0,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt_prefix + CHAT_PROMPT}]
    else:
        body["prompt"] = prompt_prefix + PROMPT
    return body


def chunk_text(choice):
    if "text" in choice:
        return choice.get("text") or ""
    return (choice.get("delta") or {}).get("content") or ""


def stream_one(port, path, body, barrier, result):
    """Send one streaming request once all threads are ready; fill `result`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.connect()
        payload = json.dumps(body).encode()
        barrier.wait()
        result["sent"] = time.perf_counter()
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            result["error"] = f"HTTP {resp.status}: {resp.read()[:300]!r}"
            return
        stamps, text, usage, finish = [], [], None, None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            now = time.perf_counter()
            msg = json.loads(data)
            if "error" in msg:
                result["error"] = str(msg["error"])[:300]
                return
            if msg.get("usage"):
                usage = msg["usage"]
            for choice in msg.get("choices") or []:
                piece = chunk_text(choice)
                if piece:
                    stamps.append(now)
                    text.append(piece)
                finish = choice.get("finish_reason") or finish
        result.update(
            end=time.perf_counter(),
            stamps=stamps,
            text="".join(text),
            finish=finish,
            tokens=(usage or {}).get("completion_tokens", len(stamps)),
            usage_seen=usage is not None,
        )
    except Exception as e:  # reported per stream; one failure must not hang the batch
        result["error"] = f"{type(e).__name__}: {e}"
        if not barrier.broken:
            barrier.abort()
    finally:
        conn.close()


def run_batch(server, args, n, prefixes, max_tokens):
    """N concurrent streams; returns the per-stream results and batch metrics."""
    path = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
    barrier = threading.Barrier(n)
    results = [{} for _ in range(n)]
    threads = [
        threading.Thread(target=stream_one, args=(server.port, path, request_body(args, prefixes[i], max_tokens), barrier, results[i]))
        for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{server.name}: {len(errors)} of {n} streams failed: {errors[0]}\n{server.log_tail()}")
    t0 = min(r["sent"] for r in results)
    end = max(r["end"] for r in results)
    if any(not r["stamps"] for r in results):
        raise RuntimeError(f"{server.name}: a stream produced no text")
    last_first = max(r["stamps"][0] for r in results)
    total = sum(r["tokens"] for r in results)
    decoded = 0.0
    for r in results:
        late = sum(1 for s in r["stamps"] if s > last_first)
        decoded += late * r["tokens"] / len(r["stamps"])
    return results, {
        "tokens": total,
        "wall_s": end - t0,
        "aggregate_tps": total / (end - t0),
        "decode_window_s": end - last_first,
        "decode_tps": decoded / (end - last_first) if end > last_first else float("nan"),
        "ttft_max_s": last_first - t0,
        "per_stream_tokens": [r["tokens"] for r in results],
        "usage_seen": all(r["usage_seen"] for r in results),
    }


def start_server(prog, args, n, port, logdir):
    ctx_total = args.ctx * n  # both programs divide their total context between the slots
    t = str(args.threads)
    if prog == "qllama":
        argv = [args.qllama, "serve", "-m", args.model, "--port", str(port), "--parallel", str(n),
                "--ctx", str(ctx_total), "-t", t, "--threads-batch", t] + args.qllama_args.split()
    else:
        argv = [args.llama_server, "-m", args.model, "--port", str(port), "-np", str(n),
                "-c", str(ctx_total), "-t", t, "-tb", t, "--no-webui"] + args.llama_args.split()
    server = Server(prog, argv, port, logdir)
    try:
        server.wait_healthy(args.start_timeout)
    except Exception:
        server.stop()
        raise
    return server


def check_greedy(server, args, n):
    """Same prompt alone and as N concurrent streams: greedy texts must match."""
    prefixes = ["Greedy check. "] * n
    alone, _ = run_batch(server, args, 1, prefixes, args.max_tokens)
    together, _ = run_batch(server, args, n, prefixes, args.max_tokens)
    ref = alone[0]["text"]
    bad = [i for i, r in enumerate(together) if r["text"] != ref]
    return {"streams": n, "mismatched": bad, "alone": ref, "differing": [together[i]["text"] for i in bad]}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, digits=1):
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="GGUF file served by both programs")
    ap.add_argument("--threads", type=int, default=physical_cores(), help="-t and -tb of both (default: physical cores)")
    ap.add_argument("--ctx", type=int, default=512, help="context per slot; each server gets --ctx × parallel in total")
    ap.add_argument("--parallel-list", default="1,2,4", help="slot counts to measure, comma-separated")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens generated per stream (ignore_eos)")
    ap.add_argument("--reps", type=int, default=3, help="timed batches per program and parallel; medians reported")
    ap.add_argument("--qllama", default=str(DEFAULT_QLLAMA), help="qllama binary")
    ap.add_argument("--llama-server", default=str(DEFAULT_LLAMA), help="llama.cpp llama-server binary")
    ap.add_argument("--only", choices=["qllama", "llama"], help="measure only one program")
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions",
                    help="/v1/completions (raw prompt, default) or /v1/chat/completions")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds of rest between batches")
    ap.add_argument("--check-greedy", action="store_true",
                    help="also check that each of N concurrent greedy streams equals the answer alone")
    ap.add_argument("--qllama-args", default="", help="extra arguments for qllama serve (one string)")
    ap.add_argument("--llama-args", default="", help="extra arguments for llama-server (one string)")
    ap.add_argument("--start-timeout", type=float, default=300, help="seconds to wait for /health")
    ap.add_argument("--json", help="also write all raw measurements to this file")
    args = ap.parse_args()

    try:
        plist = [int(x) for x in args.parallel_list.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--parallel-list must be integers separated by commas, got '{args.parallel_list}'")
    if not plist or min(plist) < 1:
        ap.error("--parallel-list needs slot counts >= 1")
    for name, val in (("--threads", args.threads), ("--ctx", args.ctx), ("--max-tokens", args.max_tokens), ("--reps", args.reps)):
        if val < 1:
            ap.error(f"{name} must be at least 1")
    if not Path(args.model).is_file():
        ap.error(f"model file not found: {args.model}")
    progs = [p for p in ("qllama", "llama") if args.only in (None, p)]
    for p in progs:
        binary = args.qllama if p == "qllama" else args.llama_server
        if not os.access(binary, os.X_OK):
            ap.error(f"{p} binary not found or not executable: {binary}"
                     + (" (run `cargo build --release`)" if p == "qllama" else ""))

    logdir = tempfile.mkdtemp(prefix="bench_server_")
    raw = {"config": {k: v for k, v in vars(args).items()}, "runs": []}
    rows = {}  # (prog, n) -> dict
    for n in plist:
        servers = {}
        try:
            for p in progs:
                servers[p] = start_server(p, args, n, free_port(), logdir)
                # Untimed warm-up: pages the weights in and starts every slot once.
                run_batch(servers[p], args, n, [f"Warm-up {i}. " for i in range(n)], min(8, args.max_tokens))
            batches = {p: [] for p in progs}
            idle_cpu = {p: 0.0 for p in progs}
            busy_wall = {p: 0.0 for p in progs}
            for rep in range(args.reps):
                # Alternate which program goes first, so drift hits both alike.
                order = progs if rep % 2 == 0 else progs[::-1]
                for p in order:
                    others = [q for q in progs if q != p]
                    before = {q: cpu_seconds(servers[q].proc.pid) for q in others}
                    prefixes = [f"Run {n}-{rep}, stream {i}. " for i in range(n)]
                    _, m = run_batch(servers[p], args, n, prefixes, args.max_tokens)
                    for q in others:  # an idle server burning CPU would skew the busy one
                        idle_cpu[q] += cpu_seconds(servers[q].proc.pid) - before[q]
                        busy_wall[q] += m["wall_s"]
                    batches[p].append(m)
                    raw["runs"].append({"program": p, "parallel": n, "rep": rep, **m})
                    short = [t for t in m["per_stream_tokens"] if t != args.max_tokens]
                    if short:
                        print(f"note: {p} -np {n} rep {rep}: streams generated {m['per_stream_tokens']} tokens, "
                              f"not {args.max_tokens} each", file=sys.stderr)
                    if not m["usage_seen"]:
                        print(f"note: {p} sent no usage; tokens counted from chunks", file=sys.stderr)
                    print(f"{p:7s} parallel {n} rep {rep}: {m['aggregate_tps']:.1f} t/s aggregate, "
                          f"{m['decode_tps']:.1f} t/s decode, {m['tokens']} tokens in {m['wall_s']:.2f}s",
                          file=sys.stderr)
                    time.sleep(args.gap)
            for q in progs:
                if busy_wall[q] > 0 and idle_cpu[q] / busy_wall[q] > 0.05:
                    print(f"warning: {q} used {idle_cpu[q]:.2f}s CPU while idle during "
                          f"{busy_wall[q]:.2f}s of the other's batches", file=sys.stderr)
            greedy = {}
            if args.check_greedy and n > 1:
                for p in progs:
                    greedy[p] = check_greedy(servers[p], args, n)
                    g = greedy[p]
                    verdict = "all equal" if not g["mismatched"] else f"streams {g['mismatched']} differ"
                    print(f"greedy check {p} parallel {n}: {verdict} to the answer alone", file=sys.stderr)
                    raw["runs"].append({"program": p, "parallel": n, "greedy_check": g})
            for p in progs:
                mem = proc_status(servers[p].proc.pid)
                rows[(p, n)] = {
                    "aggregate": median([b["aggregate_tps"] for b in batches[p]]),
                    "decode": median([b["decode_tps"] for b in batches[p]]),
                    "ttft": median([b["ttft_max_s"] for b in batches[p]]),
                    "mem": mem,
                    "greedy": greedy.get(p),
                }
                raw["runs"].append({"program": p, "parallel": n, "memory_mib": mem})
        finally:
            for s in servers.values():
                s.stop()

    names = {"qllama": "qllama serve", "llama": "llama-server"}
    print(f"\nmodel {args.model}, {args.threads} threads, {args.ctx} context per slot, "
          f"{args.max_tokens} tokens per stream, median of {args.reps}, /v1/{'chat/' if args.endpoint == 'chat' else ''}completions\n")
    print("| program | parallel | aggregate t/s | × own 1-stream | qllama / llama-server | decode t/s | "
          "× own 1-stream (decode) | max TTFT s | peak RSS MiB (VmHWM) | anon RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in progs:
        for n in plist:
            r = rows[(p, n)]
            base = rows.get((p, 1)) if 1 in plist else None
            other = rows.get(("llama", n)) if p == "qllama" else None
            print(f"| {names[p]} | {n} | {fmt(r['aggregate'])} | "
                  f"{fmt(r['aggregate'] / base['aggregate'], 2) + '×' if base else '–'} | "
                  f"{fmt(r['aggregate'] / other['aggregate'], 2) + '×' if other else '–'} | "
                  f"{fmt(r['decode'])} | "
                  f"{fmt(r['decode'] / base['decode'], 2) + '×' if base else '–'} | "
                  f"{fmt(r['ttft'], 3)} | {fmt(r['mem'].get('VmHWM'), 0)} | {fmt(r['mem'].get('RssAnon'), 0)} |")
    print(f"\nmodel file {os.path.getsize(args.model) / 2**20:.0f} MiB; server logs in {logdir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
