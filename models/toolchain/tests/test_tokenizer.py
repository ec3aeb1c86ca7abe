"""Tokenizer construction: special-token ids, round trips, code-friendly pre-tokenization."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "corpus"))
import train_tokenizer  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CODE = ["def add(a, b):\n    return a + b\n\n\nclass Foo:\n    def bar(self):\n        return 12345\n",
        "function f(x) {\n  if (x > 10) {\n    return x * 2;\n  }\n  return 0;\n}\n",
        "const xs: number[] = [1, 2, 3];\nexport default xs;\n"] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer.train(CODE, 320)


def test_special_token_ids(tok):
    for i, s in enumerate(train_tokenizer.SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i
    assert train_tokenizer.SPECIAL_TOKENS == ["<|endoftext|>", "<|pad|>", "<|fim_prefix|>",
                                              "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>"]
    ids = tok.encode("<|fim_prefix|>a = 1<|fim_suffix|>\n<|fim_middle|>").ids
    assert ids[0] == 2 and 3 in ids and ids[-1] == 4


def test_round_trip_and_indentation(tok):
    text = "if x:\n        y = 'héllo ☃'  # 1234567\n\tz = 0\r\n"
    assert tok.decode(tok.encode(text).ids) == text
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("a\n        return 12345")]
    # The newline carries the indentation; digits split in groups of up to 3.
    assert pieces == ["a", "ĊĠĠĠĠĠĠĠĠ", "return", "Ġ", "123", "45"]


def test_literal_special_strings_can_be_text(tok):
    tok.encode_special_tokens = True
    ids = tok.encode("x = '<|endoftext|>'").ids
    tok.encode_special_tokens = False
    assert 0 not in ids


def test_shipped_tokenizer_special_ids():
    path = os.path.join(REPO, "models", "tokenizer", "tokenizer.json")
    if not os.path.exists(path):
        pytest.skip("models/tokenizer/tokenizer.json not built yet")
    data = json.load(open(path))
    got = [(t["id"], t["content"], t["special"]) for t in data["added_tokens"]]
    assert got == [(i, s, True) for i, s in enumerate(train_tokenizer.SPECIAL_TOKENS)]


def test_prepare_tokens_writes_eot_separated_uint16(tmp_path, tok):
    import numpy as np
    import prepare_tokens

    train_tokenizer.save(tok, str(tmp_path / "tok"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = {"train": [("a", "python", CODE[0]), ("b", "javascript", CODE[1])],
            "val": [("c", "typescript", "x = '<|endoftext|>'\n")]}
    for split, rows in docs.items():
        with open(corpus / f"{split}.jsonl", "w") as f:
            for pkg, lang, text in rows:
                f.write(json.dumps({"package": pkg, "path": "f", "language": lang, "text": text}) + "\n")
    out = tmp_path / "data"
    prepare_tokens.main(["--tokenizer", str(tmp_path / "tok" / "tokenizer.json"), "--corpus", str(corpus),
                         "--out", str(out), "--card", str(tmp_path / "CARD.md")])
    train = np.fromfile(out / "train.bin", dtype=np.uint16)
    val = np.fromfile(out / "val.bin", dtype=np.uint16)
    assert (train == 0).sum() == 2 and train[-1] == 0
    assert (val == 0).sum() == 1 and val[-1] == 0, "a literal <|endoftext|> in code is plain text"
    tok.encode_special_tokens = False
    assert tok.decode(val[:-1].tolist()) == "x = '<|endoftext|>'\n"
    meta = json.load(open(out / "meta.json"))
    assert meta["splits"]["train"]["tokens"] == len(train) and meta["vocab_size"] == tok.get_vocab_size()
    assert not list(out.glob("*.tmp"))
