"""
Learns the upcycled model's width routing on the CPU: two thresholds per layer (UpcycledFFN:
a hidden unit whose |silu(gate)| is below the gate threshold is skipped for that token; of
the rest, one whose |silu(gate)·up| is below the down threshold skips the down projection),
chosen so that the end-to-end language-model loss stays within a budget.

    python models/toolchain/upcycle/calibrate.py --weights DIR --out routing.json \
        [--state models/work/upcycle/calibrate-state.json] [--budget 0.03]

DIR holds dense.safetensors + config.json + tokenizer.json (convert.py). The run:
1. Data: FIM-formatted windows (all three languages) from the corpus' train split for
   calibration, from the validation split for the curve (never the same files).
2. Thresholds: per layer and operating point (g, d) = (share of units skipped at the gate,
   share whose down projection is skipped), quantiles of |silu(gate)| and of |silu(gate)·up|
   over the calibration tokens.
3. Budget: each point's loss increase on the calibration windows; the default is the
   cheapest point within --budget nats.
4. Curve, on validation windows, at every point: the thresholds against a uniform baseline
   (every token keeps the same number of units per layer, its largest gates, then its
   largest activations) and an oracle (per token the same counts, the units with the largest
   true contribution |silu(gate)·up|·‖W_down column‖), each at the same compute.
Each point's result is saved as it completes: an interrupted run resumes where it stopped.
The routing file written is small (48 floats and the curve) and is committed.
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
from eval_models import upcycled_cost  # noqa: E402
from convert import load_converted  # noqa: E402
from model import VersatileLM  # noqa: E402
from routing_file import ROUTING_VERSION, with_checksum  # noqa: E402
from source import GGUF_SHA256  # noqa: E402

REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
LANGS = ("python", "javascript", "typescript")


def load_upcycled(weights_dir: str) -> VersatileLM:
    return load_converted(weights_dir, ffn_kind="upcycled")


# ----------------------------------------------------------------------------- data
def fim_windows(jsonl: str, tok, n_per_lang: int, T: int, seed: int) -> np.ndarray:
    """[n, T+1] token windows from a corpus split (fim_windows_from)."""
    with open(jsonl, encoding="utf-8") as f:
        return fim_windows_from((json.loads(line) for line in f), tok, n_per_lang, T, seed)


def fim_windows_from(records, tok, n_per_lang: int, T: int, seed: int) -> np.ndarray:
    """[n, T+1] token windows: whole files ({language, text} records) turned into PSM FIM
    documents at a random line (as the editor asks), concatenated per language with
    <|endoftext|>, cut into windows."""
    sp = {n: tok.token_to_id(n) for n in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>")}
    rng = random.Random(seed)
    by_lang = {lang: [] for lang in LANGS}
    for r in records:
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
        if len(stream) < n_per_lang * (T + 1):
            raise ValueError(f"{lang}: {len(stream)} tokens of text, {n_per_lang} windows of {T + 1} need more")
        out.append(np.asarray(stream[:n_per_lang * (T + 1)], np.int64).reshape(n_per_lang, T + 1))
    return np.concatenate(out)


# ----------------------------------------------------------------------------- FFN modes
def set_mode(model, mode: str, **kw):
    """Switches every layer's FFN: "threshold" (the model's own rule), "record" (dense, hands
    |act| and |act·up| to kw["sink"]), "uniform" (every token keeps kw["keep"][i] = (n_up,
    n_down) units: its largest |act|, then of those its largest |act·up|), "oracle" (per token
    the counts the thresholds keep, chosen by true contribution)."""
    for i, block in enumerate(model.blocks):
        ffn = block.ffn
        ffn.mode, ffn.layer, ffn.kw = mode, i, kw
        if not hasattr(ffn, "_orig_forward"):
            ffn._orig_forward = ffn.forward
            ffn.forward = types.MethodType(_mode_forward, ffn)


def _top(score, n):
    """Bool mask of the n largest entries of score per row; n is an int or a [.., 1] tensor."""
    if isinstance(n, int):
        return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, score.topk(n, dim=-1).indices, True)
    return score.argsort(-1, descending=True).argsort(-1) < n


def _mode_forward(self, H, tau=1.0):
    if self.mode == "threshold":
        return self._orig_forward(H, tau)
    gate, up = self.ffn.w_in(self.ffn_norm(H)).split(self.cfg.d_ff, dim=-1)
    act = F.silu(gate)
    hidden = act * up
    if self.mode == "record":
        self.kw["sink"](self.layer, act.abs(), hidden.abs())
        keep_up = keep_down = torch.ones_like(act, dtype=torch.bool)
    elif self.mode == "uniform":
        n_up, n_down = self.kw["keep"][self.layer]
        keep_up = _top(act.abs(), n_up)
        keep_down = keep_up & _top(torch.where(keep_up, hidden.abs(), -1.0), n_down)
    elif self.mode == "oracle":
        keep_up_t = act.abs() >= self.gate_threshold
        n_up = keep_up_t.sum(-1, keepdim=True)
        n_down = (keep_up_t & ((act * keep_up_t * up).abs() >= self.down_threshold)).sum(-1, keepdim=True)
        contribution = hidden.abs() * self.ffn.w_out.weight.norm(dim=0)
        keep_up, keep_down = _top(contribution, n_up), _top(contribution, n_down)
    else:
        raise ValueError(self.mode)
    Y = H + self.ffn.w_out(hidden * keep_down)
    share = (keep_up.float().mean(-1) + keep_down.float().mean(-1)) / 2
    return Y, {"loops": torch.ones(H.shape[:-1], dtype=torch.long), "ffn_share": share,
               "up_share": keep_up.float().mean(-1)}


def set_thresholds(model, gate, down):
    for block, g, d in zip(model.blocks, gate, down):
        block.ffn.gate_threshold.fill_(float(g))
        block.ffn.down_threshold.fill_(float(d))


@torch.inference_mode()
def loss_and_share(model, windows: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean next-token loss, and per layer the mean share of FFN work done and of units whose
    up projection is done, over the windows."""
    tot, n = 0.0, 0
    shares, ups = np.zeros(model.cfg.n_layer), np.zeros(model.cfg.n_layer)
    for w in windows:
        logits, _, aux = model(torch.from_numpy(w[None, :-1]))
        tot += float(F.cross_entropy(logits[0].float(), torch.from_numpy(w[1:]), reduction="sum"))
        n += len(w) - 1
        shares += np.array([float(r["ffn_share"].mean()) for r in aux["routing"]])
        ups += np.array([float(r["up_share"].mean()) for r in aux["routing"]])
    return tot / n, shares / len(windows), ups / len(windows)


