#!/usr/bin/env bash
# Issue 6's one prepared script for the GPU machine: CPU provider vs WebGPU (and CUDA, when its
# provider files are installed) on the same machine, for the default model (or --model DIR):
# prefill of 1k tokens, decode tokens/s (KV cache on the GPU where preferredOutputLocation
# 'gpu-buffer' works), end-to-end warm completion p50, greedy-token identity on 100 prompts.
# Writes gpu_bench.json, gpu_bench.md and gpu_bench.log into $OUT (else bench/results/).
#
# The GPU machine has no Node.js: first, here, `bash scripts/pack-node-for-gpu.sh` (makes
# build/node-carry, ~37 MB), then on the device: carry ["build/node-carry"], command
# `bash scripts/gpu_bench.sh`, timeout ~330 s. On a CPU-only machine it runs too (node from PATH
# and tsx when build/node-carry is absent); a provider that cannot load is a row with its reason.
# Extra arguments go to gpuBench (e.g. --prompts 20 --repeats 3 --providers cpu,webgpu,cuda).
# BENCH_BUDGET_S (default 240) bounds the identity runs; the whole script stays under ~5 min.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/build/node-carry"
OUT="${OUT:-$ROOT/bench/results}"
WORK="${TMPDIR:-/tmp}/vffn-gpu-bench"
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu_bench.log"
: > "$LOG"
log() { printf '[gpu_bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
START=$SECONDS

if [[ -f "$CARRY/node.xz" && -f "$CARRY/app/gpuBench.js" ]]; then
  if [[ ! -x "$WORK/node" || "$CARRY/node.xz" -nt "$WORK/node" ]]; then
    xz -dc "$CARRY/node.xz" > "$WORK/node.tmp" && chmod +x "$WORK/node.tmp" && mv "$WORK/node.tmp" "$WORK/node"
  fi
  rm -rf "$WORK/app" && cp -r "$CARRY/app" "$WORK/app"
  so="$WORK/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
  xz -d "$so.xz"
  NODE="$WORK/node"
  BENCH="$WORK/app/gpuBench.js"
elif command -v node >/dev/null && [[ -d "$ROOT/node_modules/tsx" ]]; then
  log "no build/node-carry (run scripts/pack-node-for-gpu.sh for the GPU machine); using $(command -v node) with tsx"
  NODE="$(command -v node)"
  BENCH="--import tsx $ROOT/backend/src/tools/gpuBench.ts"
else
  log "no Node.js here and no build/node-carry: run scripts/pack-node-for-gpu.sh on the dev machine and carry build/node-carry"
  exit 1
fi
log "node $("$NODE" -v), unpacked in $((SECONDS - START)) s"
{ if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1; else echo "no nvidia-smi"; fi; } | sed 's/^/gpu: /' | tee -a "$LOG" >&2
{ ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | tr '\n' ' '; echo; } | sed 's/^/vulkan icd: /' | tee -a "$LOG" >&2

cd "$ROOT"
# shellcheck disable=SC2086  # BENCH may hold "--import tsx FILE"
timeout --signal=TERM $(( ${BENCH_BUDGET_S:-240} + 80 )) "$NODE" $BENCH --root "$ROOT" --out "$OUT" \
  --budget-s "${BENCH_BUDGET_S:-240}" "$@" 2>> "$LOG" | tee "$OUT/gpu_bench.stdout.md"
rc=${PIPESTATUS[0]}
log "exit $rc after $((SECONDS - START)) s"
rm -f "$OUT/gpu_bench.stdout.md"
exit "$rc"
