"""
Evaluates trained checkpoints and/or exported model folders the same way on the held-out
validation split (models/work/corpus/val.jsonl) and writes <out>.json, <out>.md and
<out>.fim.jsonl (every FIM case with each model's completion). Prints the markdown.

  .venv/bin/python models/toolchain/evaluate.py --checkpoint models/work/runs/versatile \
      --checkpoint models/work/runs/dense --out models/work/eval/report --fim-cases 500
  # exported folders (runs model.onnx with onnxruntime: measures fp16/int8 exports as shipped)
  .venv/bin/python models/toolchain/evaluate.py --model models/vffn-code-small --out /tmp/r

What is measured (identically for every model; all choices are fixed by --seed):
1. Validation loss per language and overall. Files of each language in the order
   prepare_tokens.py uses (sha256 of package/path), each file's tokens followed by
   <|endoftext|> (as in training), concatenated and cut after --loss-tokens tokens per
   language; scored in non-overlapping windows of the model's context_length (a token's
   context is the window it sits in). "overall" is the mean over all scored tokens.
   Models with the same context_length score exactly the same tokens.
2. FIM exact match. Cases are drawn round-robin over the languages (so each language gets
   a third), file uniformly within the language, then a line uniformly among the file's
   lines that are neither first nor last and whose stripped length is 4..120 characters.
   prefix = the text before that line (ends with its "\n"), middle = the line without its
   newline, suffix = the rest starting with the newline that ends the middle line; so
   prefix + middle + suffix is the file. Prompt (PSM): <|fim_prefix|> prefix <|fim_suffix|>
   suffix <|fim_middle|>, or in the order the model folder's manifest gives (fim.order "spm":
   <|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix, as the backend builds it);
   prefix and suffix are tokenized separately (as the editor does)
   and cut to fit: the suffix keeps its first tokens (at most a quarter of the budget), the
   prefix its last tokens, so prompt + --max-new (48) generated tokens <= context_length.
   Greedy decoding stops at any special token (<|endoftext|> etc.), at a generated newline,
   or after --max-new tokens. The completion is the decoded text up to the first newline.
   exact  = completion.strip() == middle.strip()      (indentation ignored: headline number)
   strict = completion.rstrip() == middle.rstrip()    (leading indentation must match too)
   95% Wilson intervals are given; with two or more models the JSON has, for each pair,
   how many cases only one of them got right (a paired comparison on the same cases).
3. Routing (versatile models) over the validation-loss tokens, eval mode (ℓ = argmax):
   mean loops per layer, the share of (token, layer) pairs at ℓ = 1..4 per layer and
   overall, expert utilization = share of routed slots per expert among tokens whose
   width path is used (ℓ < 4; for ℓ = 4 λ = 0 and the exported graph reports no experts),
   and compute per token = mean over tokens and layers of ℓ + (ℓ < 4 ? 1/12 : 0) in units
   of a dense FFN (docs/VERSATILEFFN.md), also divided by 4 (always-4-loops).
   Dense: 1.0 and 0.25; fixed k-loop baseline: k and k/4.
Checkpoints run in PyTorch (a KV-cache decode path written here; val loss in batches);
model folders run their model.onnx with onnxruntime (onnx_infer.py), batch 1.
"""
import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import special_tokens  # noqa: E402
from eval_models import EvalError, OnnxModel, RoutingStats, TorchModel  # noqa: E402
from fileinfo import sha256_file  # noqa: E402
from eval_report import write_report  # noqa: E402
from checkpoint import CheckpointError  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
LANGS = ("python", "javascript", "typescript")


@dataclass(frozen=True)
class Specials:
    """The ids evaluation needs; `all` holds every added/special token (greedy stops at any)."""
    eot: int
    fim_prefix: int
    fim_suffix: int
    fim_middle: int
    all: frozenset


TEAM_SPECIALS = Specials(special_tokens.EOT, special_tokens.FIM_PREFIX, special_tokens.FIM_SUFFIX,
                         special_tokens.FIM_MIDDLE, frozenset(special_tokens.IDS.values()))   # the project's own tokenizer


