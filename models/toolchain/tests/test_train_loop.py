"""Training loop on synthetic data: smoke run, exact resume, bad-input errors (CPU)."""
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import train  # noqa: E402
from checkpoint import CheckpointError, load_checkpoint, load_training_checkpoint  # noqa: E402
from synthetic_data import write_dataset  # noqa: E402
from train_config import ConfigError, load_config  # noqa: E402

TINY = ["--n_layer=2", "--n_head=2", "--d_model=32", "--d_ff=128", "--context_length=32", "--batch_size=4",
        "--eval_iters=1", "--log_interval=2", "--warmup_steps=2", "--learning_rate=3e-3",
        "--gumbel_anneal_frac=0.8", "--warmup_untimed_steps=1", "--threads=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_dataset(str(d), 60_000, vocab_size=128)
    return str(d)


def run(data_dir, out_dir, *extra):
    return train.main(TINY + [f"--data_dir={data_dir}", f"--out_dir={out_dir}", *extra])


def log_records(out_dir, event):
    with open(os.path.join(out_dir, "train_log.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["event"] == event]


def test_smoke_training_loss_decreases(data_dir, tmp_path):
    summary = run(data_dir, tmp_path, "--max_steps=30", "--eval_interval=15")
    losses = [r["loss"] for r in log_records(tmp_path, "train")]
    assert summary["step"] == 30 and summary["tokens"] == 30 * 4 * 32
    assert losses[-1] < losses[0] - 0.3, losses
    evals = log_records(tmp_path, "eval")
    assert len(evals) == 2 and evals[-1]["val_loss"] < evals[0]["val_loss"]
    routing = evals[-1]["routing"]
    assert len(routing) == 2 and 1.0 <= routing[0]["mean_loops"] <= 4.0
    assert abs(sum(routing[0]["loop_share"]) - 1) < 1e-3 and abs(sum(routing[0]["expert_load"]) - 1) < 1e-3
    cfg, sd, meta = load_checkpoint(str(tmp_path / "ckpt.safetensors"))   # the exporter's view
    assert cfg.d_model == 32 and meta["step"] == 30 and meta["tokens"] == summary["tokens"]
    assert meta["metrics"]["val_loss"] == pytest.approx(evals[-1]["val_loss"])


def test_resume_continues_exactly(data_dir, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    a = run(data_dir, straight, "--max_steps=8", "--eval_interval=0")
    first = run(data_dir, split, "--max_steps=8", "--eval_interval=0", "--stop_after_steps=4")
    assert first["step"] == 4 and first["stop_reason"] == "stop_after_steps"
    b = run(data_dir, split, "--eval_interval=0", "--init_from=resume")     # the saved schedule ends at 8
    assert b["step"] == 8 and b["tokens"] == a["tokens"]
    assert log_records(split, "train")[-1]["loss"] == pytest.approx(log_records(straight, "train")[-1]["loss"], abs=1e-5)
    _, sd_a, meta_a = load_checkpoint(str(straight))
    _, sd_b, meta_b = load_checkpoint(str(split))
    for k in sd_a:
        torch.testing.assert_close(sd_a[k], sd_b[k], rtol=1e-5, atol=1e-6)
    assert meta_a["gumbel_tau"] == meta_b["gumbel_tau"] and meta_a["schedule"] == meta_b["schedule"]


def test_corrupt_or_truncated_checkpoint_is_named(data_dir, tmp_path):
    run(data_dir, tmp_path, "--max_steps=2", "--eval_interval=0")
    weights = tmp_path / "ckpt.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="ckpt.safetensors is corrupt or truncated"):
        load_checkpoint(str(weights))
    with pytest.raises(CheckpointError, match="ckpt.safetensors"):
        run(data_dir, tmp_path, "--max_steps=4", "--init_from=resume")
    (tmp_path / "ckpt.json").write_text('{"format": "vffn-train-ch')
    with pytest.raises(CheckpointError, match="ckpt.json is corrupt or truncated"):
        load_training_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_training_checkpoint(str(tmp_path / "nowhere"))


def test_unknown_config_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'learning_rat'.*command-line.*Did you mean learning_rate"):
        load_config(["--learning_rat=1e-3"])
    cfg_file = tmp_path / "bad.py"
    cfg_file.write_text("n_layers = 4\n")
    with pytest.raises(ConfigError, match=r"'n_layers' in config file .*bad.py"):
        load_config([str(cfg_file)])
    json_file = tmp_path / "bad.json"
    json_file.write_text('{"batchsize": 4}')
    with pytest.raises(ConfigError, match="batchsize"):
        load_config([str(json_file)])
    with pytest.raises(ConfigError, match="expected a int"):
        load_config(["--max_steps=ten"])


def test_missing_data_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train.bin does not exist"):
        run(str(tmp_path / "no-data"), tmp_path / "out", "--max_steps=1")
