"""export.py: the model folder (manifest, checksums, card, atomic write), the graph's
per-token sparsity (empty loop levels and experts), fp16 weights, and bad input."""
import hashlib
import json
import os

import numpy as np
import onnx
import pytest

from export_fixtures import TOKENIZER, compare, export_small, small_model

import export
from onnx_infer import OrtLM
from routing_control import force_loops


def test_folder_manifest_and_checksums(tmp_path):
    model = small_model("versatile")
    out = tmp_path / "m"
    m = export_small(model, str(out), display_name="Small", training={"tokens": 123}, metrics={"val_loss": 4.5})
    assert sorted(os.listdir(tmp_path)) == ["m"], "temporary folders left behind"
    assert sorted(os.listdir(out)) == ["README.md", "manifest.json", "model.onnx", "tokenizer.json", "tokenizer_config.json"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == m
    assert m["format"] == "versatileffn-onnx" and m["format_version"] == 1 and m["name"] == "m"
    a = m["architecture"]
    assert (a["kind"], a["n_layer"], a["d_model"], a["max_loops"], a["n_experts"], a["top_k"]) == ("versatile", 2, 48, 4, 8, 2)
    assert a["parameters"] == model.num_params() and a["fixed_loops"] is None
    assert m["graph"]["head_dim"] == 16 and m["graph"]["inputs"]["past_key"] == "past_key_{i}"
    assert m["tokenizer"]["special_ids"] == {"eot": 0, "pad": 1, "fim_prefix": 2, "fim_suffix": 3, "fim_middle": 4, "file_sep": 5}
    assert m["training"]["tokens"] == 123 and m["metrics"]["val_loss"] == 4.5
    for name, entry in m["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    card = (out / "README.md").read_text()
    for heading in ("## Architecture", "## Training data", "## Metrics", "## Intended use", "## Limitations"):
        assert heading in card
    # I/O names of the graph are the manifest's.
    g = onnx.load(str(out / "model.onnx"))
    names = {i.name for i in g.graph.input} | {o.name for o in g.graph.output}
    assert {"input_ids", "num_logits", "past_key_1", "present_value_1", "logits", "route_loops",
            "route_lambda", "route_experts", "route_weights", "route_loop_probs"} <= names


def test_reexport_replaces_folder(tmp_path):
    out = tmp_path / "m"
    export_small(small_model("dense"), str(out))
    (out / "stale.txt").write_text("x")
    export_small(small_model("dense"), str(out))
    assert not (out / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["m"]


def _all_ops(graph):
    for n in graph.node:
        yield n.op_type
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_ops(a.g)


def test_graph_skips_work_structurally(tmp_path):
    """Loops 2..4 and the 8 expert slices are gathered/scattered, not masked; each level
    and the width path sit behind If nodes that skip them when no token needs them."""
    out = tmp_path / "m"
    export_small(small_model("versatile"), str(out))
    ops = list(_all_ops(onnx.load(str(out / "model.onnx")).graph))
    assert ops.count("NonZero") == 2 * (3 + 8)
    assert ops.count("ScatterND") == 2 * (3 + 8)
    assert ops.count("If") == 2 * (3 * 2 + 2)
    assert "Loop" not in ops


@pytest.mark.parametrize("loops", [1, 4, [1, 4], [4, 2]], ids=["all1", "all4", "1then4", "4then2"])
def test_empty_levels(tmp_path, loops):
    """Every token at ℓ=1 leaves loops 2..4 with zero rows; ℓ=4 leaves every expert empty."""
    model = force_loops(small_model("versatile"), loops)
    out = tmp_path / "m"
    export_small(model, str(out))
    ids = np.random.default_rng(1).integers(6, 2048, 10).tolist()
    lm = OrtLM(str(out))
    chunks = [ids[:1], ids[1:6]] + [[t] for t in ids[6:]]     # T=1 with P=0 first
    steps = [lm.step(c, num_logits=len(c)) for c in chunks]
    want = loops if isinstance(loops, list) else [loops] * 2
    assert [set(s.tolist()) for s in steps[1]["route_loops"]] == [{w} for w in want]
    assert compare(model, ids, chunks, steps) <= 1e-4


def test_num_logits_subset(tmp_path):
    model = small_model("versatile")
    out = tmp_path / "m"
    export_small(model, str(out))
    ids = list(range(10, 22))
    full = OrtLM(str(out)).step(ids, num_logits=len(ids))["logits"]
    last3 = OrtLM(str(out)).step(ids, num_logits=3)["logits"]
    assert last3.shape == (1, 3, 2048)
    np.testing.assert_allclose(last3[0], full[0, -3:], atol=1e-5)


def test_fp16_weights(tmp_path):
    model = small_model("versatile")
    f32, f16 = tmp_path / "f32", tmp_path / "f16"
    export_small(model, str(f32))
    m = export_small(model, str(f16), weights_dtype="float16")
    assert m["graph"]["weights_dtype"] == "float16"
    assert (f16 / "model.onnx").stat().st_size < 0.6 * (f32 / "model.onnx").stat().st_size
    ids = np.random.default_rng(2).integers(6, 2048, 32).tolist()
    a = OrtLM(str(f32)).step(ids, num_logits=len(ids))
    b = OrtLM(str(f16)).step(ids, num_logits=len(ids))
    diff = float(np.abs(a["logits"] - b["logits"]).max())
    scale = float(np.abs(a["logits"]).max())
    same_loops = float((a["route_loops"] == b["route_loops"]).mean())
    same_top1 = float((a["logits"].argmax(-1) == b["logits"].argmax(-1)).mean())
    print(f"\n[fp16] logits maxdiff {diff:.3e} (max |logit| {scale:.1f}), same ℓ {same_loops:.1%}, same top-1 {same_top1:.1%}")
    assert diff < 0.02 * scale and same_top1 >= 0.9


def test_int8_weights(tmp_path):
    """MatMulNBits 8-bit weights: runs, stays close to fp32 (quality loss printed)."""
    model = small_model("versatile", d_model=64, n_head=2, d_ff=256)   # K and d_ff/8 divisible by 32
    f32, q8 = tmp_path / "f32", tmp_path / "q8"
    export_small(model, str(f32))
    m = export_small(model, str(q8), weights_dtype="int8")
    assert m["graph"]["weights_dtype"] == "int8"
    ops = list(_all_ops(onnx.load(str(q8 / "model.onnx")).graph))
    assert ops.count("MatMulNBits") == 2 * (4 + 3 * 2 + 8) + 1 and "If" not in ops
    ids = np.random.default_rng(4).integers(6, 2048, 48).tolist()
    a, b = OrtLM(str(f32)), OrtLM(str(q8))
    la, lb = a.step(ids[:40], num_logits=40), b.step(ids[:40], num_logits=40)
    same_top1 = float((la["logits"].argmax(-1) == lb["logits"].argmax(-1)).mean())
    same_loops = float((la["route_loops"] == lb["route_loops"]).mean())
    for t in ids[40:]:   # decode steps run too
        assert np.isfinite(b.step([t])["logits"]).all()
    print(f"\n[int8] same top-1 {same_top1:.1%}, same ℓ {same_loops:.1%}")
    assert same_top1 >= 0.8 and same_loops >= 0.8


def test_shared_kv_graph_option(tmp_path):
    """Experimental kv="shared": fixed-capacity cache buffers + past_length (for in-place
    appends with pre-allocated outputs); not exported by default, FORMAT.md I/O unchanged."""
    import torch
    from onnx_graph import build_graph
    model = small_model("versatile")
    cfg = model.cfg
    path = str(tmp_path / "kv.onnx")
    onnx.save(build_graph(cfg, model.state_dict(), kv="shared"), path)
    lm = OrtLM(path)
    ids = np.random.default_rng(6).integers(6, 2048, 30).tolist()
    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0][0].numpy()
    cap = 64
    past = {f"past_{k}_{i}": np.zeros((1, cfg.n_head, cap, cfg.head_dim), np.float32)
            for i in range(cfg.n_layer) for k in ("key", "value")}
    length, maxdiff = 0, 0.0
    for chunk in [ids[:20], ids[20:24]] + [[t] for t in ids[24:]]:
        names = [o.name for o in lm.sess.get_outputs()]
        feeds = {"input_ids": np.array([chunk]), "num_logits": np.array([len(chunk)]),
                 "past_length": np.array([length]), **past}
        out = dict(zip(names, lm.sess.run(names, feeds)))
        maxdiff = max(maxdiff, float(np.abs(out["logits"][0] - ref[length:length + len(chunk)]).max()))
        past = {k: out[k.replace("past", "present")] for k in past}
        assert out["present_key_0"].shape[2] == cap
        length += len(chunk)
    assert maxdiff <= 1e-4


# Bad input -----------------------------------------------------------------------------

def test_unknown_config_key_cli(tmp_path, capsys):
    rc = export.main(["--random", "--set", "d_modle=64", "--tokenizer", TOKENIZER, "--out", str(tmp_path / "m")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "d_modle" in err and "unknown model config keys" in err
    assert not os.listdir(tmp_path)


def test_bad_tokenizer_leaves_nothing(tmp_path):
    bad = tmp_path / "tok.json"
    bad.write_text(json.dumps({"added_tokens": [{"content": "<|endoftext|>", "id": 3}], "model": {"vocab": {}}}))
    with pytest.raises(export.ExportError, match="tok.json.*<\\|endoftext\\|> must have id 0"):
        export.export_model(small_model("dense").cfg, small_model("dense").state_dict(), str(tmp_path / "m"),
                            tokenizer=str(bad))
    assert sorted(os.listdir(tmp_path)) == ["tok.json"]


def test_state_dict_mismatch(tmp_path):
    model = small_model("versatile")
    sd = model.state_dict()
    del sd["blocks.0.ffn.depth_router.weight"]
    with pytest.raises(export.ExportError, match="missing.*depth_router"):
        export.export_model(model.cfg, sd, str(tmp_path / "m"), tokenizer=TOKENIZER)


def _checkpoint(tmp_path):
    from checkpoint import save_checkpoint
    model = small_model("versatile")
    run = tmp_path / "run"
    save_checkpoint(str(run), model, {"model_config": model.cfg.to_dict(), "step": 7, "tokens": 700,
                                      "metrics": {"val_loss": 3.25}})
    return model, run


def test_checkpoint_export(tmp_path):
    model, run = _checkpoint(tmp_path)
    out = tmp_path / "m"
    assert export.main(["--checkpoint", str(run), "--tokenizer", TOKENIZER, "--out", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["training"]["steps"] == 7 and m["training"]["tokens"] == 700 and m["metrics"]["val_loss"] == 3.25
    ids = list(range(20, 40))
    steps = [OrtLM(str(out)).step(ids, num_logits=len(ids))]
    assert compare(model, ids, [ids], steps) <= 1e-4


@pytest.mark.parametrize("damage", ["truncate", "garbage_sidecar", "missing"])
def test_corrupt_checkpoint(tmp_path, capsys, damage):
    _, run = _checkpoint(tmp_path)
    weights = run / "ckpt.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage_sidecar":
        (run / "ckpt.json").write_text('{"model_config": {')
    else:
        weights.unlink()
    rc = export.main(["--checkpoint", str(run), "--tokenizer", TOKENIZER, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "ckpt." in err and ("restore" in err.lower() or "retrain" in err.lower()), err
    assert not (tmp_path / "m").exists()


def test_gpu_masked_variant(tmp_path):
    """issue 6: same weights, same exporter, no data-dependent control flow, same outputs."""
    model = small_model("versatile")
    out = tmp_path / "m"
    m = export_small(model, str(out), gpu_variant=True)
    assert m["graph"]["variants"]["masked"]["file"] == "model.masked.onnx"
    assert "model.masked.onnx" in m["files"]
    ops = list(_all_ops(onnx.load(str(out / "model.masked.onnx")).graph))
    assert not {"If", "Loop", "NonZero", "ScatterND", "GatherND"} & set(ops)
    ids = np.random.default_rng(3).integers(6, 2048, 24).tolist()
    lm = OrtLM(str(out / "model.masked.onnx"))
    chunks = [ids[:16]] + [[t] for t in ids[16:]]
    steps = [lm.step(c, num_logits=len(c)) for c in chunks]
    assert compare(model, ids, chunks, steps) <= 1e-4
