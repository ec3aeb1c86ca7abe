"""Tokenize the corpus splits into flat uint16 token arrays for training.

    python models/toolchain/corpus/prepare_tokens.py [--tokenizer models/tokenizer/tokenizer.json]

Writes models/work/data/{train,val}.bin (each file's tokens followed by <|endoftext|> = 0,
nothing else; files in a fixed shuffled order so any prefix is a fair sample) and meta.json (vocab size, tokens and bytes per language and split, bytes per
token, the tokenizer's sha256), all via temp-then-rename, and refreshes DATA_CARD.md with
token counts. Literal special-token strings inside source files are encoded as plain text.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))   # the toolchain: atomic.py, fileinfo.py, special_tokens.py
import data_card  # noqa: E402
from atomic import atomic_write, atomic_write_text  # noqa: E402
from fileinfo import sha256_file  # noqa: E402
from special_tokens import EOT as EOT_ID  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def shuffled_docs(path):
    """(language, text) of a jsonl split in a fixed pseudo-random order (sha256 of
    package/path): any prefix of the .bin is then a fair sample of the whole mix, which
    matters when only part of it can be carried to the training machine."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            key = hashlib.sha256(f"{r['package']}/{r['path']}".encode()).digest()
            docs.append((key, r["language"], r["text"]))
    docs.sort(key=lambda d: d[0])
    return [(lang, text) for _, lang, text in docs]


def iter_batches(path, batch_bytes=8_000_000):
    batch, size = [], 0
    for lang, text in shuffled_docs(path):
        batch.append((lang, text))
        size += len(text)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def tokenize_split(tok, src, dst):
    """Encode src jsonl into dst .bin; returns per-language {tokens, bytes, files}."""
    per = {}

    def write(tmp):
        with open(tmp, "wb") as out:
            for batch in iter_batches(src):
                enc = tok.encode_batch([t for _, t in batch], add_special_tokens=False)
                arrs = []
                for (lang, text), e in zip(batch, enc):
                    arrs.append(np.asarray(e.ids + [EOT_ID], dtype=np.uint16))
                    p = per.setdefault(lang, {"tokens": 0, "bytes": 0, "files": 0})
                    p["tokens"] += len(e.ids)
                    p["bytes"] += len(text.encode("utf-8"))
                    p["files"] += 1
                np.concatenate(arrs).tofile(out)
    atomic_write(dst, write)
    return per


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "models", "tokenizer", "tokenizer.json"))
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "work", "data"))
    ap.add_argument("--card", default=os.path.join(HERE, "DATA_CARD.md"))
    args = ap.parse_args(argv)

    t0 = time.time()
    tok = Tokenizer.from_file(args.tokenizer)
    tok.encode_special_tokens = True
    vocab = tok.get_vocab_size()
    if vocab > 65535:
        sys.exit(f"{args.tokenizer}: vocab {vocab} does not fit uint16; use a smaller tokenizer")
    if tok.token_to_id("<|endoftext|>") != EOT_ID:
        sys.exit(f"{args.tokenizer}: <|endoftext|> is not id 0; retrain with train_tokenizer.py")
    os.makedirs(args.out, exist_ok=True)
    meta = {"vocab_size": vocab, "dtype": "uint16", "eot_id": EOT_ID,
            "tokenizer_sha256": sha256_file(args.tokenizer),
            "splits": {}}
    for split in ("train", "val"):
        t1 = time.time()
        per = tokenize_split(tok, os.path.join(args.corpus, f"{split}.jsonl"),
                             os.path.join(args.out, f"{split}.bin"))
        ntok = sum(p["tokens"] + p["files"] for p in per.values())  # + one EOT per file
        nbytes = sum(p["bytes"] for p in per.values())
        meta["splits"][split] = {"tokens": ntok, "bytes": nbytes, "languages": per,
                                 "bytes_per_token": round(nbytes / max(ntok, 1), 4),
                                 "seconds": round(time.time() - t1, 1)}
        print(f"{split}: {ntok:,} tokens, {nbytes/1e6:.1f} MB, {nbytes/max(ntok,1):.3f} bytes/token, "
              f"{time.time()-t1:.0f}s", file=sys.stderr)
    atomic_write_text(os.path.join(args.out, "meta.json"), json.dumps(meta, indent=1))

    stats_path = os.path.join(args.corpus, "stats.json")
    if os.path.exists(stats_path):
        stats = json.load(open(stats_path))
        tr, va = meta["splits"]["train"], meta["splits"]["val"]
        langs = {}
        for lang in set(tr["languages"]) | set(va["languages"]):
            t, v = tr["languages"].get(lang, {}), va["languages"].get(lang, {})
            langs[lang] = {"train_tokens": t.get("tokens", 0), "val_tokens": v.get("tokens", 0),
                           "val_bytes": v.get("bytes", 0)}
        tokens = {"vocab_size": vocab, "languages": langs, "train_tokens": tr["tokens"],
                  "val_tokens": va["tokens"], "val_bytes_per_token": va["bytes_per_token"]}
        atomic_write_text(args.card, data_card.render(stats, tokens))
    print(f"done in {time.time()-t0:.0f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
