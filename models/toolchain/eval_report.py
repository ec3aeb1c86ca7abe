"""Markdown table and files written by evaluate.py (JSON, markdown, per-case FIM completions)."""
import json
import os

from atomic import atomic_write_text

LANGS = ("python", "javascript", "typescript")


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(report: dict) -> str:
    models = report["models"]
    names = list(models)
    s = report["settings"]
    rows: list[tuple[str, list[str]]] = []

    def row(label, fn):
        vals = []
        for n in names:
            try:
                vals.append(fn(models[n]))
            except (KeyError, TypeError):
                vals.append("–")
        rows.append((label, vals))

    row("kind", lambda e: e["kind"])
    row("parameters", lambda e: f"{e['parameters']:,}")
    row("training tokens", lambda e: f"{e['training']['tokens']:,}")
    row("context length", lambda e: str(e["context_length"]))
    for lang in (*LANGS, "overall"):
        row(f"val loss, {lang}", lambda e, lang=lang: f"{e['val_loss'][lang]['loss']:.4f}"
            + (f" ± {e['val_loss'][lang]['loss_se']:.3f}" if e["val_loss"][lang].get("loss_se") else ""))
    for lang in ("overall", *LANGS):
        label = "FIM exact match" + ("" if lang == "overall" else f", {lang}")
        row(label, lambda e, lang=lang: f"{_pct(e['fim'][lang]['exact'])} "
            f"({_pct(e['fim'][lang]['exact_ci95'][0])}–{_pct(e['fim'][lang]['exact_ci95'][1])})")
    row("FIM exact match, strict (indentation)", lambda e: _pct(e["fim"]["overall"]["strict"]))
    row("FIM mean prompt / generated tokens", lambda e: f"{e['fim']['overall']['mean_prompt_tokens']:.0f} / "
        f"{e['fim']['overall']['mean_generated_tokens']:.1f}")
    row("mean loops per layer", lambda e: f"{e['routing']['mean_loops']:.2f}" if e["kind"] in ("versatile", "upcycled")
        else ("1" if e["kind"] == "dense" else str(e["routing"]["compute_vs_dense"])))
    row("share of tokens at ℓ=1/2/3/4", lambda e: " / ".join(f"{x:.2f}" for x in e["routing"]["loop_share"]))
    row("expert share min–max (over layers)",
        lambda e: f"{_pct(e['routing']['expert_share_min'])}–{_pct(e['routing']['expert_share_max'])}")
    row("FFN units used per token (upcycled)", lambda e: _pct(e["routing"]["ffn_share"]))
    row("FFN compute per token vs dense", lambda e: f"{e['routing']['compute_vs_dense']:.2f}×")
    row("FFN compute per token vs always-4-loops", lambda e: f"{e['routing']['compute_vs_4loop']:.2f}×")

    first = next(iter(models.values()), {})
    n_loss = first.get("val_loss", {}).get("overall", {}).get("tokens", 0)
    lines = [f"Validation split, {s['loss_tokens_per_language']:,} tokens per language cap "
             f"({n_loss:,} scored tokens for the first model), {s['fim_cases']} FIM cases "
             f"(seed {s['seed']}). Loss ± its standard error over windows (rough: windows of a file are "
             f"correlated); FIM exact match ignores indentation, 95% Wilson interval in brackets.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(vals) + " |" for label, vals in rows]
    if report.get("fim_paired"):
        lines += ["", "Paired FIM (same cases): " + "; ".join(
            f"{k}: {v['only_first_exact']} only first, {v['only_second_exact']} only second, "
            f"{v['both_exact']} both" for k, v in report["fim_paired"].items()) + "."]
    for n in names:
        r = models[n]["routing"]
        if r.get("kind") == "upcycled":
            lines += ["", f"Routing of {n} ({r['tokens']:,} validation tokens): share of FFN units used and "
                      "FFN compute (1/3 gate + 2/3 × share + extra loops) per layer; ℓ = 1 share.", "",
                      "| layer | units used | compute vs dense | ℓ = 1 |", "|---|---|---|---|"]
            lines += [f"| {la['layer']} | {_pct(la['ffn_share'])} | {la['compute_vs_dense']:.3f}× | "
                      f"{la['loop_share'][0]:.2f} |" for la in r["layers"]]
            lines.append(f"| all | {_pct(r['ffn_share'])} | {r['compute_vs_dense']:.3f}× | {r['loop_share'][0]:.2f} |")
        if r.get("kind") != "versatile":
            continue
        lines += ["", f"Routing of {n} ({r['tokens']:,} validation tokens, eval mode, ℓ = argmax; "
                  f"expert share among tokens with ℓ < 4):", "",
                  "| layer | mean ℓ | ℓ=1 | ℓ=2 | ℓ=3 | ℓ=4 | compute vs dense | expert share min | max "
                  "| unused experts |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for la in r["layers"]:
            unused = "– (all ℓ=4)" if la["experts_unused"] is None else str(la["experts_unused"])
            shares = " | ".join(f"{x:.3f}" for x in la["loop_share"])
            lines.append(f"| {la['layer']} | {la['mean_loops']:.2f} | {shares}"
                         + f" | {la['compute_vs_dense']:.2f}× | {_pct(la['expert_share_min'])} | "
                           f"{_pct(la['expert_share_max'])} | {unused} |")
        lines.append(f"| all | {r['mean_loops']:.2f} | " + " | ".join(f"{x:.3f}" for x in r["loop_share"])
                     + f" | {r['compute_vs_dense']:.2f}× | {_pct(r['expert_share_min'])} | "
                       f"{_pct(r['expert_share_max'])} | |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    md = markdown(report)
    preds = report.pop("predictions", {})
    cases = report["fim_cases"]
    # The generated ids too: head.py --check counts the completions a trimmed output head can change.
    fim_lines = [json.dumps({**c, "completions": {n: p[i]["completion"] for n, p in preds.items()},
                             "ids": {n: p[i]["ids"] for n, p in preds.items() if "ids" in p[i]}},
                            ensure_ascii=False) for i, c in enumerate(cases)]
    atomic_write_text(out + ".fim.jsonl", "\n".join(fim_lines) + ("\n" if fim_lines else ""))
    report = dict(report, fim_cases=f"{os.path.basename(out)}.fim.jsonl")
    atomic_write_text(out + ".json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out + ".md", md)
    return md
