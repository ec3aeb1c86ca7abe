"""
Trains the upcycled model's width routing end to end against the language-model loss, base frozen
(issue 9: calibration alone chooses each layer's thresholds by quantiles; this lets the loss choose
how much each layer skips). The trained parameters are the same 48 numbers the graph already takes
(a gate and a down threshold per layer, as log-thresholds), so a result exports with no format change.

    python models/toolchain/upcycle/train_routing.py --weights DIR --steps 200 \
        [--state models/work/upcycle/train-routing-state.json] [--target 0.735] \
        [--out models/work/upcycle/routing-trained.json]

How: the forward pass is exactly the shipped rule (hard masks); the backward pass sees each mask as
sigmoid((score − t) / (temperature · t)) (a straight-through estimate), so the loss can move t. The loss
is the next-token cross-entropy on FIM-formatted windows of the train split plus a penalty that holds the
mean FFN cost (1/3 + 2/3 · share) at --target. It starts from routing.json's chosen point.
One window per step; the state (thresholds, Adam moments, history) is written after every step, so an
interrupted run resumes where it stopped. At the end (or with --steps equal to the state's step) it
scores the trained and the starting thresholds on calibrate.py's validation windows: Δ loss against the
dense source (measured there too) at the compute each reaches, and writes the trained thresholds as a
routing file (--out: the starting file with its thresholds replaced and a "trained" record, whose point
export_point.py exports and oracle_fim.py --point own scores).
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
from calibrate import REPO, _weights_id, ffn_cost, fim_windows, load_upcycled, loss_and_share, set_thresholds  # noqa: E402
from routing_file import chosen_point, load_routing, with_checksum  # noqa: E402

ROUTING = os.path.join(HERE, "routing.json")


def attach(model, gate: list[float], down: list[float], temperature: float) -> list[torch.nn.Parameter]:
    """Gives every upcycled FFN learnable log-thresholds (starting at gate/down) and the straight-through
    forward; returns the parameters, [gate_0, down_0, gate_1, ...]. The base weights stop needing gradients."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for block, g, d in zip(model.blocks, gate, down):
        ffn = block.ffn
        ffn.log_tg = torch.nn.Parameter(torch.tensor(float(np.log(max(g, 1e-8)))))
        ffn.log_td = torch.nn.Parameter(torch.tensor(float(np.log(max(d, 1e-8)))))
        ffn.temperature = temperature
        ffn.forward = types.MethodType(_straight_through_forward, ffn)
        params += [ffn.log_tg, ffn.log_td]
    return params


def _straight_through(score, t, temperature):
    """The hard mask score >= t in the forward pass, a sigmoid's gradient in the backward pass."""
    soft = torch.sigmoid((score - t) / (temperature * t))
    return (score >= t).float() + soft - soft.detach()


def _straight_through_forward(self, H, tau=1.0):
    gate, up = self.ffn.w_in(self.ffn_norm(H)).split(self.cfg.d_ff, dim=-1)
    act = F.silu(gate)
    keep_up = _straight_through(act.abs(), self.log_tg.exp(), self.temperature)
    hidden = act * keep_up * up
    keep_down = keep_up * _straight_through(hidden.abs(), self.log_td.exp(), self.temperature)
    Y = H + self.ffn.w_out(hidden * keep_down)
    up_share = keep_up.mean(-1)
    return Y, {"loops": torch.ones(H.shape[:-1], dtype=torch.long), "ffn_share": (up_share + keep_down.mean(-1)) / 2,
               "up_share": up_share}


def objective(model, window: np.ndarray, target: float, weight: float) -> tuple[torch.Tensor, float, float]:
    """Cross-entropy on one window plus weight · (|cost − target| + 10 · its square): the cost is held at the
    target, not below it, so that the trained and the starting thresholds compare at the same compute.
    Returns (loss, ce, cost)."""
    ids = torch.from_numpy(window[None, :-1])
    logits, _, aux = model(ids)
    ce = F.cross_entropy(logits[0].float(), torch.from_numpy(window[1:]))
    share = torch.stack([r["ffn_share"].mean() for r in aux["routing"]])
    cost = (1 / 3 + 2 / 3 * share).mean()
    off = (cost - target).abs()
    return ce + weight * (off + 10 * off ** 2), float(ce.detach()), float(cost.detach())


