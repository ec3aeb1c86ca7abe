"""
FIM exact match of width-routing rules in PyTorch (fp32, the converted weights, depth ℓ = 1), on
evaluate.py's cases and prompts: the dense source, the calibrated thresholds at one point of
routing.json's curve, and the oracle at the same per-token unit counts (calibrate.py's "oracle": the
units with the largest true contribution |silu(gate)·up|·‖W_down column‖). The oracle is what a
perfect per-token choice of units would give with the base weights frozen, so it says whether any
router trained on top of them could reach issue 9's target (≥ 0.97× the dense model's exact matches
at ≤ 0.75× FFN compute).

    python models/toolchain/upcycle/oracle_fim.py --weights ~/.cache/versatileffn/converted/ID \
        --point 0.2/0.6 --fim-cases 500 --seed 4321 --out models/work/eval/oracle-0.2-0.6

Resumable: every finished case is appended to OUT.jsonl (all its rules, so a cut-off run stays
paired); OUT.json and OUT.md are written at the end. --rules dense,oracle skips the thresholds (which
the ONNX evaluations measure), a third of the time. A rule asked for later on the same OUT runs on the
cases done without it, and only that rule (their row is appended again with it; the last row counts).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
sys.path.insert(0, TOOLCHAIN)
sys.path.insert(0, HERE)
from atomic import atomic_write_text  # noqa: E402
from calibrate import load_upcycled, set_mode, set_thresholds  # noqa: E402
from evaluate import (build_prompt, encode, greedy_line, load_tokenizer, load_val_docs, rows_by_id,  # noqa: E402
                      select_fim_cases, specials_of, wilson)
from measure import paired  # noqa: E402
from model import rope_tables  # noqa: E402
from routing_file import RoutingFileError, point_of  # noqa: E402

REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
RULES = ("dense", "thresholds", "oracle")


class TorchGreedy:
    """evaluate.greedy_line's interface (start / feed return the last position's logits) on the
    PyTorch model with a KV cache; records each position's share of up/down work (ffn_share)."""

    def __init__(self, model):
        self.model = model
        self.cache = None
        self.shares: list[np.ndarray] = []

    @torch.inference_mode()
    def _run(self, ids):
        # VersatileLM.forward, but the output head only at the last position (a prompt's other 332
        # rows of 151,936 logits would cost a fifth of the prefill).
        m = self.model
        past = 0 if self.cache[0] is None else self.cache[0][0].shape[2]
        cos, sin = rope_tables(m.cfg.head_dim, torch.arange(past, past + len(ids)), m.cfg.rope_theta)
        x = m.tok_emb(torch.tensor([ids]))
        shares = []
        for i, block in enumerate(m.blocks):
            x, r = block(x, cos, sin, 1.0, self.cache, i)
            shares.append(r["ffn_share"][0])
        self.shares.append(torch.stack(shares).mean(0).numpy())
        return F.linear(m.norm_f(x[0, -1]), m.head_weight()).float().numpy()

    def start(self, prompt):
        self.cache = [None] * len(self.model.blocks)
        self.shares = []
        return self._run(prompt)

    def feed(self, token):
        return self._run([token])

    def mean_share(self) -> float:
        return float(np.concatenate(self.shares).mean())


