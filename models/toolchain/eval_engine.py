"""
FIM exact match of what the product returns: evaluate.py's cases (same corpus, seed and
selection) sent through the backend's own engine (`node dist/cli.js complete --jsonl`:
prompt budget, SPM order, token healing, drafts, stop rules, post-processing), where
evaluate.py runs the graph in Python with a plain greedy loop. Scored as evaluate.py scores:
the completion's first line against the case's line, indentation ignored.

    python models/toolchain/eval_engine.py --model models/qwen2.5-coder-0.5b-vffn \
        --fim-cases 500 --seed 4321 --out models/work/eval/engine-vffn-4321 \
        [--reference models/work/eval/spm-vffn-4321]

--prompt-tokens fixes the engine's prompt budget (VFFN_MAX_PROMPT_TOKENS) so both evaluations
see prompts of the same size (evaluate.py --fim-context 384 with 48 new tokens: 333).
--reference pairs the result case by case with a report on the same cases: evaluate.py's, or another
run of this script (the dense source through the engine, say).
Writes PREFIX.json, PREFIX.md and PREFIX.fim.jsonl. Resumable: cases already in
PREFIX.fim.jsonl are not run again.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "upcycle"))
from atomic import atomic_write_text  # noqa: E402
from evaluate import LANGS, fim_summary, load_val_docs, rows_by_id, select_fim_cases  # noqa: E402
from measure import paired  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def run_engine(model: str, cases: list[dict], max_new: int, prompt_tokens: int, done: dict, out_jsonl: str,
               log=print) -> None:
    """Sends the cases not in `done` through the CLI, appending each result to out_jsonl as it comes."""
    todo = [c for c in cases if c["id"] not in done]
    if not todo:
        return
    env = {**os.environ, "VFFN_MAX_PROMPT_TOKENS": str(prompt_tokens)}
    cli = [ "node", os.path.join(REPO, "dist", "cli.js"), "complete", "--jsonl", "--model", model]
    proc = subprocess.Popen(cli, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    with open(out_jsonl, "a", encoding="utf-8") as out:
        for i, c in enumerate(todo):
            # One request at a time: the engine answers the newest request first, so a queue would supersede.
            req = {"prefix": c["prefix"], "suffix": c["suffix"], "language": c["language"], "maxTokens": max_new,
                   "maxTimeMs": 60_000}
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
            r = json.loads(proc.stdout.readline())
            row = {"id": c["id"], "language": c["language"], "file": c["file"], "offset": c["offset"],
                   "middle": c["middle"], "completion": r.get("completion", ""), "error": r.get("error"),
                   "stopReason": r.get("stopReason"), "promptTokens": r.get("timings", {}).get("promptTokens")}
            out.write(json.dumps(row) + "\n")
            out.flush()
            done[c["id"]] = row
            if (i + 1) % 25 == 0:
                log(f"{i + 1}/{len(todo)} cases, {time.time() - t0:.0f} s")
    proc.stdin.close()
    proc.wait(timeout=120)


def folder_info(model: str) -> dict:
    """What was evaluated, from the folder's manifest: its weights, prompt order and the routing file it was
    built with (upcycled folders), so that a report can be matched to a build later."""
    try:
        m = json.load(open(os.path.join(model, "manifest.json"), encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return {"name": m.get("name"), "weights_dtype": (m.get("graph") or {}).get("weights_dtype"),
            "fim_order": (m.get("fim") or {}).get("order"),
            "routing_sha256": ((m.get("training") or {}).get("routing") or {}).get("routing_sha256")}


def reference_lines(prefix: str) -> tuple[str, str, dict]:
    """The first line each case got in a reference report on the same cases: an evaluate.py report
    (rows with `completions` by model) or another run of this script (rows with the engine's `completion`,
    e.g. the dense source through the engine). Returns (model, which tool, {case id: line})."""
    rows = rows_by_id(prefix + ".fim.jsonl")
    if not rows:
        raise SystemExit(f"{prefix}.fim.jsonl: no such report (or empty)")
    first = next(iter(rows.values()))
    if "completions" in first:
        name = next(iter(first["completions"]))
        return name, "evaluate.py", {i: r["completions"][name] for i, r in rows.items()}
    meta = json.load(open(prefix + ".json")) if os.path.exists(prefix + ".json") else {}
    return meta.get("model", os.path.basename(prefix)), "the engine", {i: first_line(r["completion"]) for i, r in rows.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder the engine loads")
    ap.add_argument("--fim-cases", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--prompt-tokens", type=int, default=333)
    ap.add_argument("--val", default=os.path.join(REPO, "models", "work", "corpus", "val.jsonl"))
    ap.add_argument("--reference", help="a report prefix on the same cases (evaluate.py's or this script's), to pair with")
    ap.add_argument("--out", required=True, help="report prefix (PREFIX.json, .md, .fim.jsonl)")
    args = ap.parse_args(argv)

    cases = select_fim_cases(load_val_docs(args.val), args.fim_cases, args.seed)
    out_jsonl = args.out + ".fim.jsonl"
    os.makedirs(os.path.dirname(os.path.abspath(out_jsonl)), exist_ok=True)
    done = rows_by_id(out_jsonl)
    t0 = time.time()
    run_engine(args.model, cases, args.max_new, args.prompt_tokens, done, out_jsonl,
               log=lambda s: print(s, file=sys.stderr, flush=True))
    rows = [done[c["id"]] for c in cases]
    for r, c in zip(rows, cases):
        if r["middle"] != c["middle"]:
            raise SystemExit(f"{out_jsonl} holds case {c['id']} of other cases (another seed or corpus): remove it")
        r["exact"] = first_line(r["completion"]).strip() == c["middle"].strip()
    report = {"command": " ".join(["python", "models/toolchain/eval_engine.py", *(argv or sys.argv[1:])]),
              "model": os.path.basename(os.path.normpath(args.model)), "seed": args.seed, "fim_cases": len(cases),
              "max_new_tokens": args.max_new, "prompt_tokens": args.prompt_tokens,
              "errors": sum(1 for r in rows if r.get("error")), "seconds_this_run": round(time.time() - t0),
              "folder": folder_info(args.model),
              "fim": fim_summary(rows, [r["language"] for r in rows])}
    if args.reference:
        name, kind, ref_line = reference_lines(args.reference)
        ref_exact = [ref_line[c["id"]].strip() == c["middle"].strip() for c in cases]
        eng = [r["exact"] for r in rows]
        pairs = paired(eng, ref_exact)
        report["reference"] = {"report": args.reference, "model": name, "kind": kind, "exact": sum(ref_exact),
                               "only_engine": pairs["only_first"], "only_reference": pairs["only_second"],
                               "same_line": sum(first_line(r["completion"]).strip() == ref_line[c["id"]].strip()
                                                for r, c in zip(rows, cases))}
    atomic_write_text(args.out + ".json", json.dumps(report, indent=2) + "\n")
    o = report["fim"]["overall"]
    md = [f"# FIM exact match through the engine: {report['model']}, seed {args.seed}", "",
          f"`{report['command']}`", "",
          f"- exact: {round(o['exact'] * o['n'])}/{o['n']} ({o['exact']:.1%}, 95% CI {o['exact_ci95'][0]:.1%}–{o['exact_ci95'][1]:.1%}); errors {report['errors']}"]
    for lang in LANGS:
        if lang in report["fim"]:
            x = report["fim"][lang]
            md.append(f"- {lang}: {round(x['exact'] * x['n'])}/{x['n']}")
    if "reference" in report:
        r = report["reference"]
        md.append(f"- {r['kind']} on the same cases ({r['model']}): {r['exact']}/{o['n']}; right only here "
                  f"{r['only_engine']}, only there {r['only_reference']}; same first line {r['same_line']}/{o['n']}")
    atomic_write_text(args.out + ".md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
