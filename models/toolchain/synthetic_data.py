"""
Writes a small synthetic corpus in the training format (train.bin, val.bin as uint16,
meta.json) for tests, smoke runs and benchmarks when the real corpus is not built:
documents of learnable token patterns separated by <|endoftext|> (id 0).

  python models/toolchain/synthetic_data.py --out models/work/synthetic --tokens 2000000
"""
import argparse
import json
import os

import numpy as np

FIRST_ORDINARY_ID = 6  # 0..5 are the special tokens


def make_tokens(n_tokens: int, vocab_size: int, seed: int) -> np.ndarray:
    """Documents that follow one fixed successor table (token t is followed by succ[t]),
    with 10% of tokens redrawn at random: a bigram a small model learns in a few steps."""
    succ = np.random.default_rng(1234).permutation(np.arange(FIRST_ORDINARY_ID, vocab_size))
    succ = np.concatenate([np.zeros(FIRST_ORDINARY_ID, dtype=np.int64), succ])
    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < n_tokens:
        doc = np.empty(int(rng.integers(8, 200)), dtype=np.int64)
        doc[0] = rng.integers(FIRST_ORDINARY_ID, vocab_size)
        redraw = rng.random(len(doc)) < 0.1
        fresh = rng.integers(FIRST_ORDINARY_ID, vocab_size, size=len(doc))
        for k in range(1, len(doc)):
            doc[k] = fresh[k] if redraw[k] else succ[doc[k - 1]]
        out.append(np.append(doc, 0))
        total += len(doc) + 1
    return np.concatenate(out)[:n_tokens].astype(np.uint16)


def write_dataset(out_dir: str, n_tokens: int, vocab_size: int = 512, seed: int = 0):
    os.makedirs(out_dir, exist_ok=True)
    make_tokens(n_tokens, vocab_size, seed).tofile(os.path.join(out_dir, "train.bin"))
    make_tokens(max(n_tokens // 10, 4096), vocab_size, seed + 1).tofile(os.path.join(out_dir, "val.bin"))
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump({"vocab_size": vocab_size, "corpus": "synthetic (synthetic_data.py)"}, f)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    write_dataset(a.out, a.tokens, a.vocab_size, a.seed)
    print(f"wrote {a.out}/train.bin ({a.tokens:,} tokens), val.bin, meta.json")
