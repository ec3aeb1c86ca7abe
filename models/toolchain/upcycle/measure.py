"""
Collects the measurements the built cards show into results.json (committed, small): the
evaluate.py reports of the dense source and the upcycled model (run on the same cases), a
paired FIM comparison, and the ten fixed examples completed by each folder through the
backend CLI. build.py renders them into the model cards at set-up.

    python models/toolchain/upcycle/measure.py --dense-report models/work/eval/dense \
        --upcycled-report models/work/eval/upcycled [--examples] [--machine "..."]
    python models/toolchain/upcycle/measure.py --shipped-report models/work/eval/shipped-1234 \
        --shipped-report models/work/eval/shipped-4321   # a new shipped graph only, on the recorded cases
        [--shipped-dense-report models/work/eval/dense-1234 --shipped-dense-report ...]   # and the dense folder's
    python models/toolchain/upcycle/measure.py --engine-report models/work/eval/engine-vffn-1234-p1024 \
        --engine-report … --engine-dense-report models/work/eval/engine-dense-1234-p1024 --engine-dense-report …
        # the shipped folders as users get them (eval_engine.py reports, same seeds in the same order)
    python models/toolchain/upcycle/measure.py --examples   # the ten fixed examples, completed by the built folders
Each measurement of the upcycled model is recorded with the routing file's checksum; the card shows it only
for that routing.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
sys.path.insert(0, TOOLCHAIN)
sys.path.insert(0, HERE)
from atomic import atomic_write_text  # noqa: E402

REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
RESULTS = os.path.join(HERE, "results.json")


def summarize(report_paths: list[str]) -> tuple[dict, list]:
    """One model's measurements from one or more evaluate.py reports (FIM cases pooled; the
    loss and routing from the first report that has them)."""
    from evaluate import wilson
    reps = [json.load(open(p + ".json")) for p in report_paths]
    entries = [next(iter(r["models"].items())) for r in reps]
    # The loss from the first report that has one (none on folders with a trimmed head: evaluate.py refuses it).
    m = next((e for _, e in entries if e.get("val_loss")), entries[0][1])
    cases, exact, _ = fim_exact(report_paths)
    by_lang = {}
    for lang in ("python", "javascript", "typescript"):
        sel = [e for e, c in zip(exact, cases) if c["language"] == lang]
        by_lang[lang] = sum(sel) / len(sel) if sel else None
    loss = m.get("val_loss") or {}
    out = {"val_loss": loss["overall"]["loss"] if loss else None,
           "val_loss_by_lang": {k: v["loss"] for k, v in loss.items() if k != "overall"},
           "fim_exact": sum(exact) / len(exact), "fim_exact_ci95": wilson(sum(exact), len(exact)), "fim_n": len(exact),
           "fim_by_lang": by_lang, "compute_vs_dense": m["routing"]["compute_vs_dense"],
           "seconds_fim": sum(e["seconds_fim"] for _, e in entries),
           "settings": [r["settings"] for r in reps]}
    if m["kind"] == "upcycled":
        out["ffn_share"] = m["routing"]["ffn_share"]
        out["layers"] = m["routing"]["layers"]
    return out, exact


def fim_exact(report_paths: list[str]) -> tuple[list, list, list]:
    """One model's FIM cases pooled over reports, their exact-match flags (indentation ignored,
    as evaluate.py counts them) and the reports' seeds."""
    reps = [json.load(open(p + ".json")) for p in report_paths]
    name = next(iter(reps[0]["models"]))
    cases = [json.loads(line) for p in report_paths for line in open(p + ".fim.jsonl")]
    exact = [c["completions"][name].strip() == c["middle"].strip() for c in cases]
    return cases, exact, [r["settings"]["seed"] for r in reps]


