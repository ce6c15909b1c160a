#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs every test.
#   ./test.sh            everything
# Environment: KARYOSCREEN_DATA (default ../shared/data) for the tests that read real data.
set -euo pipefail
cd "$(dirname "$0")"
export KARYOSCREEN_DATA="${KARYOSCREEN_DATA:-$(cd .. && pwd)/shared/data}"
# Each step says how much disk is left: a full suite needs tens of GB (torch, tract builds, VMs).
step() { printf '\n=== %s (%ss, %s free)\n' "$1" "$SECONDS" "$(df -h --output=avail . | tail -1 | tr -d ' ')"; }

step "a fresh machine builds with only a Rust toolchain: no build-time bindgen (libclang) anywhere in the graph"
if cargo tree --locked -e normal,build --prefix none | grep -E '^(bindgen|clang-sys) '; then
    echo "a dependency runs bindgen at build time: building would need libclang" >&2
    exit 1
fi

step "host packages and Rust targets (cross linkers, qemu, kernel source)"
tests/vm/setup-host.sh

step "python venv (train/.venv: torch, onnx, onnxruntime)"
if ! train/.venv/bin/python -c 'import torch, onnx, onnxruntime, pytest, karyotrain' 2>/dev/null; then
    python3 -m venv train/.venv
    # no pip cache: torch's CUDA wheels are ~3 GB, and a cached second copy has filled a CI disk
    train/.venv/bin/pip install -q --no-cache-dir --upgrade pip
    train/.venv/bin/pip install -q --no-cache-dir -e 'train[test]'
fi

step "python tests (preprocessing spec, golden vectors, training smoke run)"
train/.venv/bin/python -m pytest -q train/tests

step "fixtures: golden vectors and cell-step cases reproduce byte for byte; parity outputs from a fresh onnxruntime run"
train/.venv/bin/python -m karyotrain.fixtures
git diff --exit-code --stat -- tests/fixtures/golden tests/fixtures/cell_step.json
echo "golden vectors and cell-step cases reproduced"

step "rust tests (unit, golden vectors, tract-vs-onnxruntime parity, demo end to end)"
cargo test --locked

step "fuzz: frame decoding + segmentation, board profile and model card parsing (30 s each)"
tests/fuzz.sh
# the sanitizer builds are only needed to replay a crash, which rebuilds them
rm -rf fuzz/target

step "aarch64: static release binary for the boards, unit tests under qemu-user"
cargo build --release --locked --target aarch64-unknown-linux-musl
cargo test --release --locked --target aarch64-unknown-linux-musl --lib

step "real Linux kernels in QEMU: gpio-sim LEDs and a vivid camera fed a demo metaphase"
tests/vm/run.sh x86_64
tests/vm/run.sh aarch64

step "board package (.deb for arm64)"
boards/package.sh arm64

step "done"
