"""evaluate.py on a tiny random model and a tiny synthetic val.jsonl (CPU, seconds)."""
import json
import os
import random
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import eval_models as em  # noqa: E402
import eval_report as er  # noqa: E402
import evaluate as ev  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402

TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "..", "tiny-test", "tokenizer.json")


def synthetic_docs(n=12, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lang = ev.LANGS[i % 3]
        lines = []
        for j in range(rng.randint(4, 30)):
            indent = "    " * rng.randint(0, 2)
            lines.append(indent + rng.choice(["x = 1", "return foo(bar)", "", "  ", "if (a) {", "}",
                                               f"const v{j} = {rng.randint(0, 999)};", "def f(x):", "ab"]))
        out.append({"package": f"pkg{i}", "path": f"src/f{i}.x", "language": lang, "license": "MIT",
                    "text": "\n".join(lines) + ("\n" if i % 2 else "")})
    return out


@pytest.fixture(scope="module")
def val_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("val") / "val.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in synthetic_docs()))
    return str(p)


@pytest.fixture(scope="module")
def tok():
    return ev.load_tokenizer(TOKENIZER)


def tiny_model(kind="versatile", seed=0, ctx=96):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=2048, n_layer=2, n_head=2, d_model=32, d_ff=128, context_length=ctx, ffn_kind=kind)
    m = VersatileLM(cfg).eval()
    with torch.no_grad():  # spread the routers so several loop counts and experts are chosen
        for b in m.blocks:
            if kind == "versatile":
                b.ffn.depth_router.weight.normal_(0, 1.0)
                b.ffn.expert_router.weight.normal_(0, 1.0)
    return m


def test_case_selection_deterministic_and_well_formed(val_path):
    docs = ev.load_val_docs(val_path)
    a = ev.select_fim_cases(docs, 30, seed=7)
    b = ev.select_fim_cases(ev.load_val_docs(val_path), 30, seed=7)
    assert a == b
    assert a != ev.select_fim_cases(docs, 30, seed=8)
    texts = {d["key"]: d["text"] for d in docs}
    assert len({(c["file"], c["offset"]) for c in a}) == 30
    for c in a:
        assert c["prefix"] + c["middle"] + c["suffix"] == texts[c["file"]]
        assert 4 <= len(c["middle"].strip()) <= 120 and "\n" not in c["middle"]
        assert c["prefix"].endswith("\n") and c["suffix"].startswith("\n")
        # not the first line, not the last
        text = texts[c["file"]]
        n_lines = text.count("\n") + (not text.endswith("\n"))
        assert 0 < c["prefix"].count("\n") < n_lines - 1
    assert [c["language"] for c in a[:6]] == list(ev.LANGS) * 2


def test_prompt_budget():
    pre, suf = list(range(10, 500)), list(range(600, 900))
    p = ev.build_prompt(pre, suf, 256, 48)
    assert len(p) + 48 <= 256
    assert p[0] == ev.TEAM_SPECIALS.fim_prefix and p[-1] == ev.TEAM_SPECIALS.fim_middle
    i = p.index(ev.TEAM_SPECIALS.fim_suffix)
    assert p[1:i] == pre[-(i - 1):]                     # end of the prefix
    assert p[i + 1:-1] == suf[:len(p) - i - 2]          # start of the suffix
    assert len(p) - i - 2 <= (256 - 48 - 3) // 4
    short = ev.build_prompt([7, 8], [9], 256, 48)
    assert short == [ev.TEAM_SPECIALS.fim_prefix, 7, 8, ev.TEAM_SPECIALS.fim_suffix, 9, ev.TEAM_SPECIALS.fim_middle]


def test_spm_prompt_has_the_same_cut_in_the_backends_order():
    """fim.order "spm" (the default model's): suffix first, the prefix right before generation,
    as backend/src/engine/prompt.ts builds it; the same tokens as PSM, only reordered."""
    sp = ev.TEAM_SPECIALS
    pre, suf = list(range(10, 500)), list(range(600, 900))
    psm, spm = ev.build_prompt(pre, suf, 256, 48), ev.build_prompt(pre, suf, 256, 48, order="spm")
    i = psm.index(sp.fim_suffix)
    assert spm == [sp.fim_prefix, sp.fim_suffix, *psm[i + 1:-1], sp.fim_middle, *psm[1:i]]
    assert ev.build_prompt([7, 8], [9], 256, 48, order="spm") == [sp.fim_prefix, sp.fim_suffix, 9, sp.fim_middle, 7, 8]