def specials_of(tok: Tokenizer) -> Specials:
    names = tuple(special_tokens.TOKENS[k] for k in ("eot", "fim_prefix", "fim_suffix", "fim_middle"))
    ids = [tok.token_to_id(n) for n in names]
    if None in ids:
        raise EvalError(f"the tokenizer lacks {[n for n, i in zip(names, ids) if i is None]}")
    return Specials(*ids, all=frozenset(tok.get_added_tokens_decoder()))
# ----------------------------------------------------------------------------- data
def load_val_docs(path: str) -> list[dict]:
    """Validation files as {key, language, text}, in prepare_tokens.py's fixed order."""
    if not os.path.exists(path):
        raise EvalError(f"{path}: validation split not found; build the corpus first "
                        f"(models/toolchain/corpus/build_corpus.py) or pass --val")
    docs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
                name = f"{r['package']}/{r['path']}"
                docs.append({"key": name, "language": r["language"], "text": r["text"],
                             "_h": hashlib.sha256(name.encode()).digest()})
            except (json.JSONDecodeError, KeyError) as e:
                raise EvalError(f"{path} line {n}: not a corpus record ({e}); expected package, path, "
                                f"language, text") from None
    docs.sort(key=lambda d: d["_h"])
    for d in docs:
        del d["_h"]
    return docs


def load_tokenizer(path: str) -> Tokenizer:
    if not os.path.exists(path):
        raise EvalError(f"{path}: tokenizer not found; pass --tokenizer")
    tok = Tokenizer.from_file(path)
    tok.encode_special_tokens = True   # literal "<|endoftext|>" in source is text, as in training
    specials_of(tok)   # fails early, naming the missing tokens
    return tok


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def loss_streams(docs: list[dict], tok: Tokenizer, cap: int, langs=LANGS,
                 eot: int = TEAM_SPECIALS.eot) -> dict[str, np.ndarray]:
    """Per language: the first cap + 1 tokens of its files (each + <|endoftext|>) in order."""
    out = {}
    for lang in langs:
        ids: list[int] = []
        for d in docs:
            if d["language"] != lang:
                continue
            ids.extend(encode(tok, d["text"]))
            ids.append(eot)
            if len(ids) > cap:
                break
        out[lang] = np.asarray(ids[:cap + 1], dtype=np.int64)
    return out