def ffn_cost(shares) -> float:
    """Mean FFN cost in dense-FFN units over layers (eval_models.upcycled_cost, one loop)."""
    return float(np.mean(upcycled_cost(np.asarray(shares), 1)))


# ----------------------------------------------------------------------------- steps
POINTS = [(0.1, 0.4), (0.2, 0.5), (0.2, 0.6), (0.3, 0.6), (0.3, 0.7), (0.4, 0.8)]   # (gate skip, down skip)


def record(model, windows: np.ndarray, per_layer: int, seed: int):
    """Per layer: random samples of |silu(gate)| and of |silu(gate)·up| (the same positions)."""
    L = model.cfg.n_layer
    g = torch.Generator().manual_seed(seed)
    acts, hids = [[] for _ in range(L)], [[] for _ in range(L)]

    def sink(i, a, h):
        idx = torch.randint(0, a.numel(), (per_layer // len(windows),), generator=g)
        acts[i].append(a.reshape(-1)[idx])
        hids[i].append(h.reshape(-1)[idx])
    set_mode(model, "record", sink=sink)
    with torch.inference_mode():
        for w in windows:
            model(torch.from_numpy(w[None, :-1]))
    set_mode(model, "threshold")
    return [torch.cat(a) for a in acts], [torch.cat(h) for h in hids]


def quantile(sample: torch.Tensor, q: float) -> float:
    if q <= 0:
        return 0.0
    return float(sample.kthvalue(max(1, int(q * sample.numel()))).values)


def thresholds_for(acts, hids, gate_skip: float, down_skip: float):
    """Per layer: the gate threshold skipping gate_skip of the units, and the down threshold
    that, among the units the gate keeps, skips enough to reach down_skip overall."""
    gate, down = [], []
    for a, h in zip(acts, hids):
        tg = quantile(a, gate_skip)
        rest = max(0.0, (down_skip - gate_skip) / max(1e-9, 1 - gate_skip))
        gate.append(tg)
        down.append(quantile(h[a >= tg], rest) if rest > 0 else 0.0)
    return gate, down


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--state", default=os.path.join(REPO, "models", "work", "upcycle", "calibrate-state.json"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--cal-windows", type=int, default=1, help="per language")
    ap.add_argument("--val-windows", type=int, default=2, help="per language")
    ap.add_argument("--budget", type=float, default=0.03, help="nats of calibration loss the routing may cost")
    ap.add_argument("--max-compute", type=float, default=0.75, help="the default point must cost at most this")
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
    run_id = f"{_weights_id(args.weights)}:{cal.size}:{val.size}:{args.seed}:v2"
    state = json.load(open(args.state)) if os.path.exists(args.state) else {}
    if state.get("run") != run_id:
        state = {"run": run_id, "points": {}}
    acts, hids = record(model, cal, 2_000_000, args.seed)
    if "dense" not in state:
        set_thresholds(model, [0.0] * L, [0.0] * L)
        t = time.time()
        state["dense"] = {"cal": loss_and_share(model, cal)[0], "val": loss_and_share(model, val)[0]}
        state["dense"]["seconds"] = round(time.time() - t)
        atomic_write_text(args.state, json.dumps(state, indent=1))
    dense_cal, dense_val = state["dense"]["cal"], state["dense"]["val"]
    log(f"dense loss: calibration {dense_cal:.4f}, validation {dense_val:.4f}")
    for g, d in POINTS:
        key = f"{g},{d}"
        if key in state["points"]:
            continue
        t = time.time()
        gate, down = thresholds_for(acts, hids, g, d)
        set_thresholds(model, gate, down)
        set_mode(model, "threshold")
        lc = loss_and_share(model, cal)[0]
        lt, shares, ups = loss_and_share(model, val)
        downs = 2 * shares - ups
        set_mode(model, "uniform", keep=[(max(1, round(model.cfg.d_ff * u)), max(1, round(model.cfg.d_ff * k)))
                                         for u, k in zip(ups, downs)])
        lu, shares_u, _ = loss_and_share(model, val)
        set_mode(model, "oracle")
        lo, shares_o, _ = loss_and_share(model, val)
        set_mode(model, "threshold")
        state["points"][key] = {
            "gate_skip": g, "down_skip": d, "gate_thresholds": gate, "down_thresholds": down,
            "delta_cal": lc - dense_cal, "ffn_share": float(shares.mean()),
            "up_kept": float(ups.mean()), "down_kept": float(downs.mean()),
            "ffn_share_per_layer": [float(x) for x in shares], "compute_vs_dense": ffn_cost(shares),
            "compute_check": {"uniform": ffn_cost(shares_u), "oracle": ffn_cost(shares_o)},
            "delta_loss": {"learned": lt - dense_val, "uniform": lu - dense_val, "oracle": lo - dense_val},
            "seconds": round(time.time() - t)}
        atomic_write_text(args.state, json.dumps(state, indent=1))
        p = state["points"][key]
        log(f"gate {g} down {d}: compute {p['compute_vs_dense']:.3f}x dense; Δ calibration {p['delta_cal']:+.4f}; "
            f"Δ validation learned {lt - dense_val:+.4f}, uniform {lu - dense_val:+.4f}, oracle {lo - dense_val:+.4f}")
    points = [state["points"][f"{g},{d}"] for g, d in POINTS]
    within = [p for p in points if p["delta_cal"] <= args.budget and p["compute_vs_dense"] <= args.max_compute]
    if not within:
        sys.exit(f"no operating point costs at most {args.max_compute}x dense within {args.budget} nats; "
                 f"points: {[(p['gate_skip'], p['down_skip'], round(p['delta_cal'], 4)) for p in points]}")
    chosen = min(within, key=lambda p: p["compute_vs_dense"])
    routing = {
        "version": ROUTING_VERSION,
        "source_gguf_sha256": GGUF_SHA256,
        "rule": "per token and layer i: skip unit j's up and down projections when |silu(gate_j)| < gate_thresholds[i]; "
                "of the rest, skip its down projection when |silu(gate_j)·up_j| < down_thresholds[i]",
        "n_layer": L, "d_ff": model.cfg.d_ff,
        "gate_thresholds": chosen["gate_thresholds"], "down_thresholds": chosen["down_thresholds"],
        "gate_skip": chosen["gate_skip"], "down_skip": chosen["down_skip"], "budget": args.budget,
        "calibration": {"tokens": int(cal.size), "validation_tokens": int(val.size), "window": args.window,
                        "data": "FIM-formatted windows, train split (calibration) / val split (curve), "
                                "python, javascript, typescript", "dense_val_loss": dense_val,
                        # measuring time over every run that contributed (a resumed run adds to it)
                        "dense_cal_loss": dense_cal, "seconds": state["dense"].get("seconds", 0)
                        + sum(p.get("seconds", 0) for p in points) + round(time.time() - t0),
                        "machine": "2-core dev VM, CPU", "date": time.strftime("%Y-%m-%d")},
        "curve": points,
    }
    atomic_write_text(args.out, json.dumps(with_checksum(routing), indent=1) + "\n")
    log(f"wrote {args.out}: gate skip {chosen['gate_skip']}, down skip {chosen['down_skip']}, "
        f"compute {chosen['compute_vs_dense']:.3f}x dense")


def _weights_id(weights_dir: str) -> str:
    st = os.stat(os.path.join(weights_dir, "dense.safetensors"))
    return hashlib.sha256(f"{st.st_size}:{open(os.path.join(weights_dir, 'config.json')).read()}".encode()).hexdigest()


if __name__ == "__main__":
    main()
