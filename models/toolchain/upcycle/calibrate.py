"""
Learns the upcycled model's width routing on the CPU: one gate threshold per layer
(UpcycledFFN: a hidden unit whose |silu(gate)| is below it is skipped for that token),
allocated so that the end-to-end language-model loss stays within a budget.

    python models/toolchain/upcycle/calibrate.py --weights DIR --out routing.json \
        [--state models/work/upcycle/calibrate-state.json] [--budget 0.05]

DIR holds dense.safetensors + config.json + tokenizer.json (convert.py). The run:
1. Data: FIM-formatted windows (all three languages) from the corpus' train split for
   calibration, from the validation split for the curve (never the same files).
2. Thresholds: per layer, quantiles of |silu(gate)| over calibration tokens give the
   threshold for each skip rate s (the share of units skipped on average).
3. Sensitivity: per layer and skip rate, the calibration loss increase when only that
   layer skips (the residual stream into the layer is recorded once, so only the layers
   from it on are recomputed). Saved after every layer: an interrupted run resumes.
4. Allocation: per budget B, the skip rates that maximize skipped units subject to the
   summed per-layer increases staying within B (greedy on marginal loss per unit skipped).
5. Curve, on validation windows: for each budget, the learned thresholds against a uniform
   baseline (every token keeps the same number of units per layer, the largest |silu(gate)|)
   and an oracle (same per-token count, the units with the largest true contribution
   |silu(gate)·up|·‖W_down column‖), each at the same compute.
The routing file written is small (24 floats and the curve) and is committed.
"""
import argparse
import hashlib
import json
import os
import random
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
sys.path.insert(0, TOOLCHAIN)
sys.path.insert(0, HERE)
from atomic import atomic_write_text  # noqa: E402
from eval_models import GATE_COST  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402
from routing_file import ROUTING_VERSION, with_checksum  # noqa: E402
from source import GGUF_SHA256  # noqa: E402

REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
LANGS = ("python", "javascript", "typescript")
SKIP_GRID = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
SENS_SKIPS = [0.4, 0.6, 0.8]


def load_upcycled(weights_dir: str) -> VersatileLM:
    from safetensors.torch import load_file
    cfg = json.load(open(os.path.join(weights_dir, "config.json")))
    cfg["ffn_kind"] = "upcycled"
    model = VersatileLM(ModelConfig.from_dict(cfg))
    missing, unexpected = model.load_state_dict(load_file(os.path.join(weights_dir, "dense.safetensors")), strict=False)
    if unexpected or any(not any(k in n for k in ("depth_router", "loop_gate", "gate_threshold")) for n in missing):
        raise SystemExit(f"{weights_dir}: weights do not match the config ({missing[:3]}, {unexpected[:3]})")
    return model.eval()