@pytest.mark.parametrize("kind", ["versatile", "dense"])
def test_kv_cache_matches_full_recompute(kind):
    m = tiny_model(kind)
    tm = em.TorchModel.from_module(m)
    prompt = [ev.TEAM_SPECIALS.fim_prefix, *range(100, 140), ev.TEAM_SPECIALS.fim_suffix, *range(300, 310), ev.TEAM_SPECIALS.fim_middle]
    # cached greedy
    cached, logits = [], tm.start(prompt)
    for _ in range(20):
        cached.append(int(logits.argmax()))
        logits = tm.feed(cached[-1])
    # full recomputation each step
    full, ids = [], list(prompt)
    with torch.no_grad():
        for _ in range(20):
            lg, _, _ = m(torch.tensor([ids]))
            full.append(int(lg[0, -1].argmax()))
            ids.append(full[-1])
    assert cached == full
    # a multi-token block after a cache (mask with past > 0) gives the model's logits too
    cache = [None] * m.cfg.n_layer
    em.forward_cached(m, torch.tensor([prompt[:10]]), cache)
    lg_part = em.forward_cached(m, torch.tensor([prompt[10:]]), cache)
    with torch.no_grad():
        lg_full, _, _ = m(torch.tensor([prompt]))
    torch.testing.assert_close(lg_part[0], lg_full[0, 10:], atol=1e-5, rtol=1e-4)


class Scripted:
    """A stand-in model whose greedy choices are a fixed sequence."""

    def __init__(self, ids):
        self.ids = iter(ids)

    def start(self, prompt):
        return self.feed(None)

    def feed(self, token):
        lg = np.zeros(2048)
        lg[next(self.ids)] = 1
        return lg


def test_greedy_line_stops_at_newline_and_special(tok):
    nl = tok.encode("a\nb", add_special_tokens=False).ids
    line, ids = ev.greedy_line(Scripted([100, *nl, 200, 201]), [2, 3, 4], tok, 48)
    cut = next(i for i, t in enumerate(nl) if "\n" in tok.decode([t])) + 1
    assert "\n" not in line and line.endswith("a") and ids == [100, *nl[:cut]]
    line, ids = ev.greedy_line(Scripted([120, 0, 5]), [2, 3, 4], tok, 48)
    assert ids == [120]
    line, ids = ev.greedy_line(Scripted([120] * 10), [2, 3, 4], tok, 4)
    assert ids == [120] * 4


def test_evaluate_end_to_end(val_path, tok, tmp_path):
    docs = ev.load_val_docs(val_path)
    models = [em.TorchModel.from_module(tiny_model("versatile"), {"step": 3, "tokens": 99}),
              em.TorchModel.from_module(tiny_model("dense", seed=1))]
    rep = ev.evaluate(models, ["v", "d"], docs, tok, loss_tokens=300, fim_cases=9, seed=1, max_new=8,
                      batch=2, log=lambda s: None)
    v, d = rep["models"]["v"], rep["models"]["d"]
    for e in (v, d):
        assert e["val_loss"]["python"]["tokens"] > 0
        assert e["fim"]["overall"]["n"] == 9 and e["fim"]["python"]["n"] == 3
        assert 0 <= e["fim"]["overall"]["exact"] <= 1
    # both models score the same tokens
    assert v["val_loss"]["overall"]["tokens"] == d["val_loss"]["overall"]["tokens"]
    r = v["routing"]
    assert r["tokens"] == v["val_loss"]["overall"]["tokens"]
    assert abs(sum(r["loop_share"]) - 1) < 1e-9 and abs(sum(r["expert_share"]) - 1) < 1e-9
    for la in r["layers"]:
        assert abs(sum(la["loop_share"]) - 1) < 1e-9
        assert la["expert_share"] is None or abs(sum(la["expert_share"]) - 1) < 1e-9
    assert 1.0 <= r["compute_vs_dense"] <= 4.0
    assert r["compute_vs_4loop"] == pytest.approx(r["compute_vs_dense"] / 4)
    assert d["routing"]["compute_vs_dense"] == 1.0 and d["routing"]["compute_vs_4loop"] == 0.25
    md = ev.write_report(rep, str(tmp_path / "rep"))
    assert "| val loss, overall |" in md and "Routing of v" in md and "Routing of d" not in md
    saved = json.loads((tmp_path / "rep.json").read_text())
    assert saved["models"]["d"]["routing"]["compute_vs_dense"] == 1.0
    lines = (tmp_path / "rep.fim.jsonl").read_text().splitlines()
    assert len(lines) == 9 and set(json.loads(lines[0])["completions"]) == {"v", "d"}


