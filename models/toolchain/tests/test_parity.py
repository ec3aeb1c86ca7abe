"""PyTorch vs onnxruntime (Python) vs onnxruntime-node on exported tiny random models:
prefill, a second block on top of the cache, then decode steps. fp32 logits within 1e-4,
identical routing decisions. Run with -s to see the printed max differences."""
import json
import os

import numpy as np
import pytest

from export_fixtures import REPO, compare, export_small, node_available, run_node, small_model

from onnx_infer import OrtLM

LIMIT = 1e-4
KINDS = [("versatile", {}), ("dense", {}), ("loop", {"fixed_loops": 3}), ("versatile", {"attention": "plain"})]
KIND_IDS = ["versatile", "dense", "loop", "versatile-plain-attention"]


def chunks_of(ids, prefill=(20, 4)):
    """First block, a second block on top of the cache (causal within it, full over the
    past), then one token at a time."""
    chunks, i = [], 0
    for n in prefill:
        chunks.append(ids[i:i + n])
        i += n
    return chunks + [[t] for t in ids[i:]]


@pytest.fixture(scope="module", params=KINDS, ids=KIND_IDS)
def exported(request, tmp_path_factory):
    kind, kw = request.param
    kw = dict(kw)
    attention = kw.pop("attention", "gqa")
    model = small_model(kind, **kw)
    out = tmp_path_factory.mktemp(kind) / "model"
    export_small(model, str(out), attention=attention)
    ids = np.random.default_rng(0).integers(6, model.cfg.vocab_size, 36).tolist()
    return model, str(out), ids


def test_onnxruntime_python(exported):
    model, folder, ids = exported
    lm = OrtLM(folder)
    chunks = chunks_of(ids)
    steps = [lm.step(c, num_logits=len(c)) for c in chunks]
    maxdiff = compare(model, ids, chunks, steps)
    print(f"\n[parity] {os.path.basename(os.path.dirname(folder))} {model.cfg.ffn_kind}: PyTorch vs onnxruntime (Python) logits maxdiff {maxdiff:.2e}")
    assert maxdiff <= LIMIT


def test_onnxruntime_python_token_by_token(exported):
    """T = 1 with P = 0 first, then single tokens only."""
    model, folder, ids = exported
    lm = OrtLM(folder)
    chunks = [[t] for t in ids[:12]]
    steps = [lm.step(c) for c in chunks]
    assert compare(model, ids[:12], chunks, steps) <= LIMIT


@pytest.mark.skipif(not node_available(), reason="node or node_modules/onnxruntime-node missing")
def test_onnxruntime_node(exported, tmp_path):
    model, folder, ids = exported
    chunks = chunks_of(ids)
    req, out = tmp_path / "req.json", tmp_path / "out.json"
    req.write_text(json.dumps({"chunks": chunks}))
    run_node("run", folder, str(req), str(out))
    steps = json.loads(out.read_text())["steps"]
    steps = [{k: v["data"] for k, v in s.items()} for s in steps]
    maxdiff = compare(model, ids, chunks, steps)
    print(f"\n[parity] {os.path.basename(os.path.dirname(folder))} {model.cfg.ffn_kind}: PyTorch vs onnxruntime-node logits maxdiff {maxdiff:.2e}")
    assert maxdiff <= LIMIT


def test_routing_spreads_in_parity_model(exported):
    model, _, ids = exported
    if model.cfg.ffn_kind != "versatile":
        pytest.skip("baselines have constant routing")
    from export_fixtures import torch_reference
    _, routing = torch_reference(model, ids)
    assert all(len(set(r["loops"][0].tolist())) > 1 for r in routing)


# The checked-in tiny test models ---------------------------------------------------------

TINY_DIRS = [os.path.join(REPO, "models", n) for n in ("tiny-test", "tiny-test-dense")]


