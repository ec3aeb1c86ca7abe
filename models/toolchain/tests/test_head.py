"""The trimmed head's token list (upcycle/head.py): the rule, the committed file's checks,
and the count of completions a trim can change."""
import json
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "upcycle"))
import head  # noqa: E402

VOCAB = 151936


def test_rule_keeps_frequent_bytes_and_specials():
    counts = np.zeros(VOCAB, np.int64)
    counts[1000] = head.MIN_COUNT          # exactly at the bar: kept
    counts[1001] = head.MIN_COUNT - 1      # below: dropped
    counts[5] = 0                          # a byte token: kept whatever its count
    ids = head.choose(counts)
    assert 1000 in ids and 1001 not in ids and 5 in ids
    assert set(range(256)) <= set(ids) and set(range(head.FIRST_ADDED_ID, VOCAB)) <= set(ids)
    assert np.all(np.diff(ids) > 0)


def test_file_round_trip_and_refusals(tmp_path):
    ids = np.array([0, 3, 700, 151700])
    path = str(tmp_path / "head.json")
    head.write_head(path, ids, VOCAB, {"tokens": 10})
    np.testing.assert_array_equal(head.load_head(path, VOCAB), ids)
    with pytest.raises(head.HeadFileError, match="vocabulary"):
        head.load_head(path, 1000)
    doc = json.load(open(path))
    doc["ids_sha256"] = "0" * 64
    json.dump(doc, open(path, "w"))
    with pytest.raises(head.HeadFileError, match="checksum"):
        head.load_head(path)
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(head.HeadFileError, match="unreadable"):
        head.load_head(str(tmp_path / "junk.json"))


def test_committed_head_file():
    ids = head.load_head(head.HEAD_FILE, VOCAB)
    assert 20_000 < len(ids) < VOCAB / 2     # a real trim that still keeps what code uses
    assert set(range(256)) <= set(ids)


def test_check_counts_completions_with_dropped_tokens(tmp_path):
    tok = os.path.join(HERE, "..", "..", "..", "models", "tiny-test", "tokenizer.json")
    report = tmp_path / "r.fim.jsonl"
    report.write_text(json.dumps({"completions": {"a": "x", "b": "y"}, "ids": {"a": [1, 2], "b": [1, 9]}}) + "\n")
    r = head.check_reports([str(report)], tok, np.array([1, 2, 3]))
    assert r["completions"] == 2 and r["using_trimmed_tokens"] == 1 and r["examples"] == ["y"]
