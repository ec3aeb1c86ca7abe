"""
Checks the converter against an independent implementation: Hugging Face transformers loads
the same GGUF (its own dequantization and Qwen2 code) and both greedy-complete the same FIM
prompts; the token ids must match.

    # transformers is not a toolchain dependency: use any environment that has it
    python -m venv /tmp/tf && /tmp/tf/bin/pip install torch transformers accelerate gguf safetensors tokenizers
    /tmp/tf/bin/python models/toolchain/upcycle/check_reference.py [--tokens 24]

Uses the set-up's cache (~/.cache/versatileffn): the GGUF and the converted weights.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from source import GGUF_SHA256, default_cache, fetch_gguf  # noqa: E402

PROMPTS = [  # (prefix, suffix): the product's PSM template
    ("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"),
    ("import os\n\ndef read_lines(path):\n    with open(path) as f:\n        ", "\n"),
    ("function sum(xs: number[]): number {\n  return xs.reduce(", "\n}\n"),
    ("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        ", "\n"),
    ("const express = require('express');\nconst app = express();\n\napp.get('/', (req, res) => {\n  ", "\n});\n"),
]


@torch.inference_mode()
def greedy(step, ids, n, stop):
    """step(new_ids) -> last logits, with its own cache; n greedy tokens or a stop id."""
    out, logits = [], step(ids)
    for _ in range(n):
        t = int(logits.argmax())
        if t in stop:
            break
        out.append(t)
        logits = step([t])
    return out


def ours(conv_dir):
    from convert import load_converted
    model = load_converted(conv_dir)
    cache = {"kv": None}

    def start():
        cache["kv"] = [None] * model.cfg.n_layer

    def step(ids):
        return model(torch.tensor([ids]), cache=cache["kv"])[0][0, -1]
    return start, step


def reference(gguf):
    from transformers import AutoModelForCausalLM, DynamicCache
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
                                                 torch_dtype=torch.float32).eval()
    state = {}

    def start():
        state["cache"], state["pos"] = DynamicCache(), 0

    def step(ids):
        out = model(input_ids=torch.tensor([ids]), past_key_values=state["cache"], use_cache=True)
        state["cache"] = out.past_key_values
        return out.logits[0, -1]
    return start, step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=24)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from tokenizers import Tokenizer
    cache = default_cache()
    gguf = fetch_gguf(cache)
    conv = os.path.join(cache, "converted", GGUF_SHA256[:16])
    tok = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
    sp = {n: tok.token_to_id(n) for n in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")}
    stop = {tok.token_to_id(n) for n in ("<|endoftext|>", "<|im_end|>", "<|fim_pad|>", "<|file_sep|>")}
    runs = {"ours": ours(conv), "transformers": reference(gguf)}
    same = 0
    for prefix, suffix in PROMPTS:
        ids = [sp["<|fim_prefix|>"], *tok.encode(prefix).ids, sp["<|fim_suffix|>"], *tok.encode(suffix).ids,
               sp["<|fim_middle|>"]]
        outs = {}
        for name, (start, step) in runs.items():
            start()
            outs[name] = greedy(step, ids, args.tokens, stop)
        ok = outs["ours"] == outs["transformers"]
        same += ok
        print(f"{'same' if ok else 'DIFFERENT'}: {json.dumps(tok.decode(outs['ours']))}"
              + ("" if ok else f"\n  transformers: {json.dumps(tok.decode(outs['transformers']))}"), flush=True)
    print(f"{same}/{len(PROMPTS)} prompts: identical greedy ids ({args.tokens} tokens max)")
    sys.exit(0 if same == len(PROMPTS) else 1)


if __name__ == "__main__":
    main()
