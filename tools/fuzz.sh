#!/usr/bin/env bash
# Bounded fuzzing runs of the GGUF targets (see fuzz/). Usage:
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Defaults: 60 seconds, every target. Needs `cargo install cargo-fuzz --locked`.
# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 allows them
# on the stable toolchain. Crashes are saved under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf_header gguf_tokenizer)
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
for t in "${targets[@]}"; do
    # libFuzzer writes new inputs into the first folder (a scratch corpus,
    # git-ignored) and only reads the committed seeds.
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzzing $t for ${secs}s"
    cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10
done
