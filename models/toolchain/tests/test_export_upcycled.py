"""Exporting pretrained-shaped (qwen2) models: grouped-query attention, QKV bias, untied
head, the upcycled FFN (threshold-skipped hidden units, gated extra loops, route_ffn_share),
int8, external data, and special tokens given by the caller. Tiny random models only."""
import json
import os

import numpy as np
import onnx
import pytest
import torch

import export_fixtures  # noqa: F401  (puts the toolchain on sys.path)

import export
from model import ModelConfig, VersatileLM
from onnx_infer import OrtLM

LIMIT = 1e-4
QWEN_SHAPE = dict(vocab_size=300, n_layer=2, n_head=4, n_kv_head=2, d_model=64, d_ff=128, context_length=256,
                  rope_theta=1e6, norm_eps=1e-6, qkv_bias=True, tie_embeddings=False)
# Special tokens at ids other than 0..5, like Qwen's, with extra stop ids.
SPECIAL_TOKENS = {"eot": "<|endoftext|>", "pad": "<|fim_pad|>", "fim_prefix": "<|fim_prefix|>",
                  "fim_suffix": "<|fim_suffix|>", "fim_middle": "<|fim_middle|>", "file_sep": "<|file_sep|>"}
SPECIAL_IDS = {"eot": 290, "pad": 295, "fim_prefix": 292, "fim_suffix": 294, "fim_middle": 293, "file_sep": 296}
STOP_IDS = [290, 296, 295, 297, 298, 292, 294, 293]
PROMPT = [5, 17, 200, 33, 48, 101, 7, 250, 12, 99, 64, 3]
DECODE = [41, 180, 77]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A minimal tokenizer.json / tokenizer_config.json pair with the specials above."""
    d = tmp_path_factory.mktemp("tok")
    added = [{"id": i, "content": SPECIAL_TOKENS[k], "special": True} for k, i in SPECIAL_IDS.items()]
    added += [{"id": 297, "content": "<|im_end|>", "special": True}, {"id": 298, "content": "<|repo_name|>", "special": True}]
    vocab = {f"t{i}": i for i in range(290)}
    (d / "tokenizer.json").write_text(json.dumps({"added_tokens": added, "model": {"type": "BPE", "vocab": vocab}}))
    (d / "special_config.json").write_text(json.dumps({"clean_up_tokenization_spaces": False}))
    return str(d / "tokenizer.json"), str(d / "special_config.json")


def qwen_model(kind: str = "dense", seed: int = 3, **kw) -> VersatileLM:
    torch.manual_seed(seed)
    model = VersatileLM(ModelConfig(**{**QWEN_SHAPE, "ffn_kind": kind, **kw})).eval()
    with torch.no_grad():
        model.tok_emb.weight.normal_(0.0, 0.5)
        model.lm_head.weight.normal_(0.0, 0.1)
        for b in model.blocks:
            b.attn.qkv.weight.normal_(0.0, 0.1)
            b.attn.qkv.bias.normal_(0.0, 0.1)
            b.ffn.ffn.w_in.weight.normal_(0.0, 0.1)
    return model


def upcycled_from(dense: VersatileLM, thresholds=None, loops: bool = False, down=None) -> VersatileLM:
    """The dense model's weights in an upcycled block (router, gates, thresholds zero), then
    optional per-layer thresholds and, in layer 0 only, a random depth router with nonzero
    loop gates (layer 1 keeps zero gates: its graph has no loop nodes)."""
    cfg = ModelConfig(**{**dense.cfg.to_dict(), "ffn_kind": "upcycled"})
    model = VersatileLM(cfg).eval()
    missing, unexpected = model.load_state_dict(dense.state_dict(), strict=False)
    assert not unexpected and all(any(n in k for n in ("depth_router", "loop_gate", "_threshold")) for k in missing)
    with torch.no_grad():
        for i, b in enumerate(model.blocks):
            if thresholds is not None:
                b.ffn.gate_threshold.fill_(thresholds[i])
            if down is not None:
                b.ffn.down_threshold.fill_(down[i])
            if loops and i == 0:
                torch.manual_seed(11)
                b.ffn.depth_router.weight.normal_(0.0, 0.5)
                b.ffn.loop_gate.copy_(torch.tensor([0.5, -0.25, 0.75]))
    return model


def export_to(model, folder, tok, **kw) -> dict:
    tokenizer, tok_config = tok
    return export.export_model(model.cfg, model.state_dict(), str(folder), tokenizer=tokenizer,
                               tokenizer_config=tok_config, special_tokens=SPECIAL_TOKENS, special_ids=SPECIAL_IDS,
                               stop_ids=STOP_IDS, export_date=None, **kw)


def run_ort(folder):
    """Prompt (all logits) then DECODE one token at a time on the KV cache: logits [S, V]
    and the per-step outputs."""
    lm = OrtLM(str(folder))
    steps = [lm.step(PROMPT, num_logits=len(PROMPT))] + [lm.step([t]) for t in DECODE]
    return np.concatenate([s["logits"][0] for s in steps]), steps


def against_fp32(quantized, fp32, label):
    """A quantized folder's logits against the fp32 export's: (max |diff| / max |logit|, share of
    positions with the same top-1, the quantized run's steps)."""
    a, _ = run_ort(fp32)
    b, steps = run_ort(quantized)
    rel = float(np.abs(a - b).max() / np.abs(a).max())
    same_top1 = float((a.argmax(-1) == b.argmax(-1)).mean())
    print(f"\n[{label}] max |diff| / max |logit| {rel:.3f}, same top-1 {same_top1:.0%}")
    return rel, same_top1, steps


def routing_of(steps, key):
    return np.concatenate([s[key] for s in steps], axis=1)   # [L, S]


@torch.no_grad()
def reference(model):
    logits, _, aux = model(torch.tensor([PROMPT + DECODE]))
    return logits[0].numpy(), aux["routing"]


@pytest.mark.parametrize("attention", ["gqa", "plain"])
def test_dense_qwen2_shape(tmp_path, tok, attention):
    model = qwen_model("dense")
    m = export_to(model, tmp_path / "m", tok, attention=attention)
    logits, steps = run_ort(tmp_path / "m")
    ref, _ = reference(model)
    maxdiff = float(np.abs(logits - ref).max())
    print(f"\n[qwen2-shape dense {attention}] logits maxdiff {maxdiff:.2e}")
    assert maxdiff <= LIMIT
    # The cache holds the key/value heads only.
    assert steps[-1]["present_key_1"].shape == (1, 2, len(PROMPT) + len(DECODE), 16)
    a = m["architecture"]
    assert (a["kind"], a["n_head"], a["n_kv_head"], a["qkv_bias"], a["tie_embeddings"]) == ("dense", 4, 2, True, False)
    assert m["tokenizer"]["special_ids"] == SPECIAL_IDS and m["generation"]["stop_ids"] == STOP_IDS
    assert m["tokenizer"]["config_file"] == "tokenizer_config.json" and "tokenizer_config.json" in m["files"]
    assert "ffn_share" not in m["graph"]["outputs"]
    assert "292" in (tmp_path / "m" / "README.md").read_text()   # the card names the given special ids


def test_upcycled_zero_thresholds_is_the_dense_model(tmp_path, tok):
    dense = qwen_model("dense")
    up = upcycled_from(dense)
    ref_dense, _ = reference(dense)
    ref_up, routing = reference(up)
    assert float(np.abs(ref_up - ref_dense).max()) <= 1e-5
    export_to(dense, tmp_path / "dense", tok)
    m = export_to(up, tmp_path / "up", tok)
    ort_dense, _ = run_ort(tmp_path / "dense")
    ort_up, steps = run_ort(tmp_path / "up")
    assert float(np.abs(ort_up - ref_up).max()) <= LIMIT
    assert float(np.abs(ort_up - ort_dense).max()) <= LIMIT
    np.testing.assert_array_equal(routing_of(steps, "route_ffn_share"), 1.0)
    np.testing.assert_array_equal(routing_of(steps, "route_loops"), 1)
    np.testing.assert_array_equal(routing_of(steps, "route_experts"), -1)
    assert steps[0]["route_experts"].shape == (2, len(PROMPT), 2)
    np.testing.assert_array_equal(routing_of(steps, "route_lambda"), 0.0)
    probs = np.concatenate([s["route_loop_probs"] for s in steps], axis=1)
    np.testing.assert_array_equal(probs, np.broadcast_to([1.0, 0, 0, 0], probs.shape))   # one-hot at ℓ = 1
    # The graph is the dense one plus nothing: no threshold mask, no loops, no control flow.
    ops = [n.op_type for n in onnx.load(str(tmp_path / "up" / "model.onnx")).graph.node]
    assert "Abs" not in ops and "ArgMax" not in ops and "If" not in ops
    a = m["architecture"]
    assert (a["kind"], a["n_experts"], a["top_k"], a["gate_thresholds"]) == ("upcycled", 128, 0, [0.0, 0.0])
    assert m["graph"]["outputs"]["ffn_share"] == "route_ffn_share"
    assert m["graph"]["variant"] == "masked" and list(m["graph"]["variants"]) == ["masked"]


@pytest.fixture(scope="module")
def thresholded():
    """Thresholds that keep roughly half the units, and masked loops in layer 0."""
    return upcycled_from(qwen_model("dense"), thresholds=[0.2, 0.3], loops=True, down=[0.05, 0.0])


def test_upcycled_thresholds_and_loops(tmp_path, tok, thresholded):
    model = thresholded
    ref, routing = reference(model)
    m = export_to(model, tmp_path / "m", tok)
    logits, steps = run_ort(tmp_path / "m")
    maxdiff = float(np.abs(logits - ref).max())
    share = routing_of(steps, "route_ffn_share")
    ref_share = np.stack([r["ffn_share"][0].numpy() for r in routing])
    print(f"\n[upcycled] logits maxdiff {maxdiff:.2e}, kept share {share.mean():.2f}")
    assert maxdiff <= LIMIT
    np.testing.assert_allclose(share, ref_share, atol=1e-6)
    assert 0.2 < share.mean() < 0.9
    loops = routing_of(steps, "route_loops")
    np.testing.assert_array_equal(loops[0], routing[0]["loops"][0].numpy())
    assert len(set(loops[0].tolist())) > 1            # layer 0 spreads over loop counts
    np.testing.assert_array_equal(loops[1], 1)        # layer 1: zero gates, no loop nodes
    probs = np.concatenate([s["route_loop_probs"] for s in steps], axis=1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    assert m["architecture"]["gate_thresholds"] == pytest.approx([0.2, 0.3])
    assert m["architecture"]["down_thresholds"] == pytest.approx([0.05, 0.0])


def test_upcycled_down_threshold_alone(tmp_path, tok):
    """Layer 0 skips only down projections (by |silu(gate)·up|), layer 1 only at the gate."""
    model = upcycled_from(qwen_model("dense"), thresholds=[0.0, 0.2], down=[0.08, 0.0])
    ref, routing = reference(model)
    export_to(model, tmp_path / "m", tok)
    logits, steps = run_ort(tmp_path / "m")
    assert float(np.abs(logits - ref).max()) <= LIMIT
    share = routing_of(steps, "route_ffn_share")
    np.testing.assert_allclose(share, np.stack([r["ffn_share"][0].numpy() for r in routing]), atol=1e-6)
    assert 0.5 < share[0].mean() < 1.0    # up always computed in layer 0: share = (1 + down kept) / 2


def test_upcycled_int8(tmp_path, tok, thresholded):
    model = thresholded
    m = export_to(model, tmp_path / "q8", tok, weights_dtype="int8")
    export_to(model, tmp_path / "f32", tok)
    assert m["graph"]["weights_dtype"] == "int8"
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q8" / "model.onnx")).graph.node]
    # per layer qkv, proj, w_in, w_out; 3 loops x (w_in, w_out) in layer 0; the untied head
    assert ops.count("MatMulNBits") == 2 * 4 + 3 * 2 + 1 and "Gemm" in ops and "If" not in ops
    # Blocks of 128 where the input features allow (the FFN's down projection, K = d_ff = 128), else 32.
    nbits = [n for n in onnx.load(str(tmp_path / "q8" / "model.onnx")).graph.node if n.op_type == "MatMulNBits"]
    blocks = {(a["K"], a["block_size"]) for a in ({x.name: x.i for x in n.attribute} for n in nbits)}
    assert blocks == {(64, 32), (128, 128)}
    rel, same_top1, steps = against_fp32(tmp_path / "q8", tmp_path / "f32", "upcycled int8")
    assert rel < 0.05 and same_top1 >= 0.8
    assert np.isfinite(routing_of(steps, "route_ffn_share")).all()


def test_upcycled_int4(tmp_path, tok, thresholded):
    """4-bit weights (asymmetric blocks of 32) and an int8 embedding table: close to fp32,
    with a quarter of the int8 graph's weight bytes gone."""
    model = thresholded
    m = export_to(model, tmp_path / "q4", tok, weights_dtype="int4")
    export_to(model, tmp_path / "f32", tok)
    assert m["graph"]["weights_dtype"] == "int4"
    graph = onnx.load(str(tmp_path / "q4" / "model.onnx")).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2 * 4 + 3 * 2 + 1 and all(len(n.input) == 4 for n in nbits)   # with zero points
    assert {a.i for n in nbits for a in n.attribute if a.name == "bits"} == {4}
    assert {i.name for i in graph.initializer} >= {"tok_emb.weight.q8", "tok_emb.weight.scales"}
    rel, same_top1, steps = against_fp32(tmp_path / "q4", tmp_path / "f32", "upcycled int4")
    assert rel < 0.15 and same_top1 >= 0.7
    assert np.isfinite(routing_of(steps, "route_ffn_share")).all()


@pytest.mark.parametrize("block", [32, 128])
def test_quantize_int8_blocks_round_trip(block):
    from onnx_graph import quantize_int8_blocks
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 2 * block)).astype(np.float32)
    w[2] = 0.0                            # an all-zero row stays exactly zero
    q, scales = quantize_int8_blocks(w, rows=2, block=block)
    assert q.shape == (5, 2, block) and scales.shape == (5, 2) and q.dtype == np.uint8
    back = ((q.astype(np.float32) - 128.0) * scales[..., None]).reshape(w.shape)
    assert np.abs(back - w).max() <= scales.max() / 2 + 1e-6
    assert np.all(back[2] == 0.0) and q.min() >= 1   # symmetric: -127..127 around the zero point 128