def shipped_summary(report_paths: list[str], seeds: list, reference_exact: list | None) -> dict:
    """The shipped graph's FIM result, refused unless on the reference's cases (same seeds, in
    order); paired with the reference case by case when its flags are given."""
    from evaluate import wilson
    from build import SHIPPED_GRAPH
    _, shipped, shipped_seeds = fim_exact(report_paths)
    n = sum(x["fim_cases"] for x in (json.load(open(p + ".json"))["settings"] for p in report_paths))
    if shipped_seeds != seeds or len(shipped) != n or (reference_exact is not None and len(shipped) != len(reference_exact)):
        sys.exit(f"the shipped graph's reports (seeds {shipped_seeds}) are not on the upcycled reports' FIM cases "
                 f"(seeds {seeds})")
    out = {"graph": SHIPPED_GRAPH, "fim_exact": sum(shipped) / len(shipped),
           "fim_exact_ci95": wilson(sum(shipped), len(shipped)), "fim_n": len(shipped),
           "fim_order": fim_order(report_paths)}
    if reference_exact is not None:
        pair = paired(shipped, reference_exact)
        out["only_shipped_exact"], out["only_reference_exact"] = pair["only_first"], pair["only_second"]
    return out


def engine_summary(upcycled_paths: list[str], dense_paths: list[str], routing_sha256: str) -> dict:
    """Both shipped folders through the backend's engine (eval_engine.py reports, seeds pooled), paired
    case by case. Refused unless both ran the same seeds, case counts and prompt budget. Keyed to the
    routing file measured, so that a card never shows them for another routing."""
    from evaluate import wilson
    def pooled(paths):
        """The reports and each case's exact-match flag (first line, indentation ignored), keyed (seed, case id)."""
        reps = [json.load(open(p + ".json")) for p in paths]
        exact = {(r["seed"], row["id"]): row["completion"].split("\n", 1)[0].strip() == row["middle"].strip()
                 for p, r in zip(paths, reps) for row in (json.loads(line) for line in open(p + ".fim.jsonl"))}
        return reps, exact
    up_reps, up = pooled(upcycled_paths)
    de_reps, de = pooled(dense_paths)
    shape = lambda reps: [(r["seed"], r["fim_cases"], r["prompt_tokens"], r["max_new_tokens"]) for r in reps]  # noqa: E731
    if shape(up_reps) != shape(de_reps) or set(up) != set(de) or len(up) != sum(r["fim_cases"] for r in up_reps):
        sys.exit(f"the engine reports are not on the same cases: upcycled {shape(up_reps)}, dense {shape(de_reps)}")
    keys = sorted(up)
    pair = paired([up[k] for k in keys], [de[k] for k in keys])
    n = len(keys)
    # The routing the upcycled folder was built with (eval_engine.py copies its manifest's); reports from
    # before it did are taken to be of the routing file given.
    built_with = one_routing({(r.get("folder") or {}).get("routing_sha256") for r in up_reps}, "engine reports")
    return {"routing_sha256": built_with or routing_sha256, "seeds": [r["seed"] for r in up_reps], "fim_n": n,
            "prompt_tokens": up_reps[0]["prompt_tokens"], "max_new_tokens": up_reps[0]["max_new_tokens"],
            "upcycled": {"exact": sum(up.values()), "fim_exact_ci95": wilson(sum(up.values()), n)},
            "dense": {"exact": sum(de.values()), "fim_exact_ci95": wilson(sum(de.values()), n)},
            "paired": {"only_upcycled_exact": pair["only_first"], "only_dense_exact": pair["only_second"],
                       "both_exact": pair["both"]}}


def _sources(report_paths: list[str]) -> list[dict]:
    """Each evaluate.py report's one model entry (its source, training, fim, routing)."""
    return [next(iter(json.load(open(p + ".json"))["models"].values())) for p in report_paths]


def fim_order(report_paths: list[str]) -> str:
    """The prompt order the reports were run in (evaluate.py records the folder's fim.order;
    reports from before it did were PSM); reports in different orders are not pooled."""
    orders = {((e.get("fim") or {}).get("overall") or {}).get("fim_order", "psm") for e in _sources(report_paths)}
    if len(orders) != 1:
        sys.exit(f"the reports were run with different prompt orders ({', '.join(sorted(orders))}): not pooled")
    return orders.pop()


def paired(a: list, b: list) -> dict:
    """Case-by-case agreement of two models' exact-match flags on the same cases."""
    return {"only_first": sum(x and not y for x, y in zip(a, b)), "only_second": sum(y and not x for x, y in zip(a, b)),
            "both": sum(x and y for x, y in zip(a, b))}


