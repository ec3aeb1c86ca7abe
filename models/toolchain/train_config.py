"""
Training configuration: one flat namespace of model keys (ModelConfig) and training keys
(TrainConfig below, with commented defaults), overridden in order by config files
(configs/*.py, whose top-level assignments are read, or configs/*.json) and --key=value.
An unknown key is an error that names where it came from.
"""
import difflib
import json
import os
import runpy
from dataclasses import dataclass, asdict, fields

from model import ModelConfig


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = "models/work/runs/default"   # checkpoint, train_log.jsonl
    data_dir: str = "models/work/data"          # train.bin, val.bin (uint16), meta.json
    init_from: str = "scratch"                  # "scratch" | "resume" (from out_dir's checkpoint)
    seed: int = 1337
    # batches: tokens per optimizer step = batch_size * context_length * grad_accum * world_size
    batch_size: int = 16
    grad_accum: int = 1
    fim_rate: float = 0.5                       # share of documents FIM'd (Bavarian et al. 2022)
    spm_rate: float = 0.5                       # share of FIM'd documents in SPM rather than PSM order
    prefetch: int = 4                           # batches built ahead in a background thread (0: build inline)
    # optimisation: AdamW, linear warmup then cosine to min_lr at max_steps
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 1000                       # end of the cosine schedule and of training
    stop_after_steps: int = 0                   # >0: stop (with a checkpoint) after this many steps of this invocation; resume later
    weight_decay: float = 0.1                   # on 2-D weights only (matrices, embedding)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0                      # 0 disables
    # VersatileFFN training
    balance_coef: float = 1e-2                  # expert load-balancing loss weight, summed over layers (paper 1e-5, released 5e-5)
    loop_balance_coef: float = 0.0              # optional balance loss on the depth router's loop counts (not in the paper)
    gumbel_tau_start: float = 5.0
    gumbel_tau_end: float = 0.1
    gumbel_decay: float = 0.99984               # per step (reference code); see gumbel_anneal_frac
    gumbel_anneal_frac: float = 0.0             # >0: pick the decay so tau reaches its end at this share of max_steps
    # time budget: stop cleanly (with a checkpoint) within time_budget_s of wall clock
    time_budget_s: float = 0.0                  # 0 = no budget, run max_steps
    plan_after_steps: int = 20                  # timed steps measured before max_steps is fitted to the budget
    reserve_s: float = 20.0                     # kept back for the final eval and checkpoint
    # evaluation, logging, checkpoints
    eval_interval: int = 200
    eval_iters: int = 20                        # fixed validation batches (same every eval)
    log_interval: int = 10
    checkpoint: bool = True                     # write checkpoints at all (benchmarks turn this off)
    checkpoint_interval: int = 0                # 0 = at every eval, N = every N steps, -1 = only at the end
    # system
    device: str = "auto"                        # "auto" | "cpu" | "cuda"
    compile: bool = False                       # torch.compile (worth it on GPU)
    warmup_untimed_steps: int = 2               # first steps (compilation) excluded from tokens/s
    backend: str = "auto"                       # DDP backend: "auto" (nccl on cuda, gloo on cpu)
    threads: int = 0                            # torch CPU threads; 0 = torch's default


TRAIN_KEYS = {f.name: f.default for f in fields(TrainConfig)}
MODEL_KEYS = {f.name: f.default for f in fields(ModelConfig)}


class ConfigError(ValueError):
    pass


def load_config(argv: list[str]) -> tuple[ModelConfig, TrainConfig, dict]:
    """argv: config files and --key=value, applied left to right. Returns the model
    config, the train config and the flat dict of what was overridden."""
    overrides: dict = {}
    for arg in argv:
        if arg.startswith("--"):
            key, sep, raw = arg[2:].partition("=")
            if not sep:
                raise ConfigError(f"argument {arg!r} is not of the form --key=value")
            _check_key(key, f"command-line argument {arg!r}")
            overrides[key] = _parse_value(key, raw)
        else:
            overrides.update(read_config_file(arg))
    model_kw = {k: v for k, v in overrides.items() if k in MODEL_KEYS}
    train_kw = {k: v for k, v in overrides.items() if k in TRAIN_KEYS}
    try:
        return ModelConfig(**model_kw), TrainConfig(**train_kw), overrides
    except ValueError as e:
        raise ConfigError(f"invalid model configuration: {e}") from e


def read_config_file(path: str) -> dict:
    if not os.path.exists(path):
        raise ConfigError(f"config file {path} does not exist; see models/toolchain/configs/ for the shipped ones")
    if path.endswith(".json"):
        try:
            with open(path) as f:
                values = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a JSON object of key: value")
    elif path.endswith(".py"):
        values = {k: v for k, v in runpy.run_path(path).items()
                  if not k.startswith("_") and isinstance(v, (int, float, str, bool))}
    else:
        raise ConfigError(f"config file {path} must end in .py or .json")
    for key in values:
        _check_key(key, f"config file {path}")
    return values


def _check_key(key: str, where: str):
    if key in TRAIN_KEYS or key in MODEL_KEYS:
        return
    known = sorted(TRAIN_KEYS) + sorted(MODEL_KEYS)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown config key {key!r} in {where}.{hint} "
                      f"Known keys are the fields of TrainConfig (train_config.py) and ModelConfig (model.py).")


def _parse_value(key: str, raw: str):
    default = TRAIN_KEYS.get(key, MODEL_KEYS.get(key))
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes"):
                return True
            if raw.lower() in ("0", "false", "no"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"--{key}={raw}: expected a {type(default).__name__}") from None
    return raw


def config_dicts(model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple[dict, dict]:
    return model_cfg.to_dict(), asdict(train_cfg)