def thresholds(params) -> tuple[list[float], list[float]]:
    values = [float(p.detach().exp()) for p in params]
    return values[0::2], values[1::2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="convert.py's folder (dense.safetensors, config.json, tokenizer.json)")
    ap.add_argument("--routing", default=ROUTING, help="the starting thresholds: this routing file's chosen point")
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--state", default=os.path.join(REPO, "models", "work", "upcycle", "train-routing-state.json"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "work", "upcycle", "routing-trained.json"),
                    help="the trained routing file written at the end")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--windows", type=int, default=8, help="train-split windows per language (cycled)")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--target", type=float, default=None, help="FFN cost to hold (default: the starting point's)")
    ap.add_argument("--weight", type=float, default=2.0, help="nats per unit of FFN cost above --target")
    ap.add_argument("--lr", type=float, default=0.02, help="Adam step on the log-thresholds")
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from tokenizers import Tokenizer
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    start = load_routing(args.routing, 24, 4864)
    point = chosen_point(start)
    if args.target is None and point is None:
        sys.exit(f"{args.routing}: its chosen point is not on its curve; pass --target")
    target = args.target if args.target is not None else point["compute_vs_dense"]
    tok = Tokenizer.from_file(os.path.join(args.weights, "tokenizer.json"))
    model = load_upcycled(args.weights)
    params = attach(model, start["gate_thresholds"], start["down_thresholds"], args.temperature)
    opt = torch.optim.Adam(params, lr=args.lr)
    cal = fim_windows(os.path.join(args.corpus, "train.jsonl"), tok, args.windows, args.window, args.seed)
    run_id = f"{_weights_id(args.weights)}:{start['sha256']}:{target}:{args.weight}:{args.lr}:{args.temperature}:{cal.size}:{args.seed}"
    state = json.load(open(args.state)) if os.path.exists(args.state) else {}
    if state.get("run") != run_id:
        state = {"run": run_id, "step": 0, "history": []}
    else:
        with torch.no_grad():
            for p, v in zip(params, state["log_thresholds"]):
                p.fill_(v)
        _load_adam(opt, state["adam"])
        log(f"resuming at step {state['step']}")
    log(f"{len(cal)} train windows of {args.window}; holding FFN cost at {target:.3f}")
    while state["step"] < args.steps:
        step_start = time.time()
        w = cal[state["step"] % len(cal)]
        opt.zero_grad()
        loss, ce, cost = objective(model, w, target, args.weight)
        loss.backward()
        opt.step()
        state["step"] += 1
        state["history"].append([state["step"], round(ce, 5), round(cost, 5)])
        state["log_thresholds"] = [float(p.detach()) for p in params]
        state["adam"] = _adam_json(opt, params)
        state["seconds"] = state.get("seconds", 0.0) + time.time() - step_start
        os.makedirs(os.path.dirname(os.path.abspath(args.state)), exist_ok=True)
        atomic_write_text(args.state, json.dumps(state))
        if state["step"] % 5 == 0 or state["step"] == args.steps:
            recent = state["history"][-len(cal):]
            log(f"step {state['step']}: cross-entropy {np.mean([h[1] for h in recent]):.4f}, "
                f"FFN cost {np.mean([h[2] for h in recent]):.3f} (mean of the last {len(recent)} windows)")
    state["validation"] = validate(model, params, start, tok, args, log)
    atomic_write_text(args.state, json.dumps(state))
    doc = trained_routing(start, state, args, target, len(cal))
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    log(f"wrote {args.out} (sha256 {doc['sha256'][:8]})")
    v = state["validation"]   # printed without the per-layer lists
    print(json.dumps({"dense_loss": v["dense_loss"], "tokens": v["tokens"],
                      **{k: {m: v[k][m] for m in ("delta_loss", "compute_vs_dense")} for k in ("trained", "start")}}, indent=1))


