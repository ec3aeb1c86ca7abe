"""FIM transformation, batch sampling and token-file checks (CPU, numpy only)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from data import (EOT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, fim_transform, get_batch,  # noqa: E402
                  open_tokens)


def make_row(rng, width, max_doc=30):
    """A window of whole documents (each ending in EOT), and the documents."""
    docs, row = [], []
    while len(row) < width:
        doc = list(rng.integers(10, 100, size=int(rng.integers(1, max_doc))))
        docs.append(doc)
        row += doc + [EOT]
    return np.array(row[:width], dtype=np.int64), docs


def parse_docs(row):
    """Split an output row into documents ending in EOT (the cut tail is dropped)."""
    docs, cur = [], []
    for t in row.tolist():
        if t == EOT:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    return docs


def unfim(doc):
    """Recover (original document, mode) from a transformed one."""
    if not doc or doc[0] != FIM_PREFIX:
        return doc, "plain"
    if doc[1] == FIM_SUFFIX:                       # SPM: PRE SUF suffix MID prefix+middle
        mid = doc.index(FIM_MIDDLE)
        return doc[mid + 1:] + doc[2:mid], "spm"
    suf, mid = doc.index(FIM_SUFFIX), doc.index(FIM_MIDDLE)   # PSM: PRE prefix SUF suffix MID middle
    prefix, suffix, middle = doc[1:suf], doc[suf + 1:mid], doc[mid + 1:]
    return prefix + middle + suffix, "psm"


@pytest.mark.parametrize("spm_rate,mode", [(0.0, "psm"), (1.0, "spm")])
def test_fim_structure_and_round_trip(spm_rate, mode):
    rng = np.random.default_rng(0)
    rows, all_docs = zip(*(make_row(rng, 200) for _ in range(16)))
    out = fim_transform(np.stack(rows), np.random.default_rng(1), fim_rate=1.0, spm_rate=spm_rate)
    assert out.shape == (16, 200)
    checked = 0
    for row, docs in zip(out, all_docs):
        parsed = parse_docs(row)
        for got, want in zip(parsed, docs):
            original, got_mode = unfim(got)
            assert original == want
            expected = mode if len(want) >= 2 else "plain"
            # PSM with an empty prefix reads like SPM (PRE SUF ...) and round-trips the same.
            assert got_mode == expected or (got[1] == FIM_SUFFIX and expected == "psm")
            checked += 1
    assert checked > 50


def test_fim_rate_zero_is_identity_and_half_is_about_half():
    rng = np.random.default_rng(2)
    rows = np.stack([make_row(rng, 400)[0] for _ in range(32)])
    assert np.array_equal(fim_transform(rows, np.random.default_rng(3), 0.0, 0.5), rows)
    out = fim_transform(rows, np.random.default_rng(3), 0.5, 0.5)
    modes = [unfim(d)[1] for row in out for d in parse_docs(row) if len(d) >= 5]
    fim_share = sum(m != "plain" for m in modes) / len(modes)
    spm_share = sum(m == "spm" for m in modes) / max(1, sum(m != "plain" for m in modes))
    assert 0.35 < fim_share < 0.65, fim_share
    assert 0.3 < spm_share < 0.7, spm_share


def test_fim_splits_vary():
    """Split points are random: middles have many different lengths, empty ones included."""
    doc = list(range(10, 60))
    row = np.array((doc + [EOT]) * 4, dtype=np.int64)[None, :]
    lengths = set()
    for seed in range(60):
        out = fim_transform(row, np.random.default_rng(seed), 1.0, 0.0)[0]
        d = parse_docs(out)[0]
        lengths.add(len(d) - d.index(FIM_MIDDLE) - 1)
    assert len(lengths) > 15


def test_batch_shapes_shift_and_determinism():
    tokens = np.arange(5000, dtype=np.uint16) % 97
    kw = dict(seed=1, stream=0, batch_size=4, context_length=32, fim_rate=0.0, spm_rate=0.5)
    x, y = get_batch(tokens, rank=0, step=3, micro=0, **kw)
    assert x.shape == y.shape == (4, 32) and x.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    x2, _ = get_batch(tokens, rank=0, step=3, micro=0, **kw)
    assert np.array_equal(x, x2)
    assert not np.array_equal(x, get_batch(tokens, rank=1, step=3, micro=0, **kw)[0])
    assert not np.array_equal(x, get_batch(tokens, rank=0, step=4, micro=0, **kw)[0])
    assert not np.array_equal(x, get_batch(tokens, rank=0, step=3, micro=1, **kw)[0])


def test_token_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.bin"):
        open_tokens(str(tmp_path / "train.bin"))
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(ValueError, match="odd size"):
        open_tokens(str(odd))
    big = tmp_path / "big.bin"
    np.array([1, 2, 900], dtype=np.uint16).tofile(big)
    with pytest.raises(ValueError, match="vocab_size is 512"):
        open_tokens(str(big), vocab_size=512)
