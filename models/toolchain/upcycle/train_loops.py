"""
Measures whether a second pass through a layer's FFN (the paper's depth path) helps the upcycled model,
trained with the base frozen (issue 9: "depth loops beyond one only where a measurement shows they help").

    python models/toolchain/upcycle/train_loops.py --weights DIR --steps 40 \
        [--state models/work/upcycle/train-loops-state.pt] [--routing routing.json]

Per layer: a loop gate α (starting at zero, so the untrained loop is the shipped model exactly) and a
per-token choice p = sigmoid(w·norm(H) + b) (w = 0, b = 0 at the start: every token half-chosen). The
layer's output becomes Y + p · α · FFN(norm(Y)), Y being the width-routed first loop at the routing file's
thresholds. Trained on FIM-formatted train windows, next-token cross-entropy plus --cost-weight nats per
unit of loop share (each looping token costs one more full FFN). p is soft while training; validation also
scores it hard (a token loops where p > 0.5), as the graph would run it, and with every token looping.
The state (parameters, Adam moments, history) is written after every step, so an interrupted run resumes.

The model's own depth path (model.UpcycledFFN: ℓ = argmax(depth_router(H)) + 1, loop_gate) has no bias
term, so a result worth shipping would need that added to the router; this script measures first.
"""
import argparse
import datetime
import json
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from atomic import atomic_write_text  # noqa: E402
from calibrate import REPO, _weights_id, ffn_cost, fim_windows, load_upcycled, set_thresholds  # noqa: E402
from model import UpcycledFFN  # noqa: E402
from routing_file import load_routing  # noqa: E402
from train_routing import _machine, validation_windows  # noqa: E402

ROUTING = os.path.join(HERE, "routing.json")
MODES = ("soft", "hard", "all")   # how p is used: as trained, thresholded at 0.5, 1 for every token ("off": 0)