def test_quantize_int4_blocks_round_trip():
    from onnx_graph import QBLOCK, quantize_int4_blocks
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3 * QBLOCK)).astype(np.float32)
    w[1] = np.abs(w[1])                   # a row of one sign keeps all 16 levels
    w[2] = 0.0                            # an all-zero row stays exactly zero
    q, scales, zps = quantize_int4_blocks(w, rows=2)
    assert q.shape == (5, 3, QBLOCK // 2) and scales.shape == (5, 3) and zps.shape == (5, 2)
    v = np.stack([q & 15, q >> 4], -1).reshape(5, 3, QBLOCK).astype(np.float32)
    zp = np.stack([zps & 15, zps >> 4], -1).reshape(5, 4)[:, :3].astype(np.float32)
    back = ((v - zp[..., None]) * scales[..., None]).reshape(w.shape)
    assert np.abs(back - w).max() <= scales.max() / 2 + 1e-6
    assert np.all(back[2] == 0.0)


@pytest.mark.parametrize("dtype", ["float32", "int4"])
def test_trimmed_head(tmp_path, tok, thresholded, dtype):
    """The head keeps some rows: their logits are the full head's, every other token's is
    LOGIT_FLOOR, and logits keep the vocabulary's shape and ids."""
    from onnx_graph import LOGIT_FLOOR
    model = thresholded
    keep = np.array(sorted(set(range(0, 300, 3)) | set(SPECIAL_IDS.values()) | set(STOP_IDS)))
    m = export_to(model, tmp_path / "trim", tok, weights_dtype=dtype, head_ids=keep, head_rule="every third id")
    export_to(model, tmp_path / "full", tok, weights_dtype=dtype)
    assert m["graph"]["head"] == {"tokens": len(keep), "rule": "every third id"}
    a, _ = run_ort(tmp_path / "full")
    b, _ = run_ort(tmp_path / "trim")
    assert b.shape == a.shape
    np.testing.assert_allclose(b[:, keep], a[:, keep], atol=1e-4 if dtype == "float32" else 2e-2)
    dropped = np.setdiff1d(np.arange(a.shape[1]), keep)
    assert np.all(b[:, dropped] == np.float32(LOGIT_FLOOR))
    with pytest.raises(ValueError, match="sorted"):
        export_to(model, tmp_path / "bad", tok, head_ids=keep[::-1])


def test_shared_kv_export(tmp_path, tok, thresholded):
    """kv "shared": the manifest names past_length, and the graph run with its presents bound to
    the past buffers (as the backend runs it) gives the concat graph's logits and routing."""
    model = thresholded
    m = export_to(model, tmp_path / "shared", tok, weights_dtype="int8", kv="shared")
    export_to(model, tmp_path / "concat", tok, weights_dtype="int8")
    assert m["graph"]["kv"] == "shared" and m["graph"]["inputs"]["past_length"] == "past_length"
    a, sa = run_ort(tmp_path / "concat")
    b, sb = run_ort(tmp_path / "shared")
    np.testing.assert_allclose(b, a, atol=1e-5)
    np.testing.assert_allclose(routing_of(sb, "route_ffn_share"), routing_of(sa, "route_ffn_share"), atol=1e-6)
    assert sb[-1]["present_key_0"].shape[2] == model.cfg.context_length   # the whole buffer


def test_embeddings_file(tmp_path, tok, thresholded):
    """embeddings "file": the int8 table leaves the graph for embeddings.safetensors (listed and
    checksummed), the graph takes inputs_embeds, and the logits and routing are the in-graph
    table's bit for bit (the same int8 rows, dequantized with the same float32 arithmetic)."""
    model = thresholded
    m = export_to(model, tmp_path / "rows", tok, weights_dtype="int4", kv="shared", embeddings="file")
    export_to(model, tmp_path / "ids", tok, weights_dtype="int4", kv="shared")
    g = m["graph"]
    assert g["embeddings"] == {"file": "embeddings.safetensors", "layout": "int8-block32"}
    assert "input_ids" not in g["inputs"] and g["inputs"]["inputs_embeds"] == "inputs_embeds"
    assert "embeddings.safetensors" in m["files"]
    graph = onnx.load(str(tmp_path / "rows" / "model.onnx"))
    assert [i.name for i in graph.graph.input][:2] == ["inputs_embeds", "num_logits"]
    assert not any(t.name.startswith("tok_emb") for t in graph.graph.initializer)
    a, sa = run_ort(tmp_path / "ids")
    b, sb = run_ort(tmp_path / "rows")
    np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(routing_of(sb, "route_ffn_share"), routing_of(sa, "route_ffn_share"))
    assert "embeddings.safetensors" in (tmp_path / "rows" / "README.md").read_text()


def test_embeddings_file_needs_quantized_weights(tmp_path, tok, thresholded):
    with pytest.raises(export.ExportError, match="embeddings"):
        export_to(thresholded, tmp_path / "f32", tok, embeddings="file")
    assert not (tmp_path / "f32").exists()


def test_external_data_forced(tmp_path, tok, thresholded):
    model = thresholded
    m = export_to(model, tmp_path / "ext", tok, external_data=True)
    folder = tmp_path / "ext"
    assert "model.onnx.data" in m["files"] and m["graph"]["external_data"] == ["model.onnx.data"]
    assert sorted(os.listdir(folder)) == ["README.md", "manifest.json", "model.onnx", "model.onnx.data",
                                         "tokenizer.json", "tokenizer_config.json"]
    import hashlib
    data = (folder / "model.onnx.data").read_bytes()
    assert m["files"]["model.onnx.data"] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert (folder / "model.onnx").stat().st_size < len(data) / 4     # the weights are in the data file
    ref, _ = reference(model)
    logits, _ = run_ort(folder)
    assert float(np.abs(logits - ref).max()) <= LIMIT
    assert "model.onnx.data" in (folder / "README.md").read_text()


def test_special_ids_checked_against_tokenizer(tmp_path, tok):
    model = qwen_model("dense")
    with pytest.raises(export.ExportError, match="<\\|fim_pad\\|> must have id 1"):
        export.export_model(model.cfg, model.state_dict(), str(tmp_path / "m"), tokenizer=tok[0],
                            special_tokens=SPECIAL_TOKENS, special_ids={**SPECIAL_IDS, "pad": 1})
    with pytest.raises(export.ExportError, match="outside the model's vocabulary"):
        export.export_model(model.cfg, model.state_dict(), str(tmp_path / "m"), tokenizer=tok[0],
                            special_tokens=SPECIAL_TOKENS, special_ids=SPECIAL_IDS, stop_ids=[300])
    assert not os.listdir(tmp_path)


def node_logits(tmp_path, folders, vocab_size) -> dict:
    """Each folder under tmp_path run by the backend's own code (parity_node.ts) on PROMPT, then
    DECODE one token at a time on its KV cache: logits [S, V] by folder name."""
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"chunks": [PROMPT] + [[t] for t in DECODE]}))
    out = {}
    for name in folders:
        export_fixtures.run_node("run", str(tmp_path / name), str(req), str(tmp_path / f"{name}.json"))
        steps = json.loads((tmp_path / f"{name}.json").read_text())["steps"]
        out[name] = np.concatenate([np.asarray(s["logits"]["data"], np.float32).reshape(-1, vocab_size) for s in steps])
    return out


