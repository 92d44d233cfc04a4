#!/usr/bin/env bash
# Cross-test the kernels crate for aarch64 under user-mode QEMU: once with
# QEMU's default CPU (`max`: NEON with dotprod, so the SDOT kernels run) and
# once as a Cortex-A53 (plain NEON, no dotprod, so the fallback kernels run).
# Linker and runner come from .cargo/config.toml. Installs what it needs
# (Debian packages, the Rust target) when missing; run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-dev-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

target=aarch64-unknown-linux-gnu
echo "== aarch64, QEMU default CPU (max: NEON + dotprod)"
env -u QEMU_CPU cargo test -p qllama-kernels --target "$target" "$@"
echo "== aarch64, QEMU_CPU=cortex-a53 (NEON, no dotprod)"
QEMU_CPU=cortex-a53 cargo test -p qllama-kernels --target "$target" "$@"