def report_routing(report_paths: list[str]) -> str | None:
    """The routing file the upcycled folder of these evaluate.py reports was built with (its manifest's
    checksum, which evaluate.py copies); None for reports from before it did. Reports of two routings are refused."""
    return one_routing({((e.get("training") or {}).get("routing") or {}).get("routing_sha256")
                        for e in _sources(report_paths)}, "reports")


def one_routing(shas: set, what: str) -> str | None:
    """The one routing checksum a set of upcycled reports names (None: they predate recording it); refused if two."""
    if len(shas) > 1:
        sys.exit(f"the upcycled {what} were taken with different routing files: {sorted(str(x) for x in shas)}")
    return shas.pop()


def folders_text(report_paths: list[str]) -> str:
    """What the evaluated folders were, from the reports (weights, prompt order), e.g. for the card's settings."""
    kinds = {((e.get("source") or {}).get("weights_dtype"), (e.get("source") or {}).get("fim_order", "psm"))
             for e in _sources(report_paths)}
    if len(kinds) != 1 or None in next(iter(kinds)):
        return "ONNX model folders"
    dtype, order = kinds.pop()
    return f"ONNX model folders with {dtype} weights, prompted in {order.upper()} order"


def add_examples(results: dict, routing_sha256: str) -> None:
    """The ten fixed examples completed by both built folders through the backend CLI."""
    from card_sections import examples_section
    from build import DENSE_NAME, VFFN_NAME
    from pathlib import Path
    results["sections"] = {kind: {"Examples": examples_section(Path(REPO) / "models" / name)}
                           for kind, name in (("upcycled", VFFN_NAME), ("dense", DENSE_NAME))}
    results["sections_routing_sha256"] = routing_sha256