def windows(stream: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (inputs, targets) windows of length T: [n, T] each."""
    n = (len(stream) - 1) // T
    x = stream[:n * T].reshape(n, T)
    y = stream[1:n * T + 1].reshape(n, T)
    return x, y


def select_fim_cases(docs: list[dict], n: int, seed: int, langs=LANGS, min_len: int = 4,
                     max_len: int = 120) -> list[dict]:
    """n cases, round-robin over languages; deterministic in (docs, n, seed)."""
    rng = random.Random(seed)
    by_lang = {lang: [d for d in docs if d["language"] == lang] for lang in langs}
    langs = [lang for lang in langs if by_lang[lang]]
    if not langs:
        raise EvalError("no validation files in any of the languages " + ", ".join(LANGS))
    eligible_cache: dict[str, list] = {}

    def eligible(d):
        if d["key"] not in eligible_cache:
            text, lines, start = d["text"], [], 0
            for line in text.split("\n"):
                lines.append((start, line))
                start += len(line) + 1
            # not the first line, not the last one (an empty string after a final "\n" is no line)
            n_lines = len(lines) - text.endswith("\n")
            eligible_cache[d["key"]] = [(s, line) for i, (s, line) in enumerate(lines)
                                        if 0 < i < n_lines - 1 and min_len <= len(line.strip()) <= max_len]
        return eligible_cache[d["key"]]

    cases, seen = [], set()
    attempts = 0
    while len(cases) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise EvalError(f"could only draw {len(cases)} distinct FIM cases of {n}; "
                            f"the validation split is too small")
        lang = langs[len(cases) % len(langs)]
        d = rng.choice(by_lang[lang])
        el = eligible(d)
        if not el:
            continue
        start, line = rng.choice(el)
        if (d["key"], start) in seen:
            continue
        seen.add((d["key"], start))
        text = d["text"]
        cases.append({"id": len(cases), "language": lang, "file": d["key"], "offset": start,
                      "prefix": text[:start], "middle": line, "suffix": text[start + len(line):]})
    return cases


def build_prompt(prefix_ids: list[int], suffix_ids: list[int], context_length: int, max_new: int,
                 sp: Specials = TEAM_SPECIALS, order: str = "psm") -> list[int]:
    """PSM (or SPM) prompt cut to fit context_length with max_new tokens to spare."""
    budget = context_length - max_new - 3
    if budget < 8:
        raise EvalError(f"context_length {context_length} is too small for {max_new} new tokens")
    suf = suffix_ids[:min(len(suffix_ids), budget // 4)]
    n_pre = min(len(prefix_ids), budget - len(suf))
    pre = prefix_ids[len(prefix_ids) - n_pre:]
    if order == "spm":
        return [sp.fim_prefix, sp.fim_suffix, *suf, sp.fim_middle, *pre]
    return [sp.fim_prefix, *pre, sp.fim_suffix, *suf, sp.fim_middle]


def completion_line(tok: Tokenizer, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False).split("\n", 1)[0]


def greedy_line(m, prompt: list[int], tok: Tokenizer, max_new: int,
                sp: Specials = TEAM_SPECIALS) -> tuple[str, list[int]]:
    """Greedy completion with m.start(prompt) / m.feed(token) (each returns the last
    position's logits). Stops at a special token, a newline in the decoded text, or
    max_new tokens."""
    logits = m.start(prompt)
    out: list[int] = []
    while len(out) < max_new:
        nxt = int(logits.argmax())
        if nxt in sp.all:
            break
        out.append(nxt)
        if "\n" in tok.decode(out, skip_special_tokens=False):
            break
        if len(out) < max_new:
            logits = m.feed(nxt)
    return completion_line(tok, out), out


# ----------------------------------------------------------------------------- evaluation
def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [0.0, 0.0]
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [max(0.0, c - h), min(1.0, c + h)]


def _se(xs: list) -> float | None:
    return float(np.std(xs, ddof=1) / math.sqrt(len(xs))) if len(xs) > 1 else None


def eval_loss(m, streams: dict, batch: int, stats: RoutingStats, loss_context: int = 0) -> dict:
    out, tot_loss, tot_n, all_windows = {}, 0.0, 0, []
    T = min(m.context_length, loss_context) if loss_context > 0 else m.context_length
    for lang, stream in streams.items():
        x, y = windows(stream, T)
        s, n, per_window = 0.0, 0, []
        for b in range(0, len(x), batch):
            lo = m.score(x[b:b + batch], y[b:b + batch], stats)
            s, n = s + float(lo.sum()), n + lo.size
            per_window.extend(lo.mean(1).tolist())
        # standard error of the mean over windows (windows of one file are correlated: a rough guide)
        out[lang] = {"loss": s / max(n, 1), "tokens": n, "windows": len(per_window), "loss_se": _se(per_window)}
        tot_loss, tot_n = tot_loss + s, tot_n + n
        all_windows += per_window
    out["overall"] = {"loss": tot_loss / max(tot_n, 1), "tokens": tot_n, "windows": len(all_windows),
                      "loss_se": _se(all_windows)}
    return out


def rows_by_id(jsonl: str) -> dict:
    """The rows of a results file written one JSON line per case ({"id": ...}), by id; {} when it does
    not exist yet. What a resumable evaluation has done already."""
    done = {}
    if os.path.exists(jsonl):
        with open(jsonl, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                done[row["id"]] = row
    return done


def fim_summary(preds: list[dict], languages: list[str], keys=("exact",)) -> dict:
    """Per language and overall: n, and for each boolean key of the predictions its rate and 95% interval."""
    res = {}
    for lang in [None, *LANGS]:
        sel = [p for p, pl in zip(preds, languages) if lang is None or pl == lang]
        if not sel:
            continue
        row = {"n": len(sel)}
        for key in keys:
            k = sum(bool(p[key]) for p in sel)
            row[key], row[f"{key}_ci95"] = k / len(sel), wilson(k, len(sel))
        res[lang or "overall"] = row
    return res


def eval_fim(m, cases: list[dict], tok: Tokenizer, max_new: int, enc_cache: dict,
             fim_context: int = 0, sp: Specials = TEAM_SPECIALS) -> tuple[dict, list]:
    ctx = min(m.context_length, fim_context) if fim_context > 0 else m.context_length
    preds = []
    for c in cases:
        if c["id"] not in enc_cache:
            enc_cache[c["id"]] = (encode(tok, c["prefix"]), encode(tok, c["suffix"]))
        pre, suf = enc_cache[c["id"]]
        prompt = build_prompt(pre, suf, ctx, max_new, sp, getattr(m, "fim_order", "psm"))
        line, ids = greedy_line(m, prompt, tok, max_new, sp)
        preds.append({"completion": line, "ids": [int(i) for i in ids], "n_generated": len(ids), "prompt_tokens": len(prompt),
                      "exact": line.strip() == c["middle"].strip(),
                      "strict": line.rstrip() == c["middle"].rstrip()})
    res = fim_summary(preds, [c["language"] for c in cases], ("exact", "strict"))
    res["overall"]["mean_generated_tokens"] = float(np.mean([p["n_generated"] for p in preds]))
    res["overall"]["mean_prompt_tokens"] = float(np.mean([p["prompt_tokens"] for p in preds]))
    res["overall"]["fim_order"] = getattr(m, "fim_order", "psm")
    return res, preds


def evaluate(models: list, names: list[str], docs: list[dict], tok: Tokenizer, *, loss_tokens: int,
             fim_cases: int, seed: int, max_new: int = 48, batch: int = 8, fim_context: int = 0,
             loss_context: int = 0, log=print) -> dict:
    t0 = time.time()
    sp = specials_of(tok)
    streams = loss_streams(docs, tok, loss_tokens, eot=sp.eot) if loss_tokens > 0 else {}
    cases = select_fim_cases(docs, fim_cases, seed) if fim_cases > 0 else []
    log(f"data: {sum(len(s) - 1 for s in streams.values()):,} loss tokens, {len(cases)} FIM cases "
        f"({time.time() - t0:.1f}s)")
    report = {"settings": {"loss_tokens_per_language": loss_tokens, "fim_cases": fim_cases, "seed": seed,
                           "max_new_tokens": max_new, "fim_context": fim_context or "model context_length",
                           "loss_context": loss_context or "model context_length",
                           "languages": list(LANGS)},
              "models": {}, "fim_cases": [{k: c[k] for k in ("id", "language", "file", "offset", "middle")}
                                          for c in cases]}
    enc_cache: dict = {}
    all_preds = {}
    for m, name in zip(models, names):
        entry = {"source": m.source, "kind": m.kind, "parameters": m.params, "context_length": m.context_length}
        meta = m.meta or {}
        if "step" in meta:
            entry["training"] = {"step": meta.get("step"), "tokens": meta.get("tokens"),
                                 "train_val_loss": (meta.get("metrics") or {}).get("val_loss")}
        elif meta.get("training"):
            entry["training"] = meta["training"]
        stats = m.new_stats()
        t1 = time.time()
        if streams:
            entry["val_loss"] = eval_loss(m, streams, batch, stats, loss_context)
        entry["seconds_loss"] = round(time.time() - t1, 1)
        t2 = time.time()
        if cases:
            entry["fim"], all_preds[name] = eval_fim(m, cases, tok, max_new, enc_cache, fim_context, sp)
        entry["seconds_fim"] = round(time.time() - t2, 1)
        entry["routing"] = stats.summary()
        report["models"][name] = entry
        log(f"{name}: loss {entry.get('val_loss', {}).get('overall', {}).get('loss', float('nan')):.4f} "
            f"({entry['seconds_loss']}s), FIM exact {entry.get('fim', {}).get('overall', {}).get('exact', 0):.3f} "
            f"({entry['seconds_fim']}s)")
    if len(all_preds) >= 2:
        pairs = {}
        ns = list(all_preds)
        for i in range(len(ns)):
            for j in range(i + 1, len(ns)):
                a, b = all_preds[ns[i]], all_preds[ns[j]]
                pairs[f"{ns[i]} vs {ns[j]}"] = {
                    "only_first_exact": sum(p["exact"] and not q["exact"] for p, q in zip(a, b)),
                    "only_second_exact": sum(q["exact"] and not p["exact"] for p, q in zip(a, b)),
                    "both_exact": sum(p["exact"] and q["exact"] for p, q in zip(a, b))}
        report["fim_paired"] = pairs
    report["predictions"] = all_preds
    report["seconds"] = round(time.time() - t0, 1)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", default=[], help="training run folder (repeatable)")
    ap.add_argument("--model", action="append", default=[], help="exported model folder (repeatable)")
    ap.add_argument("--name", action="append", default=[], help="column names, in the order checkpoints then models")
    ap.add_argument("--out", required=True, help="output path without extension: writes .json, .md, .fim.jsonl")
    ap.add_argument("--val", default=os.path.join(REPO, "models", "work", "corpus", "val.jsonl"))
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "models", "tokenizer", "tokenizer.json"))
    ap.add_argument("--loss-tokens", type=int, default=100_000,
                    help="tokens per language for the loss (0: skip); 100k: ~3 min for a 2.6M versatile model "
                         "at context 256 on one loaded core of the 2-core dev VM")
    ap.add_argument("--fim-cases", type=int, default=500, help="FIM cases (0: skip)")
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--fim-context", type=int, default=0,
                    help="cap prompt + max-new at this many tokens (0: the model's context_length); "
                         "prefill dominates FIM time for large contexts on CPU")
    ap.add_argument("--loss-context", type=int, default=0,
                    help="score the loss in windows of at most this many tokens (0: the model's context_length)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, default=8, help="windows per forward (checkpoints)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (checkpoints only)")
    args = ap.parse_args(argv)
    if not args.checkpoint and not args.model:
        ap.error("pass at least one --checkpoint or --model")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tok = load_tokenizer(args.tokenizer)
        tok_sha = sha256_file(args.tokenizer)
        models, paths = [], []
        for p in args.checkpoint:
            models.append(TorchModel(p, args.device))
            paths.append(p)
        for p in args.model:
            m = OnnxModel(p, args.threads)
            if os.path.exists(m.tokenizer_path) and sha256_file(m.tokenizer_path) != tok_sha:
                raise EvalError(f"{m.tokenizer_path} differs from {args.tokenizer}: losses would not be comparable; "
                                f"pass --tokenizer {m.tokenizer_path}")
            if args.loss_tokens > 0 and (m.manifest.get("graph") or {}).get("head"):
                # Tokens outside a trimmed head have logit -1e9: their loss is not the model's.
                raise EvalError(f"{p}: its output head is trimmed to {m.manifest['graph']['head'].get('tokens')} tokens, "
                                "so a loss over every token is not defined; pass --loss-tokens 0 (FIM only), or "
                                "measure the loss on a folder with the full head")
            models.append(m)
            paths.append(p)
        names = list(args.name) + [os.path.basename(os.path.normpath(p)) for p in paths[len(args.name):]]
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            if n in seen:
                names[i] = f"{n}-{i}"
            seen[names[i]] = i
        docs = load_val_docs(args.val)
        report = evaluate(models, names, docs, tok, loss_tokens=args.loss_tokens, fim_cases=args.fim_cases,
                          seed=args.seed, max_new=args.max_new, batch=args.batch, fim_context=args.fim_context,
                          loss_context=args.loss_context,
                          log=lambda s: print(s, file=sys.stderr, flush=True))
        report["settings"].update({"val": os.path.relpath(args.val, REPO), "tokenizer_sha256": tok_sha,
                                   "threads": torch.get_num_threads(), "device": args.device})
        print(write_report(report, args.out))
        print(f"wrote {args.out}.json, {args.out}.md, {args.out}.fim.jsonl ({report['seconds']}s)", file=sys.stderr)
    except (EvalError, CheckpointError) as e:  # they name the file and the next step
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
