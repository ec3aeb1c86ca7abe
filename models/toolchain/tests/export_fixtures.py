"""Shared by test_export.py and test_parity.py: tiny models, exports, and the comparison of
an exported graph's step-by-step outputs against one PyTorch forward pass."""
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
sys.path.insert(0, TOOLCHAIN)

from export import export_model  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402

TOKENIZER = os.path.join(REPO, "models", "tiny-test", "tokenizer.json")
SMALL = dict(vocab_size=2048, n_layer=2, n_head=3, d_model=48, d_ff=128, context_length=256)
# Runs a model folder through the backend's own code (modelFolder.ts, session.ts, tokenizer.ts) under tsx.
NODE_SCRIPT = os.path.join(TOOLCHAIN, "parity_node.ts")


def small_model(kind: str = "versatile", seed: int = 7, **kw) -> VersatileLM:
    """Random model whose routers spread tokens over all loop counts and experts with clear
    margins (so PyTorch and onnxruntime cannot disagree on a near-tie), and whose other
    weights keep activations moderate (so fp32 differences stay far below 1e-4)."""
    torch.manual_seed(seed)
    model = VersatileLM(ModelConfig(**{**SMALL, "ffn_kind": kind, **kw})).eval()
    with torch.no_grad():
        model.tok_emb.weight.normal_(0.0, 0.5)
        for b in model.blocks:
            b.attn.qkv.weight.normal_(0.0, 0.1)
            b.ffn.ffn.w_in.weight.normal_(0.0, 0.1)
            if model.cfg.ffn_kind == "versatile":
                b.ffn.depth_router.weight.normal_(0.0, 0.5)
                b.ffn.expert_router.weight.normal_(0.0, 0.5)
    return model


def export_small(model, out_dir: str, **kw) -> dict:
    return export_model(model.cfg, model.state_dict(), out_dir, tokenizer=TOKENIZER, **kw)


@torch.no_grad()
def torch_reference(model, ids):
    """Logits [S, V] and per-layer routing dicts for the whole sequence in one pass."""
    logits, _, aux = model.eval()(torch.tensor([ids]))
    return logits[0].numpy(), aux["routing"]


def compare(model, ids, chunks, steps) -> float:
    """steps[i] holds the graph outputs for chunks[i] (num_logits = len(chunk)); checks
    routing equality and returns the logits' max abs difference."""
    ref_logits, routing = torch_reference(model, ids)
    cfg = model.cfg
    maxdiff, start = 0.0, 0
    for chunk, out in zip(chunks, steps):
        end = start + len(chunk)
        logits = np.asarray(out["logits"], np.float32).reshape(len(chunk), cfg.vocab_size)
        maxdiff = max(maxdiff, float(np.abs(logits - ref_logits[start:end]).max()))
        loops = np.asarray(out["route_loops"]).reshape(cfg.n_layer, len(chunk))
        experts = np.asarray(out["route_experts"]).reshape(cfg.n_layer, len(chunk), 2)
        weights = np.asarray(out["route_weights"], np.float32).reshape(cfg.n_layer, len(chunk), 2)
        lam = np.asarray(out["route_lambda"], np.float32).reshape(cfg.n_layer, len(chunk))
        probs = np.asarray(out["route_loop_probs"], np.float32).reshape(cfg.n_layer, len(chunk), 4)
        for layer, r in enumerate(routing):
            if r is None:   # baselines: constant routing
                fixed = 1 if cfg.ffn_kind == "dense" else cfg.fixed_loops
                assert (loops[layer] == fixed).all() and (experts[layer] == -1).all()
                assert (weights[layer] == 0).all() and (lam[layer] == 0).all()
                continue
            ref_loops = r["loops"][0, start:end].numpy()
            np.testing.assert_array_equal(loops[layer], ref_loops, err_msg=f"layer {layer} loops, tokens {start}:{end}")
            easy = ref_loops < cfg.max_loops
            ref_experts = np.where(easy[:, None], r["experts"][0, start:end].numpy(), -1)
            np.testing.assert_array_equal(experts[layer], ref_experts, err_msg=f"layer {layer} experts")
            ref_w = np.where(easy[:, None], r["weights"][0, start:end].numpy(), 0)
            np.testing.assert_allclose(weights[layer], ref_w, atol=1e-4)
            np.testing.assert_allclose(lam[layer], r["lambda"][0, start:end].numpy(), atol=1e-7)
            np.testing.assert_allclose(probs[layer], r["loop_probs"][0, start:end].numpy(), atol=1e-4)
        start = end
    return maxdiff


def node_available() -> bool:
    return shutil.which("node") is not None and all(
        os.path.isdir(os.path.join(REPO, "node_modules", p)) for p in ("onnxruntime-node", "tsx"))


def run_node(*args) -> None:
    proc = subprocess.run(["node", "--import", "tsx", NODE_SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"parity_node.ts {args[0]} failed:\n{proc.stderr}"