def test_compute_accounting():
    s = em.RoutingStats("versatile", 1)
    s.add(0, np.array([1, 4, 4, 2]), np.array([[0, 1], [-1, -1], [-1, -1], [2, 3]]))
    r = s.summary()
    assert r["loop_share"] == [0.25, 0.25, 0.0, 0.5]
    assert r["compute_vs_dense"] == pytest.approx((1 + 1 / 12 + 2 + 1 / 12 + 4 + 4) / 4)
    assert r["expert_share"][:4] == [0.25] * 4 and r["layers"][0]["experts_unused"] == 4
    # a layer that sends every token to ℓ = 4 has no width path in use: no expert shares
    s = em.RoutingStats("versatile", 2)
    s.add(0, np.array([4, 4]), np.array([[-1, -1], [-1, -1]]))
    s.add(1, np.array([1, 1]), np.array([[0, 1], [0, 2]]))
    r = s.summary()
    assert r["layers"][0]["expert_share"] is None and r["layers_without_width_path"] == [0]
    assert r["expert_share_min"] == 0.0 and r["expert_share_max"] == 0.5
    assert r["compute_vs_dense"] == pytest.approx((4 + 4 + 2 * (1 + 1 / 12)) / 4)
    assert "–" in er._pct(None)


def test_onnx_folder_matches_checkpoint(tok, tmp_path, val_path):
    """An exported folder and its PyTorch model give the same losses, routing and FIM output."""
    export = pytest.importorskip("export")
    m = tiny_model("versatile", ctx=64)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    folder = tmp_path / "m"
    export.export_model(m.cfg, sd, str(folder), tokenizer=TOKENIZER, export_date=None)
    docs = ev.load_val_docs(val_path)
    rep = ev.evaluate([em.TorchModel.from_module(m), em.OnnxModel(str(folder), threads=1)], ["pt", "onnx"],
                      docs, tok, loss_tokens=200, fim_cases=6, seed=3, max_new=6, batch=4, log=lambda s: None)
    a, b = rep["models"]["pt"], rep["models"]["onnx"]
    assert a["val_loss"]["overall"]["loss"] == pytest.approx(b["val_loss"]["overall"]["loss"], abs=1e-4)
    assert a["routing"]["loop_share"] == pytest.approx(b["routing"]["loop_share"], abs=0.02)
    assert [p["completion"] for p in rep["predictions"]["pt"]] == [p["completion"] for p in rep["predictions"]["onnx"]]


def test_cli_on_checkpoints(val_path, tmp_path, capsys):
    from checkpoint import save_checkpoint
    runs = []
    for kind in ("versatile", "dense"):
        m = tiny_model(kind, ctx=64)
        run = tmp_path / kind
        save_checkpoint(str(run), m, {"model_config": m.cfg.to_dict(), "step": 1, "tokens": 64, "metrics": {}})
        runs += ["--checkpoint", str(run)]
    out = tmp_path / "eval" / "rep"
    args = [*runs, "--out", str(out), "--val", val_path, "--tokenizer", TOKENIZER, "--loss-tokens", "150",
            "--fim-cases", "6", "--max-new", "8", "--threads", "1"]
    assert ev.main(args) == 0
    md = capsys.readouterr().out
    assert "| metric | versatile | dense |" in md and "| training tokens | 64 | 64 |" in md
    rep = json.loads((tmp_path / "eval" / "rep.json").read_text())
    assert rep["models"]["dense"]["training"]["step"] == 1 and rep["fim_cases"] == "rep.fim.jsonl"
    assert ev.main(["--checkpoint", str(tmp_path / "missing"), "--out", str(out), "--val", val_path,
                    "--tokenizer", TOKENIZER]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_a_loss_is_refused_on_a_folder_with_a_trimmed_head(tmp_path, val_path, capsys):
    """Tokens outside a trimmed head get logit -1e9: a loss over every token would be nonsense (it read
    ~10^6 nats on the shipped folders), so only FIM is measured there."""
    export = pytest.importorskip("export")
    m = tiny_model("dense", ctx=64)
    folder = tmp_path / "m"
    export.export_model(m.cfg, {k: v.clone() for k, v in m.state_dict().items()}, str(folder), tokenizer=TOKENIZER,
                        export_date=None)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["graph"]["head"] = {"tokens": 1000, "rule": "test", "file": None}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    base = ["--model", str(folder), "--out", str(tmp_path / "rep"), "--val", val_path, "--tokenizer", TOKENIZER,
            "--fim-cases", "3", "--max-new", "4", "--threads", "1"]
    assert ev.main([*base, "--loss-tokens", "150"]) == 2
    assert "trimmed to 1000 tokens" in capsys.readouterr().err
    assert ev.main([*base, "--loss-tokens", "0"]) == 0
