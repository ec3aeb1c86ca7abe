"""Multi-process training through torchrun (DDP, gloo backend on CPU): two ranks train a
tiny model and rank 0 alone logs and checkpoints. Resuming under DDP is a second launch,
so that test runs only with VFFN_SLOW_TESTS=1 (it doubles the time on 2 busy cores)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from checkpoint import load_checkpoint  # noqa: E402
from synthetic_data import write_dataset  # noqa: E402

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
pytestmark = pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun not installed beside python")


def torchrun(tmp_path, *extra):
    if not (tmp_path / "data").exists():
        write_dataset(str(tmp_path / "data"), 40_000, vocab_size=128)
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", os.path.join(HERE, "..", "train.py"),
           "--n_layer=2", "--n_head=2", "--d_model=32", "--d_ff=128", "--context_length=32", "--batch_size=4",
           "--grad_accum=2", "--eval_interval=3", "--eval_iters=1", "--log_interval=3",
           "--warmup_steps=2", "--threads=1", "--backend=gloo",
           f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'run'}", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_torchrun_two_ranks_gloo(tmp_path):
    torchrun(tmp_path, "--max_steps=6")
    records = [json.loads(line) for line in open(tmp_path / "run" / "train_log.jsonl")]
    start = next(r for r in records if r["event"] == "start")
    assert start["world_size"] == 2 and start["tokens_per_step"] == 4 * 32 * 2 * 2
    assert sum(r["event"] == "start" for r in records) == 1      # rank 0 alone logs
    _, _, meta = load_checkpoint(str(tmp_path / "run"))
    assert meta["step"] == 6 and meta["tokens"] == 6 * 4 * 32 * 2 * 2


@pytest.mark.skipif(os.environ.get("VFFN_SLOW_TESTS") != "1", reason="set VFFN_SLOW_TESTS=1 (two torchrun launches)")
def test_torchrun_resume(tmp_path):
    torchrun(tmp_path, "--max_steps=6", "--stop_after_steps=3")
    assert load_checkpoint(str(tmp_path / "run"))[2]["step"] == 3
    torchrun(tmp_path, "--max_steps=6", "--init_from=resume")
    assert load_checkpoint(str(tmp_path / "run"))[2]["step"] == 6