def use_rule(model, rule: str, point: dict):
    n = len(model.blocks)
    if rule == "dense":
        set_thresholds(model, [0.0] * n, [0.0] * n)
        set_mode(model, "threshold")
    else:
        set_thresholds(model, point["gate_thresholds"], point["down_thresholds"])
        set_mode(model, "threshold" if rule == "thresholds" else "oracle")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="converted weights folder (config.json, dense.safetensors)")
    ap.add_argument("--routing", default=os.path.join(HERE, "routing.json"))
    ap.add_argument("--point", default="0.2/0.6", help="gate_skip/down_skip of a point on the routing file's curve; "
                    "'own' for the file's own thresholds (e.g. train_routing.py's)")
    ap.add_argument("--val", default=os.path.join(REPO, "models", "work", "corpus", "val.jsonl"))
    ap.add_argument("--fim-cases", type=int, default=500)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--fim-context", type=int, default=384)
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--rules", default=",".join(RULES), help="which of dense,thresholds,oracle (dense always runs)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True, help="output prefix")
    args = ap.parse_args(argv)
    asked = ["dense", *[r for r in RULES[1:] if r in args.rules.split(",")]]
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        point = point_of(json.load(open(args.routing)), None if args.point == "own" else args.point)
    except RoutingFileError as e:
        raise SystemExit(f"{args.routing}: {e}") from None
    tok = load_tokenizer(os.path.join(args.weights, "tokenizer.json"))
    sp = specials_of(tok)
    cases = select_fim_cases(load_val_docs(args.val), args.fim_cases, args.seed)
    model = load_upcycled(args.weights)
    runner = TorchGreedy(model)
    out_jsonl = f"{args.out}.jsonl"
    done = rows_by_id(out_jsonl)
    t0 = time.time()
    with open(out_jsonl, "a", encoding="utf-8") as out:
        for i, c in enumerate(cases):
            row = done.get(c["id"], {"id": c["id"], "language": c["language"], "middle": c["middle"]})
            missing = [r for r in asked if r not in row]
            if not missing:
                continue
            prompt = build_prompt(encode(tok, c["prefix"]), encode(tok, c["suffix"]), args.fim_context, args.max_new, sp, "spm")
            for rule in missing:
                use_rule(model, rule, point)
                line, ids = greedy_line(runner, prompt, tok, args.max_new, sp)
                row[rule] = {"completion": line, "exact": line.strip() == c["middle"].strip(), "share": runner.mean_share()}
            out.write(json.dumps(row) + "\n")
            out.flush()
            done[c["id"]] = row
            if (i + 1) % 10 == 0:
                print(f"{i + 1}/{len(cases)} cases, {time.time() - t0:.0f} s this run", flush=True)
    rows = [done[c["id"]] for c in cases if c["id"] in done]
    n = len(rows)
    result = {"command": "python " + " ".join([os.path.relpath(__file__, REPO), *(argv or sys.argv[1:])]),
              "point": args.point, "cases": n, "seed": args.seed, "fim_context": args.fim_context, "rules": {}}
    rules = [r for r in RULES if all(r in row for row in rows)]
    for rule in rules:
        k = sum(r[rule]["exact"] for r in rows)
        share = float(np.mean([r[rule]["share"] for r in rows]))
        result["rules"][rule] = {"exact": k, "exact_rate": k / n, "ci95": wilson(k, n), "ffn_share": share,
                                 "ffn_compute_vs_dense": 1 / 3 + 2 / 3 * share}
        if rule != "dense":
            result["rules"][rule]["paired_vs_dense"] = paired([r[rule]["exact"] for r in rows], [r["dense"]["exact"] for r in rows])
    atomic_write_text(f"{args.out}.json", json.dumps(result, indent=2) + "\n")
    md = [f"# FIM exact match of width-routing rules, point {args.point}, {n} cases (seed {args.seed}), PyTorch fp32", "",
          "| rule | FFN compute vs dense | exact | vs dense | paired (only this / only dense) |", "|---|---|---|---|---|"]
    dense_k = result["rules"]["dense"]["exact"]
    for rule, r in result["rules"].items():
        pr = r.get("paired_vs_dense")
        md.append(f"| {rule} | {r['ffn_compute_vs_dense']:.3f} | {r['exact']}/{n} | {r['exact'] / max(1, dense_k):.3f} | "
                  + (f"{pr['only_first']} / {pr['only_second']} |" if pr else "– |"))
    atomic_write_text(f"{args.out}.md", "\n".join(md) + "\n\nCommand: `" + result["command"] + "`\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
