"""
Training checkpoints: three files in a run folder, each written to a temporary name and
renamed, the sidecar last (it names the others' sha256, so a half-written set is caught):

  ckpt.safetensors   model weights (fp32 names as in model.py; the model config is also in
                     the safetensors metadata, so the weights file alone says what it is)
  ckpt.optim.pt      optimizer state and RNG states (torch.save), only needed to resume
  ckpt.json          sidecar: format, model config, train config, step, tokens seen, the
                     planned max_steps and Gumbel schedule, metrics, sha256 of the files

Readers: load_checkpoint(path) -> (ModelConfig, state_dict, sidecar) is the API export.py
uses; load_training_checkpoint() adds the optimizer state for resuming. Both accept the run
folder, the .json or the .safetensors path.
"""
import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from atomic import atomic_write
from fileinfo import file_entry
from model import ModelConfig, VersatileLM

FORMAT = "vffn-train-checkpoint"
FORMAT_VERSION = 1
WEIGHTS, OPTIM, SIDECAR = "ckpt.safetensors", "ckpt.optim.pt", "ckpt.json"


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(run_dir: str, model: torch.nn.Module, meta: dict, optim_state: dict | None = None,
                    dtype: torch.dtype | None = None) -> str:
    """Write the checkpoint atomically; returns the sidecar path. dtype (e.g. float16)
    shrinks the weights for transport; training checkpoints keep fp32."""
    os.makedirs(run_dir, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in model.state_dict().items()}
    files = {}
    weights_path = os.path.join(run_dir, WEIGHTS)
    atomic_write(weights_path, lambda p: save_file(state, p, metadata={
        "format": FORMAT, "model_config": json.dumps(meta["model_config"])}))
    files[WEIGHTS] = file_entry(weights_path)
    if optim_state is not None:
        optim_path = os.path.join(run_dir, OPTIM)
        atomic_write(optim_path, lambda p: torch.save(optim_state, p))
        files[OPTIM] = file_entry(optim_path)
    sidecar = dict(meta, format=FORMAT, format_version=FORMAT_VERSION, files=files)
    sidecar_path = os.path.join(run_dir, SIDECAR)
    atomic_write(sidecar_path, lambda p: _write_json(p, sidecar))
    return sidecar_path


def load_checkpoint(path: str) -> tuple[ModelConfig, dict, dict]:
    """(model config, fp32 state dict, sidecar) of a checkpoint, checked against the model."""
    ckpt = load_training_checkpoint(path)
    cfg = ckpt["model_config"]
    state_dict = {k: v.float() for k, v in ckpt["state_dict"].items()}
    check_state_dict(cfg, state_dict, f"checkpoint {path}")
    return cfg, state_dict, ckpt["meta"]


def check_state_dict(cfg: ModelConfig, state_dict: dict, what: str):
    """Raise CheckpointError unless state_dict has exactly the model's names and shapes."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VersatileLM(cfg).state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise CheckpointError(f"{what} does not fit its model config ({cfg.ffn_kind}, d_model {cfg.d_model}, "
                              f"n_layer {cfg.n_layer}): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                              f"wrong shape {wrong[:5]}. Was it written by another toolchain version?")


def load_training_checkpoint(path: str, with_optimizer: bool = False, verify: bool = True) -> dict:
    """Returns {"meta", "model_config", "state_dict", "optim_state" (or None)}; raises
    CheckpointError naming the file and what to do when anything is missing or corrupt."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}: it does not exist. "
                              f"Train first, or start from scratch with --init_from=scratch.")
    run_dir = path if os.path.isdir(path) else os.path.dirname(path) or "."
    sidecar_path = os.path.join(run_dir, SIDECAR)
    if not os.path.exists(sidecar_path):
        raise CheckpointError(f"no checkpoint at {path}: {sidecar_path} does not exist. "
                              f"Train first, or start from scratch with --init_from=scratch.")
    try:
        with open(sidecar_path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} is corrupt or truncated ({e}). "
                              f"Delete the run folder's ckpt.* files and retrain, or restore a copy.") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar_path} is not a training checkpoint (format {meta.get('format')!r}).")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{sidecar_path} has checkpoint format_version {meta.get('format_version')}; "
                              f"this toolchain reads version {FORMAT_VERSION}. Use the matching toolchain or retrain.")
    names = [WEIGHTS] + ([OPTIM] if with_optimizer else [])
    for name in names:
        file_path = os.path.join(run_dir, name)
        info = meta.get("files", {}).get(name)
        if info is None:
            raise CheckpointError(f"{sidecar_path} lists no {name}; this checkpoint cannot be "
                                  f"{'resumed' if name == OPTIM else 'loaded'}. Start from scratch.")
        if not os.path.exists(file_path):
            raise CheckpointError(f"checkpoint file {file_path} is missing (listed in {sidecar_path}). "
                                  f"Restore it, or delete the ckpt.* files and retrain.")
        if verify and file_entry(file_path) != info:
            raise CheckpointError(f"checkpoint file {file_path} is corrupt or truncated: its size/sha256 differ "
                                  f"from {sidecar_path} (interrupted copy?). Restore it, or delete the ckpt.* files "
                                  f"and retrain.")
    weights_path = os.path.join(run_dir, WEIGHTS)
    try:
        state_dict = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint file {weights_path} cannot be read ({e}). It is corrupt or truncated: "
                              f"restore it, or delete the ckpt.* files and retrain.") from e
    try:
        model_config = ModelConfig.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{sidecar_path} has no usable model_config ({e}).") from e
    optim_state = None
    if with_optimizer:
        optim_path = os.path.join(run_dir, OPTIM)
        try:
            optim_state = torch.load(optim_path, map_location="cpu", weights_only=False)
        except Exception as e:  # torch raises several types for a damaged pickle/zip
            raise CheckpointError(f"checkpoint file {optim_path} cannot be read ({e}); restore it, "
                                  f"or delete the ckpt.* files and retrain.") from e
    return {"meta": meta, "model_config": model_config, "state_dict": state_dict, "optim_state": optim_state}


def load_model(path: str) -> tuple[VersatileLM, dict]:
    """The model (fp32, eval mode) and the sidecar of a checkpoint."""
    cfg, state_dict, meta = load_checkpoint(path)
    model = VersatileLM(cfg)
    model.load_state_dict(state_dict)
    return model.eval(), meta


def _write_json(path: str, obj: dict):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
