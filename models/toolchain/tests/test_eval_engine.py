"""eval_engine.py: evaluate.py's cases through the backend's engine (the real CLI, dist/cli.js,
and onnxruntime-node) on the checked-in tiny model; resumable and scored as evaluate.py scores."""
import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import eval_engine  # noqa: E402
import evaluate as ev  # noqa: E402
from test_evaluate import synthetic_docs  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TINY = os.path.join(REPO, "models", "tiny-test")
needs_cli = pytest.mark.skipif(not (shutil.which("node") and os.path.exists(os.path.join(REPO, "dist", "cli.js"))),
                               reason="needs node and a built dist/cli.js (npm run build)")


@needs_cli
def test_cases_run_through_the_engine_scored_and_resumed(tmp_path):
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in synthetic_docs()))
    out = str(tmp_path / "engine")
    eval_engine.main(["--model", TINY, "--fim-cases", "4", "--seed", "3", "--max-new", "8", "--prompt-tokens", "64",
                      "--val", str(val), "--out", out])
    report = json.load(open(out + ".json"))
    rows = [json.loads(line) for line in open(out + ".fim.jsonl")]
    cases = ev.select_fim_cases(ev.load_val_docs(str(val)), 4, 3)
    assert [r["id"] for r in rows] == [c["id"] for c in cases]
    assert report["errors"] == 0 and report["fim"]["overall"]["n"] == 4
    exact = sum(eval_engine.first_line(r["completion"]).strip() == c["middle"].strip() for r, c in zip(rows, cases))
    assert report["fim"]["overall"]["exact"] == exact / 4
    assert all(r["promptTokens"] <= 64 for r in rows)

    # Resumed: the cases already answered are not sent again (a broken CLI path would fail if they were).
    eval_engine.main(["--model", os.path.join(str(tmp_path), "no-such-model"), "--fim-cases", "4", "--seed", "3",
                      "--max-new", "8", "--val", str(val), "--out", out])
    assert len(open(out + ".fim.jsonl").read().splitlines()) == 4
    # Cases of another selection are refused, not silently mixed.
    with pytest.raises(SystemExit, match="other cases"):
        eval_engine.main(["--model", TINY, "--fim-cases", "4", "--seed", "4", "--max-new", "8", "--val", str(val), "--out", out])
