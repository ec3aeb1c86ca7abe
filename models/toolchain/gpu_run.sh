#!/usr/bin/env bash
# The whole GPU job in one command: unpack the carried data, train the VersatileFFN model
# within a time budget, train the dense baseline on the same number of tokens (same
# steps), and pack both models' fp16 weights, sidecars and logs under $OUT (<= 15 MiB
# parts, <= 8 files), to be unpacked and exported here (export is CPU work):
#
#   here:   python models/toolchain/gpu_bundle.py pack-data --max-train-tokens 90000000   # -> models/work/carry/data.tar.xz (52 MiB)
#   device: run(command="bash models/toolchain/gpu_run.sh", carry=["models/work/carry"], timeout_s=600)
#   here:   python models/toolchain/gpu_bundle.py unpack-runs FILES_AT --out models/work/runs
#           python models/toolchain/export.py --checkpoint models/work/runs/versatile/ckpt.safetensors --out ...
#
# Tested on CPU with the tiny config (see tests/test_train_gpu_job.py):
#   OUT=/tmp/out TOTAL_BUDGET_S=60 V_CONFIG=models/toolchain/configs/tiny_smoke.py \
#   D_CONFIG="models/toolchain/configs/tiny_smoke.py --ffn_kind=dense" bash models/toolchain/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-models/work/gpu_out}
TOTAL=${TOTAL_BUDGET_S:-540}          # whole job, seconds; the device command limit is 600
SHARE=${VERSATILE_SHARE:-0.55}        # of the training time, for the versatile run (dense is ~2x faster per step)
DENSE=${DENSE:-1}                     # 0: train the versatile model alone, with the whole budget
PACK_RESERVE=${PACK_RESERVE_S:-25}
V_CONFIG=${V_CONFIG:-models/toolchain/configs/gpu_default.py}
D_CONFIG=${D_CONFIG:-models/toolchain/configs/gpu_dense.py}
ARCHIVE=${DATA_ARCHIVE:-models/work/carry/data.tar.xz}
DATA=${DATA_DIR:-models/work/data}
RUNS=${RUNS_DIR:-models/work/runs}
T=models/toolchain
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
mkdir -p "$OUT" "$RUNS"
LOG="$OUT/gpu_run.log"
exec > >(tee -a "$LOG") 2>&1

echo "== gpu_run.sh $(date -u +%FT%TZ), budget ${TOTAL}s"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; } 2>/dev/null
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [ ! -f "$DATA/train.bin" ]; then
  $PY $T/gpu_bundle.py unpack-data --archive "$ARCHIVE" --data-dir "$DATA"
fi
if [ "$DENSE" = 1 ]; then
  $PY $T/gpu_bundle.py check-size --data-dir "$DATA" --config "$V_CONFIG" --config "$D_CONFIG"
else
  SHARE=1
  $PY $T/gpu_bundle.py check-size --data-dir "$DATA" --config "$V_CONFIG"
fi

train_time=$(( TOTAL - $(elapsed) - PACK_RESERVE ))
v_budget=$($PY -c "print(int($train_time * $SHARE))")
echo "== versatile: ${v_budget}s of ${train_time}s (elapsed $(elapsed)s)"
rm -rf "$RUNS/versatile" "$RUNS/dense"
# shellcheck disable=SC2086
$PY $T/train.py $V_CONFIG --data_dir="$DATA" --out_dir="$RUNS/versatile" --time_budget_s="$v_budget" \
  --init_from=scratch

if [ "$DENSE" = 1 ]; then
  steps=$($PY -c "import json; print(json.load(open('$RUNS/versatile/ckpt.json'))['step'])")
  d_budget=$(( TOTAL - $(elapsed) - PACK_RESERVE ))
  echo "== dense: $steps steps (same tokens), budget ${d_budget}s (elapsed $(elapsed)s)"
  # shellcheck disable=SC2086
  $PY $T/train.py $D_CONFIG --data_dir="$DATA" --out_dir="$RUNS/dense" --max_steps="$steps" \
    --time_budget_s="$d_budget" --init_from=scratch || echo "!! dense run failed; packing the versatile model alone"
fi

runs="$RUNS/versatile"
[ -f "$RUNS/dense/ckpt.json" ] && runs="$runs $RUNS/dense"
# shellcheck disable=SC2086
$PY $T/gpu_bundle.py pack-runs $runs --out "$OUT"
$PY - "$OUT/summary.json" $runs <<'PY'
import json, sys
out, runs = sys.argv[1], sys.argv[2:]
summary = {}
for r in runs:
    m = json.load(open(f"{r}/ckpt.json"))
    summary[r.rstrip("/").split("/")[-1]] = {k: m.get(k) for k in ("step", "tokens", "metrics", "routing", "training")}
json.dump(summary, open(out, "w"), indent=1)
print(json.dumps({k: (v["step"], v["tokens"], v["metrics"], v["training"]["tokens_per_s"]) for k, v in summary.items()}))
PY
echo "== done in $(elapsed)s"