def attach(model) -> list[torch.nn.Parameter]:
    """Gives every upcycled FFN a gated extra loop (α = 0: the model is unchanged); returns [w, b, α] per layer.
    The base weights stop needing gradients."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for block in model.blocks:
        ffn = block.ffn
        ffn.loop_w = torch.nn.Parameter(torch.zeros(model.cfg.d_model))
        ffn.loop_b = torch.nn.Parameter(torch.zeros(()))
        ffn.loop_alpha = torch.nn.Parameter(torch.zeros(()))
        ffn.loop_mode = "soft"
        ffn.forward = types.MethodType(_looped_forward, ffn)
        params += [ffn.loop_w, ffn.loop_b, ffn.loop_alpha]
    return params


def set_loop_mode(model, mode: str) -> None:
    for block in model.blocks:
        block.ffn.loop_mode = mode


def _looped_forward(self, H, tau=1.0):
    Y, aux = UpcycledFFN.forward(self, H, tau)       # the first loop, width-routed as shipped
    p = torch.sigmoid(self.ffn_norm(H) @ self.loop_w + self.loop_b)                   # [B,T]
    if self.loop_mode == "hard":
        p = (p > 0.5).float()
    elif self.loop_mode == "all":
        p = torch.ones_like(p)
    elif self.loop_mode == "off":
        p = torch.zeros_like(p)
    Y = Y + p.unsqueeze(-1) * self.loop_alpha * self.ffn(self.ffn_norm(Y))
    return Y, {**aux, "loop_share": p}                 # per token, like ffn_share


def objective(model, window: np.ndarray, cost_weight: float) -> tuple[torch.Tensor, float, float]:
    """Cross-entropy on one window plus cost_weight · the mean share of tokens looping. Returns (loss, ce, share)."""
    logits, _, aux = model(torch.from_numpy(window[None, :-1]))
    ce = F.cross_entropy(logits[0].float(), torch.from_numpy(window[1:]))
    share = torch.stack([r["loop_share"].mean() for r in aux["routing"]]).mean()
    return ce + cost_weight * share, float(ce.detach()), float(share.detach())


@torch.inference_mode()
def score(model, windows: np.ndarray) -> dict:
    """Mean next-token loss, per-layer width share and loop share over the windows."""
    tot, n = 0.0, 0
    L = len(model.blocks)
    width, loops = np.zeros(L), np.zeros(L)
    for w in windows:
        logits, _, aux = model(torch.from_numpy(w[None, :-1]))
        tot += float(F.cross_entropy(logits[0].float(), torch.from_numpy(w[1:]), reduction="sum"))
        n += len(w) - 1
        width += np.array([float(r["ffn_share"].mean()) for r in aux["routing"]]) / len(windows)
        loops += np.array([float(r["loop_share"].mean()) for r in aux["routing"]]) / len(windows)
    # A looping token runs one more full FFN in that layer (1.0 in dense-FFN units).
    return {"loss": tot / n, "compute_vs_dense": ffn_cost(width) + float(loops.mean()),
            "loop_share": float(loops.mean()), "loop_share_per_layer": [round(float(x), 4) for x in loops]}


def validate(model, params, routing: dict, val: np.ndarray, log) -> dict:
    n = len(model.blocks)
    set_loop_mode(model, "off")
    set_thresholds(model, [0.0] * n, [0.0] * n)
    out = {"tokens": int(val.size), "dense": score(model, val)}
    set_thresholds(model, routing["gate_thresholds"], routing["down_thresholds"])
    out["width_only"] = score(model, val)
    for mode in MODES:
        set_loop_mode(model, mode)
        out[mode] = score(model, val)
    set_loop_mode(model, "soft")
    for k in ("width_only", *MODES):
        out[k]["delta_vs_dense"] = out[k]["loss"] - out["dense"]["loss"]
        log(f"{k}: Δ validation loss {out[k]['delta_vs_dense']:+.4f} against dense at {out[k]['compute_vs_dense']:.3f}x "
            f"FFN compute (loop share {out[k]['loop_share']:.3f})")
    out["alpha"] = [round(float(p.detach()), 4) for p in params[2::3]]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="convert.py's folder (dense.safetensors, config.json, tokenizer.json)")
    ap.add_argument("--routing", default=ROUTING, help="the width routing the loops sit on (its own thresholds)")
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--state", default=os.path.join(REPO, "models", "work", "upcycle", "train-loops-state.pt"))
    ap.add_argument("--report", default=None, help="JSON report written at the end (default: STATE with .json)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--windows", type=int, default=4, help="train-split windows per language (cycled)")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--cost-weight", type=float, default=0.01, help="nats per unit of mean loop share")
    ap.add_argument("--lr", type=float, default=0.01, help="Adam step on α and b")
    ap.add_argument("--lr-choice", type=float, default=1e-4,
                    help="Adam step on w (896 inputs of magnitude ~1: a larger step swings every token's choice at once)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tokenizers import Tokenizer
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    routing = load_routing(args.routing, 24, 4864)
    tok = Tokenizer.from_file(os.path.join(args.weights, "tokenizer.json"))
    model = load_upcycled(args.weights)
    set_thresholds(model, routing["gate_thresholds"], routing["down_thresholds"])
    params = attach(model)
    opt = torch.optim.Adam([{"params": params[0::3], "lr": args.lr_choice},
                            {"params": params[1::3] + params[2::3], "lr": args.lr}])
    train = fim_windows(os.path.join(args.corpus, "train.jsonl"), tok, args.windows, args.window, args.seed)
    run_id = f"{_weights_id(args.weights)}:{routing['sha256']}:{args.cost_weight}:{args.lr}:{args.lr_choice}:{train.size}:{args.seed}"
    state = torch.load(args.state, weights_only=True) if os.path.exists(args.state) else {}
    if state.get("run") != run_id:
        state = {"run": run_id, "step": 0, "history": [], "seconds": 0.0}
    else:
        with torch.no_grad():
            for p, v in zip(params, state["params"]):
                p.copy_(v)
        opt.load_state_dict(state["adam"])
        log(f"resuming at step {state['step']}")
    log(f"{len(train)} train windows of {args.window}; width routing {args.routing} ({routing['sha256'][:8]})")
    while state["step"] < args.steps:
        started = time.time()
        opt.zero_grad()
        loss, ce, share = objective(model, train[state["step"] % len(train)], args.cost_weight)
        loss.backward()
        opt.step()
        state["step"] += 1
        state["history"].append([state["step"], round(ce, 5), round(share, 5)])
        state["params"] = [p.detach().clone() for p in params]
        state["adam"] = opt.state_dict()
        state["seconds"] += time.time() - started
        os.makedirs(os.path.dirname(os.path.abspath(args.state)), exist_ok=True)
        torch.save(state, args.state + ".tmp")
        os.replace(args.state + ".tmp", args.state)
        if state["step"] % 5 == 0 or state["step"] == args.steps:
            recent = state["history"][-len(train):]
            log(f"step {state['step']}: cross-entropy {np.mean([h[1] for h in recent]):.4f}, loop share "
                f"{np.mean([h[2] for h in recent]):.3f}, |α| mean {np.mean([abs(float(p)) for p in params[2::3]]):.4f}")
    val = validation_windows(routing, args.corpus, tok, args.seed)
    report = {"command": "python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
              "routing_sha256": routing["sha256"], "steps": state["step"], "train_tokens": state["step"] * args.window,
              "seconds": round(state["seconds"]), "cost_weight": args.cost_weight, "machine": _machine(),
              "date": datetime.date.today().isoformat(),
              "validation": validate(model, params, routing, val, log)}
    # Commit the report as upcycle/loops.json: the card quotes it.
    path = args.report or os.path.splitext(args.state)[0] + ".json"
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