def trained_routing(start: dict, state: dict, args, target: float, n_windows: int) -> dict:
    """The starting routing file with the trained thresholds in place and a record of how they were trained
    and what they measured (routing_file.chosen_point returns its point)."""
    v = state["validation"]
    t = v["trained"]
    body = {k: x for k, x in start.items() if k not in ("sha256", "trained")}
    return with_checksum({**body, "gate_thresholds": t["gate_thresholds"], "down_thresholds": t["down_thresholds"],
                          "trained": {"from_sha256": start["sha256"], "steps": state["step"],
                                      "train_tokens": state["step"] * args.window, "windows": n_windows,
                                      "window": args.window, "target_compute": target, "weight": args.weight,
                                      "lr": args.lr, "temperature": args.temperature,
                                      "seconds": round(state["seconds"]) if "seconds" in state else None, "machine": _machine(),
                                      "date": datetime.date.today().isoformat(),
                                      "point": {**t, "dense_val_loss": v["dense_loss"], "validation_tokens": v["tokens"],
                                                "start_delta_loss": v["start"]["delta_loss"],
                                                "start_compute_vs_dense": v["start"]["compute_vs_dense"]}}})


def _machine() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "CPU")
    except OSError:
        cpu = "CPU"
    return f"{os.cpu_count()}-core dev VM, {cpu}"


@torch.inference_mode()
def validate(model, params, start: dict, tok, args, log) -> dict:
    """The trained and the starting thresholds, hard, on calibrate.py's validation windows."""
    val = validation_windows(start, args.corpus, tok, args.seed)
    trained_gate, trained_down = thresholds(params)
    for block in model.blocks:   # the model's own rule, as exported
        block.ffn.__dict__.pop("forward", None)
    # The dense loss on these windows, here: a corpus rebuilt on another machine can cut other windows
    # than the ones routing.json's curve was measured on.
    n = len(model.blocks)
    set_thresholds(model, [0.0] * n, [0.0] * n)
    dense = loss_and_share(model, val)[0]
    out = {"dense_loss": dense, "tokens": int(val.size)}
    for name, (g, d) in {"trained": (trained_gate, trained_down),
                         "start": (start["gate_thresholds"], start["down_thresholds"])}.items():
        set_thresholds(model, g, d)
        loss, shares, _ = loss_and_share(model, val)
        out[name] = {"delta_loss": loss - dense, "compute_vs_dense": ffn_cost(shares),
                     "ffn_share_per_layer": [float(x) for x in shares], "gate_thresholds": g, "down_thresholds": d}
        log(f"{name}: Δ validation loss {out[name]['delta_loss']:+.4f} at {out[name]['compute_vs_dense']:.3f}x FFN compute "
            f"({val.size} tokens)")
    return out


def validation_windows(routing: dict, corpus: str, tok, seed: int) -> np.ndarray:
    """The val-split windows of the size and number the routing file's calibration measured its curve on."""
    cal = routing["calibration"]
    return fim_windows(os.path.join(corpus, "val.jsonl"), tok, cal["validation_tokens"] // (3 * (cal["window"] + 1)),
                       cal["window"], seed + 1)


def _adam_json(opt, params) -> list:
    st = [opt.state.get(p, {}) for p in params]
    return [{"step": float(s["step"]), "exp_avg": float(s["exp_avg"]), "exp_avg_sq": float(s["exp_avg_sq"])} if s else {}
            for s in st]


def _load_adam(opt, saved: list) -> None:
    """Puts the saved moments (one scalar parameter each) back into the optimizer."""
    sd = opt.state_dict()
    sd["state"] = {i: {"step": torch.tensor(s["step"]), "exp_avg": torch.tensor(s["exp_avg"]),
                       "exp_avg_sq": torch.tensor(s["exp_avg_sq"])} for i, s in enumerate(saved) if s}
    opt.load_state_dict(sd)


if __name__ == "__main__":
    main()