@pytest.mark.skipif(not export_fixtures.node_available(), reason="node or node_modules/onnxruntime-node missing")
def test_upcycled_zero_thresholds_is_the_dense_model_in_node(tmp_path, tok):
    """The identity the upcycling builds on, in onnxruntime-node (the backend's runtime):
    "all units, one loop" gives the dense model's logits, prompt and KV-cache decode alike."""
    dense = qwen_model("dense")
    up = upcycled_from(dense)
    export_to(dense, tmp_path / "dense", tok)
    export_to(up, tmp_path / "up", tok)
    out = node_logits(tmp_path, ("dense", "up"), dense.cfg.vocab_size)
    ref, _ = reference(dense)
    assert out["up"].shape == ref.shape
    assert float(np.abs(out["up"] - out["dense"]).max()) <= LIMIT
    assert float(np.abs(out["up"] - ref).max()) <= LIMIT


def test_routing_shares_are_computed_within_their_layer(tmp_path, tok):
    """Every node of the upcycled graph is needed for the logits: a node only the routing outputs
    need (a share's ReduceMean) is run by onnxruntime's default order after the whole network,
    which keeps its layer's [T, d_ff] masks alive until then (~1 MB per prompt token on the
    default model, docs/SPEED.md)."""
    model = upcycled_from(qwen_model("dense"), thresholds=[0.1, 0.2], down=[0.08, 0.05])
    export_to(model, tmp_path / "m", tok)
    graph = onnx.load(str(tmp_path / "m" / "model.onnx")).graph
    producer = {out: n for n in graph.node for out in n.output}
    needed, todo = set(), ["logits"]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.name not in needed:
            needed.add(node.name)
            todo.extend(node.input)
    masks = [n for n in graph.node if n.op_type == "ReduceMean" and n.input[0] in producer
             and producer[n.input[0]].op_type == "Cast"]   # the share of a keep mask (RMSNorm's are of Pow)
    assert len(masks) == 4                       # keep_up and keep_down shares of both layers
    assert all(n.name in needed for n in masks)


@pytest.mark.skipif(not export_fixtures.node_available(), reason="node or node_modules/onnxruntime-node missing")
def test_embeddings_file_in_node(tmp_path, tok, thresholded):
    """The backend reads the rows itself (embeddingRows.ts): onnxruntime-node gives the in-graph
    table's logits bit for bit, prompt and KV-cache decode alike, and Python's OrtLM agrees."""
    model = thresholded
    export_to(model, tmp_path / "rows", tok, weights_dtype="int4", kv="shared", embeddings="file")
    export_to(model, tmp_path / "ids", tok, weights_dtype="int4", kv="shared")
    out = node_logits(tmp_path, ("ids", "rows"), model.cfg.vocab_size)
    np.testing.assert_array_equal(out["rows"], out["ids"])
    python, _ = run_ort(tmp_path / "rows")
    np.testing.assert_allclose(out["rows"], python, atol=1e-5)

