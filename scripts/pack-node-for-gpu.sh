#!/usr/bin/env bash
# Packs what scripts/gpu_bench.sh needs on the GPU machine, which has no Node.js and no registry:
#   build/node-carry/node.xz                     this machine's node binary (Linux x64), xz-compressed
#   build/node-carry/app/gpuBench.js             backend/src/tools/gpuBench.ts bundled by scripts/build.mjs (tokenizer inside)
#   build/node-carry/app/node_modules/onnxruntime-{node,common}
#                                                only the JS and the linux-x64 binaries; the 46 MB
#                                                libonnxruntime.so.1 as .xz (gpu_bench.sh unpacks it)
# About 35 MB in all, under the 64 MiB the device tool carries. Carry it with
#   run(carry=["build/node-carry"], command="bash scripts/gpu_bench.sh")
# Idempotent: re-packs the bundle every time; re-compresses node/ORT only when their source changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/build/node-carry"
ORT="$ROOT/node_modules/onnxruntime-node"
COMMON="$ROOT/node_modules/onnxruntime-common"
log() { printf '[pack-node-for-gpu] %s\n' "$*"; }
[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || { log "needs Linux x86_64 (the GPU machine's platform)"; exit 1; }
[[ -d "$ORT" && -d "$COMMON" ]] || { log "node_modules/onnxruntime-node missing: run npm ci first"; exit 1; }
NODE_BIN="$(command -v node)"
mkdir -p "$CARRY/app/node_modules"

# 1. node binary
if [[ ! -f "$CARRY/node.xz" || "$NODE_BIN" -nt "$CARRY/node.xz" || ! -f "$CARRY/node.version" || "$(cat "$CARRY/node.version")" != "$(node -v)" ]]; then
  log "compressing $NODE_BIN ($(node -v))"
  xz -T0 -6 -c "$NODE_BIN" > "$CARRY/node.xz.tmp" && mv "$CARRY/node.xz.tmp" "$CARRY/node.xz"
  node -v > "$CARRY/node.version"
fi

# 2. onnxruntime-node (linux-x64 only) + onnxruntime-common
dst="$CARRY/app/node_modules/onnxruntime-node"
bin="bin/napi-v6/linux/x64"
if [[ ! -f "$dst/$bin/libonnxruntime.so.1.xz" || "$ORT/$bin/libonnxruntime.so.1" -nt "$dst/$bin/libonnxruntime.so.1.xz" ]]; then
  log "copying onnxruntime-node $(node -p "require('$ORT/package.json').version") (linux-x64)"
  rm -rf "$dst" "$CARRY/app/node_modules/onnxruntime-common"
  mkdir -p "$dst/$bin"
  cp -r "$ORT/package.json" "$ORT/dist" "$ORT/lib" "$dst/"
  cp "$ORT/$bin/onnxruntime_binding.node" "$dst/$bin/"
  # any provider libraries installed beside it (e.g. CUDA's, on a machine whose installer fetched them)
  for f in "$ORT/$bin"/libonnxruntime_providers_*; do [[ -e "$f" ]] && cp "$f" "$dst/$bin/"; done
  xz -T0 -6 -c "$ORT/$bin/libonnxruntime.so.1" > "$dst/$bin/libonnxruntime.so.1.xz"
  cp -r "$COMMON" "$CARRY/app/node_modules/onnxruntime-common"
fi

# 3. the bench bundle
log "building (scripts/build.mjs: dist/gpuBench.js is backend/src/tools/gpuBench.ts bundled)"
(cd "$ROOT" && node scripts/build.mjs >/dev/null)
cp "$ROOT/dist/gpuBench.js" "$ROOT/dist/sessionWorker.js" "$CARRY/app/"   # the session thread runs beside it; source maps stay behind
log "done: $(du -sh "$CARRY" | cut -f1) in $CARRY"