@pytest.mark.parametrize("folder", TINY_DIRS, ids=os.path.basename)
def test_checked_in_model_greedy_ids(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    total = sum(e["bytes"] for e in m["files"].values()) + os.path.getsize(os.path.join(folder, "manifest.json"))
    assert total <= 2 * 1024 * 1024
    tv = m["test_vectors"]
    ids, outs = OrtLM(folder).greedy(tv["prompt_ids"], len(tv["greedy_ids"]))
    assert ids == tv["greedy_ids"]
    if "routing_loops" in tv:
        loops = np.concatenate([o["route_loops"] for o in outs[:-1]], axis=1)
        np.testing.assert_array_equal(loops, tv["routing_loops"])
        experts = np.concatenate([o["route_experts"] for o in outs[:-1]], axis=1)
        np.testing.assert_array_equal(experts, tv["routing_experts"])
        # The pinned prompt exercises several loop counts (more than one distinct ℓ per layer).
        assert all(len(set(layer[:len(tv["prompt_ids"])])) > 1 for layer in tv["routing_loops"])


@pytest.mark.skipif(not node_available(), reason="node or node_modules/onnxruntime-node missing")
@pytest.mark.parametrize("folder", TINY_DIRS, ids=os.path.basename)
def test_checked_in_model_greedy_ids_node(folder, tmp_path):
    out = tmp_path / "greedy.json"
    run_node("greedy", folder, str(out))
    with open(os.path.join(folder, "manifest.json")) as f:
        expected = json.load(f)["test_vectors"]["greedy_ids"]
    assert json.loads(out.read_text())["greedy_ids"] == expected


@pytest.mark.skipif(not node_available(), reason="node or node_modules/@huggingface/tokenizers missing")
def test_tiny_tokenizer_js_matches_python(tmp_path):
    from tokenizers import Tokenizer
    folder = TINY_DIRS[0]
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    texts = ["export function clamp(value: number) {\n  return x;\n}\n",
             "def f(a, b=12345):\n    return {'k': [a, b]}  # ünï 😀\n\t\n",
             "  const s = `${a}`;\r\n    if (x >= 0x1F) { y += 1e-9 }"]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    run_node("tokenize", folder, str(tmp_path / "texts.json"), str(tmp_path / "out.json"))
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["ids"] == [tok.encode(t, add_special_tokens=False).ids for t in texts]
    assert out["decoded"] == texts


@pytest.mark.skipif(not node_available(), reason="node or node_modules/onnxruntime-node missing")
def test_int8_graph_in_node(tmp_path):
    """MatMulNBits (com.microsoft) runs in onnxruntime-node 1.30 like in Python's onnxruntime."""
    model = small_model("versatile", d_model=64, n_head=2, d_ff=256)
    folder = str(tmp_path / "q8")
    export_small(model, folder, weights_dtype="int8")
    ids = np.random.default_rng(5).integers(6, 2048, 28).tolist()
    chunks = chunks_of(ids)
    lm = OrtLM(folder)
    py = [lm.step(c, num_logits=len(c)) for c in chunks]
    (tmp_path / "req.json").write_text(json.dumps({"chunks": chunks}))
    run_node("run", folder, str(tmp_path / "req.json"), str(tmp_path / "out.json"))
    node = json.loads((tmp_path / "out.json").read_text())["steps"]
    maxdiff = max(float(np.abs(np.asarray(n["logits"]["data"]) - p["logits"].ravel()).max()) for n, p in zip(node, py))
    for n, p in zip(node, py):
        assert n["route_loops"]["data"] == p["route_loops"].ravel().tolist()
    print(f"\n[parity] int8: onnxruntime-node vs onnxruntime (Python) logits maxdiff {maxdiff:.2e}")
    assert maxdiff <= 1e-3


def test_checked_in_models_regenerate_byte_for_byte(tmp_path):
    """make_test_models.py is deterministic and the checked-in folders are its output."""
    import make_test_models
    make_test_models.main(["--out-root", str(tmp_path)])
    for folder in TINY_DIRS:
        name = os.path.basename(folder)
        for f in sorted(os.listdir(folder)):
            with open(os.path.join(folder, f), "rb") as a, open(tmp_path / name / f, "rb") as b:
                assert a.read() == b.read(), f"{name}/{f} differs from a fresh make_test_models.py run; rerun it"
