"""Train the byte-level BPE tokenizer on the corpus' train split and measure vocab sizes.

    python models/toolchain/corpus/train_tokenizer.py --vocab 8192 12288 16384 \
        --sample-mb 80 --select 12288

Trains one tokenizer per vocab size on the same deterministic sample of train files,
reports bytes/token on the validation split for each (models/work/tokenizers/results.json),
and copies the selected one to models/tokenizer/{tokenizer.json,tokenizer_config.json}.

The pre-tokenizer is a single Split regex (Isolated) plus ByteLevel without its own regex:
that is what @huggingface/tokenizers (JS) reproduces exactly (tests/test_tokenizer_parity.py).
Newline runs carry the next line's indentation ("\n        " is one pre-token, so common
indents become single tokens and a prompt ending in indentation tokenizes like training
text); digits split in groups of up to 3; a word keeps one leading space or punctuation mark.
"""
import argparse
import json
import os
import random
import sys
import time

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))   # the toolchain: atomic.py, special_tokens.py
import special_tokens  # noqa: E402
from atomic import atomic_write, atomic_write_text  # noqa: E402

# Ids 0..5, in this order, in every tokenizer of the project (special_tokens.py).
SPECIAL_TOKENS = special_tokens.TOKEN_LIST

SPLIT_PATTERN = (r"[^\r\n\p{L}\p{N}]?\p{L}+"      # words, with one leading space/punct
                 r"|\p{N}{1,3}"                   # numbers, 1-3 digits at a time
                 r"| ?[^\s\p{L}\p{N}]+"           # punctuation runs
                 r"|[ \t]*[\r\n]+[ \t]*"          # newlines with the next line's indentation
                 r"|\s+(?!\S)|\s+")               # other whitespace runs

TOKENIZER_CONFIG = {
    # Read by @huggingface/tokenizers (JS). clean_up_tokenization_spaces defaults to true
    # there and would rewrite " ." to "." in decoded code: keep it off.
    "tokenizer_class": "PreTrainedTokenizerFast",
    "clean_up_tokenization_spaces": False,
    "add_bos_token": False, "add_eos_token": False,
    "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "unk_token": None,
    "additional_special_tokens": SPECIAL_TOKENS[2:],
    "model_max_length": 1024,
}


def new_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def train(texts, vocab_size, max_token_length=32):
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  max_token_length=max_token_length)
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, f"special token {s} got id {tok.token_to_id(s)}, expected {i}"
    return tok


def read_texts(path, sample_bytes=0, seed=0):
    """Texts of a jsonl split; with sample_bytes, a deterministic random sample of files."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    if sample_bytes:
        random.Random(seed).shuffle(rows)
        out, total = [], 0
        for r in rows:
            if total >= sample_bytes:
                break
            out.append(r)
            total += len(r["text"].encode("utf-8"))
        rows = out
    return rows


def bytes_per_token(tok, rows):
    """Per-language and overall UTF-8 bytes per token, literal special strings as text."""
    tok.encode_special_tokens = True
    enc = tok.encode_batch([r["text"] for r in rows], add_special_tokens=False)
    per = {}
    for r, e in zip(rows, enc):
        b, t = per.get(r["language"], (0, 0))
        per[r["language"]] = (b + len(r["text"].encode("utf-8")), t + len(e.ids))
    allb, allt = sum(b for b, _ in per.values()), sum(t for _, t in per.values())
    out = {lang: round(b / t, 4) for lang, (b, t) in sorted(per.items())}
    out["all"] = round(allb / allt, 4)
    return out


def save(tok, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tok.encode_special_tokens = False
    atomic_write(os.path.join(out_dir, "tokenizer.json"), lambda tmp: tok.save(tmp))
    atomic_write_text(os.path.join(out_dir, "tokenizer_config.json"), json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--work", default=os.path.join(REPO, "models", "work", "tokenizers"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "tokenizer"))
    ap.add_argument("--vocab", type=int, nargs="*", default=[8192, 12288, 16384],
                    help="vocab sizes to train (none: only install --select from --work)")
    ap.add_argument("--sample-mb", type=float, default=80, help="train sample size (0 = all)")
    ap.add_argument("--val-mb", type=float, default=20, help="val sample for bytes/token (0 = all)")
    ap.add_argument("--select", type=int, default=None, help="vocab size to install into --out")
    args = ap.parse_args(argv)

    t0 = time.time()
    if not args.vocab and args.select:
        save(Tokenizer.from_file(os.path.join(args.work, f"vocab{args.select}", "tokenizer.json")), args.out)
        print(f"installed vocab {args.select} -> {args.out}", file=sys.stderr)
        return 0
    rows = read_texts(os.path.join(args.corpus, "train.jsonl"), int(args.sample_mb * 1e6))
    val = read_texts(os.path.join(args.corpus, "val.jsonl"), int(args.val_mb * 1e6), seed=1)
    print(f"train sample {sum(len(r['text'].encode()) for r in rows)/1e6:.1f} MB ({len(rows)} files), "
          f"val {sum(len(r['text'].encode()) for r in val)/1e6:.1f} MB ({len(val)} files), "
          f"loaded in {time.time()-t0:.0f}s", file=sys.stderr)
    results_path = os.path.join(args.work, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    texts = [r["text"] for r in rows]
    for v in args.vocab:
        t1 = time.time()
        tok = train(texts, v)
        secs = time.time() - t1
        bpt = bytes_per_token(tok, val)
        save(tok, os.path.join(args.work, f"vocab{v}"))
        results[str(v)] = {"vocab_size": tok.get_vocab_size(), "train_seconds": round(secs, 1),
                           "train_sample_mb": args.sample_mb, "val_bytes_per_token": bpt}
        print(f"vocab {v}: trained in {secs:.0f}s, val bytes/token {bpt}", file=sys.stderr)
        os.makedirs(args.work, exist_ok=True)
        atomic_write_text(results_path, json.dumps(results, indent=1))
    if args.select:
        src = os.path.join(args.work, f"vocab{args.select}", "tokenizer.json")
        tok = Tokenizer.from_file(src)
        save(tok, args.out)
        print(f"installed vocab {args.select} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
