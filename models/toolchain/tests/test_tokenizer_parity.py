"""Python `tokenizers` vs @huggingface/tokenizers (JS) on the shipped tokenizer.

Encodes ~200 validation files (or, without a built corpus, this repo's own sources) plus
tricky strings in both libraries and requires identical ids and exact decode round trips.
Skips cleanly if node or node_modules/@huggingface/tokenizers is missing.
"""
import glob
import json
import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOK_DIR = os.path.join(REPO, "models", "tokenizer")
SCRIPT = os.path.join(os.path.dirname(__file__), "js", "encode.mjs")
VAL = os.path.join(REPO, "models", "work", "corpus", "val.jsonl")

TRICKY = [
    "", " ", "\n", "\r\n\r\n", "\t\tx", "    \n    \n", "a  b   c    ", "x = 1234567890.5e-10",
    "def f():\n\treturn '<|endoftext|>'\n", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>c<|endoftext|>",
    "naïve café — “quotes” ½ ① ٣٤ 日本語のコード 🚀👍🏽 \u00a0nbsp \u200bzw", "Ωmega_var = ΔT * µ",
    "const s = `${a}` + '\\n';\n}}\n\n\n// end", "x\u2028y\u2029z\u0085w\x0b\x0c",
]


def _samples(n=200):
    texts = []
    if os.path.exists(VAL):
        with open(VAL, encoding="utf-8") as f:
            rows = [json.loads(l)["text"] for l in f]
        step = max(1, len(rows) // n)
        texts = [t[:20000] for t in rows[::step][:n]]
    else:
        for p in sorted(glob.glob(os.path.join(REPO, "models", "toolchain", "**", "*.py"), recursive=True))[:n]:
            texts.append(open(p, encoding="utf-8").read()[:20000])
    return texts + TRICKY


def test_python_js_parity():
    if shutil.which("node") is None:
        pytest.skip("node not found")
    if not os.path.isdir(os.path.join(REPO, "node_modules", "@huggingface", "tokenizers")):
        pytest.skip("node_modules/@huggingface/tokenizers missing (run npm ci)")
    if not os.path.exists(os.path.join(TOK_DIR, "tokenizer.json")):
        pytest.skip("models/tokenizer/tokenizer.json missing")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(TOK_DIR, "tokenizer.json"))
    texts = _samples()
    proc = subprocess.run(["node", SCRIPT, TOK_DIR], input=json.dumps(texts), capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout)
    mismatches = []
    for text, enc, j in zip(texts, tok.encode_batch(texts, add_special_tokens=False), js):
        if enc.ids != j["ids"]:
            k = next((i for i, (a, b) in enumerate(zip(enc.ids, j["ids"])) if a != b),
                     min(len(enc.ids), len(j["ids"])))
            mismatches.append(f"ids differ at token {k}: {tok.decode(enc.ids[max(0, k-3):k+3])!r}")
        elif j["decoded"] != text or tok.decode(enc.ids, skip_special_tokens=False) != text:
            mismatches.append(f"decode round trip failed for {text[:60]!r}")
    print(f"parity: {len(texts)} texts, {sum(len(t) for t in texts)} chars, {len(mismatches)} mismatches")
    assert not mismatches, "\n".join(mismatches[:10])