def this_machine() -> str:
    """E.g. "2 cores (AMD EPYC), 24 GiB, onnxruntime CPU EP", from /proc (Linux)."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        return f"{os.cpu_count()} cores ({cpu}), {round(mem / 2**20)} GiB, no GPU used, onnxruntime CPU EP"
    except (OSError, StopIteration):
        return "unknown machine, onnxruntime CPU EP"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dense-report", action="append", default=[],
                    help="evaluate.py --out path of the dense source (repeatable: FIM cases are pooled)")
    ap.add_argument("--upcycled-report", action="append", default=[],
                    help="evaluate.py --out path of the upcycled model, same runs in the same order")
    ap.add_argument("--shipped-report", action="append", default=[],
                    help="evaluate.py --out path of the shipped graph (build.py's folder), same runs in the same order")
    ap.add_argument("--shipped-dense-report", action="append", default=[],
                    help="with --shipped-report alone: the dense folder's graph on the same runs (paired with it)")
    ap.add_argument("--engine-report", action="append", default=[],
                    help="eval_engine.py --out path of the shipped upcycled folder (repeatable: seeds are pooled)")
    ap.add_argument("--engine-dense-report", action="append", default=[],
                    help="eval_engine.py --out path of the dense folder, same seeds in the same order")
    ap.add_argument("--examples", action="store_true", help="also complete the ten fixed examples (backend CLI)")
    ap.add_argument("--machine", default=this_machine(), help="how the reports name the machine (default: read here)")
    args = ap.parse_args()
    results = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    from build import ROUTING, SHIPPED_GRAPH
    # Every measurement of the upcycled model is keyed to the routing file it was taken with: the card
    # shows it for that routing only (card.py).
    routing_sha256 = json.load(open(ROUTING))["sha256"]
    if args.engine_report or args.engine_dense_report or (args.examples and not args.dense_report):
        if bool(args.engine_report) != bool(args.engine_dense_report):
            sys.exit("give --engine-report and --engine-dense-report together")
        if args.engine_report:
            results["engine"] = engine_summary(args.engine_report, args.engine_dense_report, routing_sha256)
            results["engine"]["machine"] = args.machine
            results["engine"]["graph"] = SHIPPED_GRAPH   # the card shows it for this graph recipe only
            print(json.dumps(results["engine"], indent=1))
        if args.examples:
            add_examples(results, routing_sha256)
        atomic_write_text(RESULTS, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        return
    if not args.dense_report and not args.upcycled_report and args.shipped_report:
        # A new shipped graph (e.g. other weights) on the cases results.json records; without the
        # reference's per-case reports there is no paired count.
        seeds = [x["seed"] for x in results.get("models", {}).get("upcycled", {}).get("settings", [])]
        # Keyed to the routing its folder was built with: the card shows it only for that routing.
        results["shipped"] = {**shipped_summary(args.shipped_report, seeds, None),
                              "routing_sha256": report_routing(args.shipped_report) or routing_sha256}
        results.pop("shipped_dense", None)
        if args.shipped_dense_report:
            results["shipped_dense"] = shipped_summary(args.shipped_dense_report, seeds, None)
            pair = paired(fim_exact(args.shipped_report)[1], fim_exact(args.shipped_dense_report)[1])
            results["shipped"]["paired_with_dense"] = {"only_upcycled_exact": pair["only_first"],
                                                       "only_dense_exact": pair["only_second"], "both_exact": pair["both"]}
        atomic_write_text(RESULTS, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        print(json.dumps({k: results[k] for k in ("shipped", "shipped_dense") if k in results}, indent=1))
        return
    if not args.dense_report or not args.upcycled_report:
        sys.exit("give --dense-report and --upcycled-report (or --shipped-report alone)")
    dense, dense_exact = summarize(args.dense_report)
    up, up_exact = summarize(args.upcycled_report)
    if len(dense_exact) != len(up_exact) or [x["seed"] for x in dense["settings"]] != [x["seed"] for x in up["settings"]]:
        sys.exit("the reports are not on the same FIM cases (seeds, counts and order must match)")
    pair = paired(dense_exact, up_exact)
    measured_with = report_routing(args.upcycled_report) or routing_sha256
    # A new campaign replaces the last one's lines on other graphs (they belong to its routing).
    for k in ("shipped", "shipped_dense"):
        results.pop(k, None)
    results.update({
        "machine": args.machine, "routing_sha256": measured_with,
        "models": {"dense": dense, "upcycled": up},
        "paired": {"only_dense_exact": pair["only_first"], "only_upcycled_exact": pair["only_second"],
                   "both_exact": pair["both"]},
        "fim_ratio": up["fim_exact"] / dense["fim_exact"] if dense["fim_exact"] else None,
    })
    if args.shipped_report:
        results["shipped"] = shipped_summary(args.shipped_report, [x["seed"] for x in up["settings"]], up_exact)
    s = next((x for x in dense["settings"] if x["loss_tokens_per_language"]), dense["settings"][0])
    seeds = ", ".join(str(x["seed"]) for x in dense["settings"])
    loss_text = (f"loss on {s['loss_tokens_per_language']:,} tokens per language in windows of {s.get('loss_context')}"
                 if s["loss_tokens_per_language"] else "no loss (the folders' output heads are trimmed)")
    results["settings_text"] = (
        f"Project validation split (python, javascript, typescript): {loss_text}; {dense['fim_n']} single-line FIM cases "
        f"(seeds {seeds}), prompt + 48 new tokens ≤ {s['fim_context']} tokens, greedy; exact match ignores "
        f"indentation, 95% Wilson interval. Both models are {folders_text(args.dense_report + args.upcycled_report)}, "
        f"run with onnxruntime on {args.machine}. Paired on the same cases: {results['paired']['both_exact']} both right, "
        f"{results['paired']['only_dense_exact']} only dense, {results['paired']['only_upcycled_exact']} only upcycled.")
    if args.examples:
        add_examples(results, routing_sha256)
    atomic_write_text(RESULTS, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    if measured_with != routing_sha256:
        print(f"note: the upcycled reports were taken with routing {measured_with[:8]}, not routing.json's "
              f"{routing_sha256[:8]}: the card shows them as an earlier routing's")
    print(json.dumps({k: results[k] for k in ("paired", "fim_ratio")}, indent=1))
    print(f"dense FIM {dense['fim_exact']:.3f}, upcycled {up['fim_exact']:.3f} at {up['compute_vs_dense']:.3f}x FFN "
          f"compute; wrote {RESULTS}")


if __name__ == "__main__":
    main()