# ----------------------------------------------------------------------------- data
def fim_windows(jsonl: str, tok, n_per_lang: int, T: int, seed: int) -> np.ndarray:
    """[n, T+1] token windows: whole files turned into PSM FIM documents at a random line
    (as the editor asks), concatenated per language with <|endoftext|>, cut into windows."""
    sp = {n: tok.token_to_id(n) for n in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>")}
    rng = random.Random(seed)
    by_lang = {lang: [] for lang in LANGS}
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["language"] in by_lang and 200 < len(r["text"]) < 20000:
                by_lang[r["language"]].append(r["text"])
    out = []
    for lang in LANGS:
        docs = by_lang[lang]
        rng.shuffle(docs)
        stream: list[int] = []
        for text in docs:
            lines = text.split("\n")
            a = rng.randrange(1, max(2, len(lines) - 1))
            b = min(len(lines), a + rng.randint(1, 3))
            pre, mid, suf = "\n".join(lines[:a]) + "\n", "\n".join(lines[a:b]), "\n" + "\n".join(lines[b:])
            enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
            stream += [sp["<|fim_prefix|>"], *enc(pre)[-T:], sp["<|fim_suffix|>"], *enc(suf)[:T // 4],
                       sp["<|fim_middle|>"], *enc(mid), sp["<|endoftext|>"]]
            if len(stream) >= n_per_lang * (T + 1):
                break
        out.append(np.asarray(stream[:n_per_lang * (T + 1)], np.int64).reshape(n_per_lang, T + 1))
    return np.concatenate(out)


# ----------------------------------------------------------------------------- FFN modes
def set_mode(model, mode: str, **kw):
    """Switches every layer's FFN: "threshold" (the model's own rule, per-layer gate_threshold),
    "uniform" (top-k by |act| with k = keep[i] units for every token), "oracle" (per token the
    same count the threshold rule keeps, chosen by true contribution)."""
    for i, block in enumerate(model.blocks):
        ffn = block.ffn
        ffn.mode, ffn.layer, ffn.kw = mode, i, kw
        if not hasattr(ffn, "_orig_forward"):
            ffn._orig_forward = ffn.forward
            ffn.forward = types.MethodType(_mode_forward, ffn)


def _mode_forward(self, H, tau=1.0):
    if self.mode == "threshold":
        return self._orig_forward(H, tau)
    gate, up = self.ffn.w_in(self.ffn_norm(H)).split(self.cfg.d_ff, dim=-1)
    act = F.silu(gate)
    if self.mode == "record":
        self.kw["sink"](self.layer, H, act)
        keep = torch.ones_like(act, dtype=torch.bool)
    elif self.mode == "uniform":
        k = self.kw["keep"][self.layer]
        keep = torch.zeros_like(act, dtype=torch.bool).scatter_(-1, act.abs().topk(k, dim=-1).indices, True)
    elif self.mode == "oracle":
        n_keep = (act.abs() >= self.gate_threshold).sum(-1, keepdim=True)                    # [B,T,1]
        score = (act * up).abs() * self.ffn.w_out.weight.norm(dim=0)
        rank = score.argsort(-1, descending=True).argsort(-1)
        keep = rank < n_keep
    else:
        raise ValueError(self.mode)
    Y = H + self.ffn.w_out(act * keep * up)
    loops = torch.ones(H.shape[:-1], dtype=torch.long)
    return Y, {"loops": loops, "ffn_share": keep.float().mean(-1)}


def set_thresholds(model, thresholds):
    for block, t in zip(model.blocks, thresholds):
        block.ffn.gate_threshold.fill_(float(t))


@torch.inference_mode()
def loss_and_share(model, windows: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean next-token loss and each layer's mean kept share of FFN units over the windows."""
    tot, n, shares = 0.0, 0, np.zeros(model.cfg.n_layer)
    for w in windows:
        logits, _, aux = model(torch.from_numpy(w[None, :-1]))
        tot += float(F.cross_entropy(logits[0].float(), torch.from_numpy(w[1:]), reduction="sum"))
        n += len(w) - 1
        shares += np.array([float(r["ffn_share"].mean()) for r in aux["routing"]])
    return tot / n, shares / len(windows)


def ffn_cost(shares) -> float:
    """Mean FFN cost in dense-FFN units: the gate always, up and down for the kept share."""
    return float(np.mean([GATE_COST + (1 - GATE_COST) * s for s in shares]))


@torch.inference_mode()
def tail_loss(model, H: torch.Tensor, start: int, targets: torch.Tensor) -> float:
    """Loss of running layer start's FFN on its recorded input H [B,T,d] (the residual
    stream after that layer's attention), then the full blocks after it."""
    from model import rope_tables
    T = H.shape[1]
    cos, sin = rope_tables(model.cfg.head_dim, torch.arange(T), model.cfg.rope_theta)
    tot = 0.0
    for b in range(H.shape[0]):
        x, _ = model.blocks[start].ffn(H[b:b + 1])
        for block in model.blocks[start + 1:]:
            x, _ = block(x, cos, sin, 1.0)
        logits = F.linear(model.norm_f(x), model.head_weight())
        tot += float(F.cross_entropy(logits[0].float(), targets[b], reduction="sum"))
    return tot / targets.numel()


# ----------------------------------------------------------------------------- steps
def record(model, windows: np.ndarray, sample_per_layer: int, seed: int):
    """Per layer: a sample of |silu(gate)| values, and the residual stream into each layer."""
    L = model.cfg.n_layer
    g = torch.Generator().manual_seed(seed)
    samples = [[] for _ in range(L)]
    inputs = [[] for _ in range(L)]

    def sink(i, H, act):
        inputs[i].append(H.detach().clone())
        flat = act.abs().reshape(-1)
        idx = torch.randint(0, flat.numel(), (sample_per_layer // len(windows),), generator=g)
        samples[i].append(flat[idx])
    set_mode(model, "record", sink=sink)
    with torch.inference_mode():
        for w in windows:
            model(torch.from_numpy(w[None, :-1]))
    set_mode(model, "threshold")
    return [torch.cat(s) for s in samples], [torch.cat(x) for x in inputs]


def allocate(sens: dict, L: int, budget: float) -> list[float]:
    """Skip rate per layer maximizing Σ s subject to Σ Δ_i(s_i) ≤ budget (Δ interpolated
    linearly between measured skip rates, Δ(0) = 0), greedily by Δ cost per step."""
    grid = [0.0] + SENS_SKIPS

    def delta(i, s):
        ys = [0.0] + [max(0.0, sens[str(i)][str(x)]) for x in SENS_SKIPS]
        return float(np.interp(s, grid, ys))
    steps = [round(x, 2) for x in np.arange(0.0, SENS_SKIPS[-1] + 1e-9, 0.05)]
    pos = [0] * L
    used = 0.0
    while True:
        best, best_ratio = None, None
        for i in range(L):
            if pos[i] + 1 >= len(steps):
                continue
            d = delta(i, steps[pos[i] + 1]) - delta(i, steps[pos[i]])
            if used + d > budget:
                continue
            ratio = d / 0.05
            if best_ratio is None or ratio < best_ratio:
                best, best_ratio = i, ratio
        if best is None:
            return [steps[p] for p in pos]
        used += delta(best, steps[pos[best] + 1]) - delta(best, steps[pos[best]])
        pos[best] += 1


def threshold_for(sample: torch.Tensor, skip: float) -> float:
    if skip <= 0:
        return 0.0
    k = max(1, int(skip * sample.numel()))
    return float(sample.kthvalue(k).values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--state", default=os.path.join(REPO, "models", "work", "upcycle", "calibrate-state.json"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--cal-windows", type=int, default=2, help="per language")
    ap.add_argument("--val-windows", type=int, default=2, help="per language")
    ap.add_argument("--budgets", default="0.03,0.06,0.12,0.25,0.5")
    ap.add_argument("--default-budget", type=float, default=0.06)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tokenizers import Tokenizer
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    tok = Tokenizer.from_file(os.path.join(args.weights, "tokenizer.json"))
    model = load_upcycled(args.weights)
    L = model.cfg.n_layer
    cal = fim_windows(os.path.join(args.corpus, "train.jsonl"), tok, args.cal_windows, args.window, args.seed)
    val = fim_windows(os.path.join(args.corpus, "val.jsonl"), tok, args.val_windows, args.window, args.seed + 1)
    log(f"data: {cal.size} calibration tokens, {val.size} validation tokens")
    os.makedirs(os.path.dirname(args.state), exist_ok=True)
    state = json.load(open(args.state)) if os.path.exists(args.state) else {}
    if state.get("weights_sha") != _weights_id(args.weights):
        state = {"weights_sha": _weights_id(args.weights), "sensitivity": {}}

    samples, inputs = record(model, cal, 2_000_000, args.seed)
    thr = [{str(s): threshold_for(samples[i], s) for s in SKIP_GRID + SENS_SKIPS} for i in range(L)]
    targets = torch.from_numpy(cal[:, 1:])
    base = tail_loss(model, inputs[0], 0, targets) if "base" not in state else state["base"]
    state["base"] = base
    log(f"calibration loss, dense: {base:.4f}")
    for i in range(L):
        if str(i) in state["sensitivity"]:
            continue
        row = {}
        for s in SENS_SKIPS:
            set_thresholds(model, [thr[i][str(s)] if j == i else 0.0 for j in range(L)])
            row[str(s)] = tail_loss(model, inputs[i], i, targets) - base
        set_thresholds(model, [0.0] * L)
        state["sensitivity"][str(i)] = row
        atomic_write_text(args.state, json.dumps(state, indent=1))
        log(f"layer {i}: Δloss at skip {SENS_SKIPS}: {[round(row[str(s)], 4) for s in SENS_SKIPS]}")
    del inputs

    # The curve on validation windows.
    dense_val, _ = loss_and_share(model, val)
    log(f"validation loss, dense: {dense_val:.4f}")
    points = []
    for b in [float(x) for x in args.budgets.split(",")]:
        skips = allocate(state["sensitivity"], L, b)
        thresholds = [threshold_for(samples[i], skips[i]) for i in range(L)]
        set_thresholds(model, thresholds)
        set_mode(model, "threshold")
        lt, shares = loss_and_share(model, val)
        set_mode(model, "uniform", keep=[max(1, round(model.cfg.d_ff * s)) for s in shares])
        lu, shares_u = loss_and_share(model, val)
        set_mode(model, "oracle")
        lo, shares_o = loss_and_share(model, val)
        set_mode(model, "threshold")
        p = {"budget": b, "skip_target": skips, "gate_thresholds": thresholds,
             "ffn_share": float(shares.mean()), "ffn_share_per_layer": [float(x) for x in shares],
             "compute_vs_dense": ffn_cost(shares),
             "compute_vs_dense_check": {"uniform": ffn_cost(shares_u), "oracle": ffn_cost(shares_o)},
             "delta_loss": {"learned": lt - dense_val, "uniform": lu - dense_val, "oracle": lo - dense_val}}
        points.append(p)
        log(f"budget {b}: compute {p['compute_vs_dense']:.3f}x dense, Δloss learned {lt - dense_val:+.4f}, "
            f"uniform {lu - dense_val:+.4f}, oracle {lo - dense_val:+.4f}")
    chosen = min(points, key=lambda p: abs(p["budget"] - args.default_budget))
    routing = {
        "version": ROUTING_VERSION,
        "source_gguf_sha256": GGUF_SHA256,
        "rule": "skip hidden unit j of layer i for a token when |silu(gate_j)| < gate_thresholds[i]",
        "n_layer": L, "d_ff": model.cfg.d_ff,
        "gate_thresholds": chosen["gate_thresholds"], "budget": chosen["budget"],
        "calibration": {"tokens": int(cal.size), "validation_tokens": int(val.size), "window": args.window,
                        "data": "FIM-formatted windows, train split (calibration) / val split (curve), "
                                "python, javascript, typescript", "dense_val_loss": dense_val,
                        "dense_cal_loss": base, "seconds": round(time.time() - t0),
                        "machine": "2-core dev VM, CPU"},
        "sensitivity": state["sensitivity"], "curve": points,
    }
    atomic_write_text(args.out, json.dumps(with_checksum(routing), indent=1) + "\n")
    log(f"wrote {args.out} (budget {chosen['budget']}, compute {chosen['compute_vs_dense']:.3f}x dense)")


def _weights_id(weights_dir: str) -> str:
    st = os.stat(os.path.join(weights_dir, "dense.safetensors"))
    return hashlib.sha256(f"{st.st_size}:{open(os.path.join(weights_dir, 'config.json')).read()}".encode()).hexdigest()


if __name__ == "__main__":
    main()
