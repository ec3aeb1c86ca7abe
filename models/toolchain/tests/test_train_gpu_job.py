"""The one-command GPU job (gpu_run.sh), run on CPU with tiny configs: unpack the carried
data, train versatile then dense on the same steps, pack fp16 weights + logs into parts
that fit what comes back, and unpack them here into loadable checkpoints."""
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.join(HERE, "..")
sys.path.insert(0, TOOLCHAIN)
from checkpoint import load_checkpoint  # noqa: E402
from gpu_bundle import pack_data, unpack_runs  # noqa: E402
from synthetic_data import write_dataset  # noqa: E402

TINY = ("models/toolchain/configs/tiny_smoke.py --max_steps=6 --context_length=32 --batch_size=4 --eval_interval=3 "
        "--eval_iters=1 --threads=1 --warmup_untimed_steps=1 --plan_after_steps=2 --reserve_s=2")


def test_gpu_job_on_cpu(tmp_path):
    write_dataset(str(tmp_path / "src"), 30_000, vocab_size=128)
    pack_data(str(tmp_path / "src"), str(tmp_path / "carry" / "data.tar.xz"))
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"), TOTAL_BUDGET_S="200",
               PACK_RESERVE_S="10", DATA_ARCHIVE=str(tmp_path / "carry" / "data.tar.xz"),
               DATA_DIR=str(tmp_path / "data"), RUNS_DIR=str(tmp_path / "runs"),
               V_CONFIG=TINY, D_CONFIG=TINY + " --ffn_kind=dense", OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", os.path.join(TOOLCHAIN, "gpu_run.sh")], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out_files = sorted(os.listdir(tmp_path / "out"))
    assert "summary.json" in out_files and "gpu_run.log" in out_files and "runs.tar.part0" in out_files
    assert len(out_files) <= 8

    unpack_runs(str(tmp_path / "out"), str(tmp_path / "back"))
    cfg_v, sd_v, meta_v = load_checkpoint(str(tmp_path / "back" / "versatile"))
    cfg_d, _, meta_d = load_checkpoint(str(tmp_path / "back" / "dense"))
    assert cfg_v.ffn_kind == "versatile" and cfg_d.ffn_kind == "dense"
    assert meta_v["tokens"] == meta_d["tokens"] == 6 * 4 * 32      # same tokens for both
    _, sd_full, _ = load_checkpoint(str(tmp_path / "runs" / "versatile"))
    for k in sd_full:                                              # fp16 transport of fp32 weights
        torch.testing.assert_close(sd_v[k], sd_full[k], rtol=1e-3, atol=1e-4)
