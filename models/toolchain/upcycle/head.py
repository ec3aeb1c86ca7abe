"""
The trimmed output head of the default model: which of the 151,936 vocabulary entries keep a
row in the head (models/FORMAT.md, "Trimmed head"). The head is read in full for every
generated token, and most of Qwen's vocabulary (CJK, rare merges of prose) never occurs in
code, so leaving those rows out cuts the bytes a decode step reads.

Rule: a token keeps its row if it occurs at least MIN_COUNT times in the project's code
corpus (models/work/corpus/train.jsonl, tokenized with the model's tokenizer), or is one of
the 256 byte tokens (any text stays writable byte by byte), or is a special / added token.
Every other token's logit is a large negative constant, so it is never chosen.

    .venv/bin/python models/toolchain/upcycle/head.py --corpus models/work/corpus/train.jsonl
        counts tokens (~10 min on 2 cores) and writes head.json (committed, ~30 KB)
    .venv/bin/python models/toolchain/upcycle/head.py --check models/work/eval/x.fim.jsonl ...
        how many greedy completions in evaluate.py reports used a token the head leaves out
"""
import argparse
import base64
import hashlib
import json
import os
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from atomic import atomic_write_text  # noqa: E402

HEAD_FILE = os.path.join(HERE, "head.json")
HEAD_VERSION = 1
MIN_COUNT = 16
FIRST_ADDED_ID = 151643   # Qwen2.5: <|endoftext|> and every id above it are special or added tokens


class HeadFileError(Exception):
    pass


def count_tokens(tokenizer_json: str, corpus: str, vocab_size: int, log=print) -> tuple[np.ndarray, int]:
    """Occurrences of every token id over the corpus' files (each file tokenized alone)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    counts = np.zeros(vocab_size, np.int64)
    files, batch, t0 = 0, [], time.time()

    def flush():
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            counts[:] += np.bincount(np.asarray(enc.ids, np.int64), minlength=vocab_size)[:vocab_size]
        batch.clear()

    with open(corpus, encoding="utf-8") as f:
        for line in f:
            batch.append(json.loads(line)["text"])
            files += 1
            if len(batch) == 256:
                flush()
                if files % 8192 == 0:
                    log(f"  {files} files, {int(counts.sum()):,} tokens, {time.time() - t0:.0f} s")
    flush()
    return counts, files


def choose(counts: np.ndarray, min_count: int = MIN_COUNT) -> np.ndarray:
    keep = counts >= min_count
    keep[:256] = True                    # byte tokens
    keep[FIRST_ADDED_ID:] = True         # specials and added tokens
    return np.flatnonzero(keep)


def ids_sha256(ids: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(ids, "<i4").tobytes()).hexdigest()


def write_head(path: str, ids: np.ndarray, vocab_size: int, corpus_info: dict):
    bits = np.zeros(vocab_size, np.uint8)
    bits[ids] = 1
    doc = {"version": HEAD_VERSION, "vocab_size": vocab_size, "tokens": int(len(ids)),
           "rule": f"count >= {MIN_COUNT} in the code corpus, or a byte token (ids 0-255), or id >= {FIRST_ADDED_ID}",
           "min_count": MIN_COUNT, "corpus": corpus_info,
           "bitmap_zlib_b64": base64.b64encode(zlib.compress(np.packbits(bits).tobytes(), 9)).decode(),
           "ids_sha256": ids_sha256(ids)}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def load_head(path: str = HEAD_FILE, vocab_size: int = None) -> np.ndarray:
    """The kept ids, sorted; refuses a file of another version, vocabulary or checksum."""
    return read_head(path, vocab_size)[0]


def read_head(path: str = HEAD_FILE, vocab_size: int = None) -> tuple[np.ndarray, str]:
    """load_head's ids and the rule that chose them (the manifest records it)."""
    try:
        doc = json.load(open(path, encoding="utf-8"))
        bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(doc["bitmap_zlib_b64"])), np.uint8))
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise HeadFileError(f"{path}: unreadable head file ({e})") from e
    if doc.get("version") != HEAD_VERSION:
        raise HeadFileError(f"{path}: version {doc.get('version')}, this toolchain reads {HEAD_VERSION}")
    if vocab_size is not None and doc.get("vocab_size") != vocab_size:
        raise HeadFileError(f"{path}: written for a vocabulary of {doc.get('vocab_size')}, the model has {vocab_size}")
    ids = np.flatnonzero(bits[:doc["vocab_size"]])
    if len(ids) != doc.get("tokens") or ids_sha256(ids) != doc.get("ids_sha256"):
        raise HeadFileError(f"{path}: checksum mismatch (the token list was edited or damaged)")
    return ids, doc.get("rule", "")


def check_reports(reports: list[str], tokenizer_json: str, ids: np.ndarray) -> dict:
    """Completions whose tokens (generated ids when the report has them, else the completion
    re-tokenized) include one outside the head: exactly the greedy completions that the trim
    can change."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    kept = np.zeros(tok.get_vocab_size(), bool)
    kept[ids] = True
    total, changed, examples = 0, 0, []
    for path in reports:
        for line in open(path, encoding="utf-8"):
            case = json.loads(line)
            for name, completion in case["completions"].items():
                gen = case.get("ids", {}).get(name) or tok.encode(completion, add_special_tokens=False).ids
                total += 1
                if not all(kept[i] for i in gen):
                    changed += 1
                    examples.append(completion[:80])
    return {"completions": total, "using_trimmed_tokens": changed, "examples": examples[:10]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="corpus jsonl to count tokens in (writes head.json)")
    ap.add_argument("--counts", help="cache of the counts (.npy): read when present, else written")
    ap.add_argument("--tokenizer", default=os.path.expanduser("~/.cache/versatileffn/converted/1d9614638d18024d/tokenizer.json"))
    ap.add_argument("--check", nargs="*", help="evaluate.py .fim.jsonl reports to check against head.json")
    ap.add_argument("--out", default=HEAD_FILE)
    args = ap.parse_args()
    if args.corpus:
        vocab = 151936
        if args.counts and os.path.exists(args.counts):
            counts, files = np.load(args.counts), None
        else:
            counts, files = count_tokens(args.tokenizer, args.corpus, vocab)
            if args.counts:
                np.save(args.counts, counts)
        ids = choose(counts)
        covered = counts[ids].sum() / max(counts.sum(), 1)
        info = {"file": os.path.relpath(os.path.abspath(args.corpus), os.path.abspath(os.path.join(HERE, "..", "..", ".."))),
                "files": files, "tokens": int(counts.sum()), "distinct_tokens": int((counts > 0).sum()),
                "share_of_corpus_tokens_kept": round(float(covered), 8)}
        write_head(args.out, ids, vocab, info)
        print(f"head: {len(ids):,} of {vocab:,} tokens kept; they cover {covered:.6%} of the corpus' "
              f"{int(counts.sum()):,} tokens -> {args.out}")
    if args.check:
        print(json.dumps(check_reports(args.check, args.tokenizer, load_head(args.out)), indent=1))


if __name__ == "__main__":
    main()
