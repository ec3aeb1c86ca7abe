"""GPTQ weights (upcycle/gptq.py), 4-bit and 8-bit: better layer outputs than rounding, the
grid and layout MatMulNBits reads, and an exported graph that computes with exactly those
weights. Tiny random models only."""
import os
import sys

import numpy as np
import pytest
import torch

import export_fixtures  # noqa: F401  (puts the toolchain on sys.path)
from test_export_upcycled import PROMPT, export_to, qwen_model, run_ort, tok  # noqa: F401  (tok: fixture)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "upcycle"))
import gptq  # noqa: E402
from onnx_builder import QBLOCK, Prequantized, unpack_int4  # noqa: E402


def correlated_inputs(n: int, k: int, seed: int) -> torch.Tensor:
    """Inputs whose features are correlated and unequally large, as a layer's real inputs are
    (what GPTQ exploits)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) * torch.linspace(0.1, 2.0, k)
    return torch.randn(n, k, generator=g) @ mix


def rtn(w: torch.Tensor) -> torch.Tensor:
    b = w.reshape(w.shape[0], -1, QBLOCK)
    s, z = gptq.block_grid(b)
    return ((torch.round(b / s) + z).clamp(0, 15) - z).mul(s).reshape(w.shape)


def test_gptq_keeps_the_layer_output_closer_than_rounding():
    torch.manual_seed(0)
    w = torch.randn(48, 128)
    x = correlated_inputs(1024, 128, seed=1)
    levels, scales, zeros = gptq.gptq(w, x.double().T @ x.double())
    assert levels.dtype == np.uint8 and levels.max() <= 15
    assert scales.shape == zeros.shape == (48, 128 // QBLOCK)
    q = torch.from_numpy(gptq.dequantize(levels, scales, zeros))
    err_gptq = float(((x @ (w - q).T) ** 2).mean())
    err_rtn = float(((x @ (w - rtn(w)).T) ** 2).mean())
    print(f"\noutput error: GPTQ {err_gptq:.4f}, rounding {err_rtn:.4f}")
    assert err_gptq < 0.85 * err_rtn     # 119 vs 159 here; without the error feedback it is rounding


def test_gptq_8_bit_blocks_of_128_keep_the_layer_output_closer_than_rounding():
    """The int8 matrices: GPTQ onto the symmetric grid quantize_int8_blocks uses (zero point 128)."""
    from onnx_builder import quantize_int8_blocks
    torch.manual_seed(0)
    w = torch.randn(48, 256)
    x = correlated_inputs(2048, 256, seed=3)
    levels, scales, zeros = gptq.gptq(w, x.double().T @ x.double(), bits=8, block=128)
    assert levels.dtype == np.uint8 and levels.min() >= 1 and scales.shape == (48, 2) and np.all(zeros == 128)
    q = torch.from_numpy(gptq.dequantize(levels, scales, zeros))
    rq, rs = quantize_int8_blocks(w.numpy(), block=128)
    rounded = torch.from_numpy(((rq.astype(np.float32) - 128) * rs[..., None]).reshape(w.shape))
    err_gptq = float(((x @ (w - q).T) ** 2).mean())
    err_rtn = float(((x @ (w - rounded).T) ** 2).mean())
    print(f"\n8-bit output error: GPTQ {err_gptq:.6f}, rounding {err_rtn:.6f}")
    assert err_gptq < 0.85 * err_rtn


def dequantized(p: Prequantized) -> np.ndarray:
    """A Prequantized matrix back in fp32, from its MatMulNBits layout."""
    n, k = p.shape
    if p.bits == 8:
        return ((p.q.astype(np.float32) - 128) * p.scales[..., None]).reshape(n, k)
    levels, zps = unpack_int4(p.q, p.zero_points, p.scales.shape[1])
    return gptq.dequantize(levels, p.scales, zps)


def test_gptq_leaves_unused_features_at_zero():
    w = torch.randn(8, 64)
    x = correlated_inputs(256, 64, seed=2)
    x[:, 5] = 0                                   # a feature no token uses
    levels, scales, zeros = gptq.gptq(w, x.double().T @ x.double())
    assert gptq.dequantize(levels, scales, zeros)[:, 5].tolist() == [0.0] * 8


def test_pack_is_matmulnbits_layout():
    levels = np.arange(2 * 64, dtype=np.uint8).reshape(2, 64) % 16
    zeros = np.array([[3, 4], [5, 6]], np.uint8)
    p = gptq.pack(levels, np.ones((2, 2), np.float32), zeros, 2, 64)
    assert p.q.shape == (2, 2, QBLOCK // 2) and p.shape == (2, 64)
    assert p.q[0, 0, 0] == levels[0, 0] | (levels[0, 1] << 4)
    assert p.zero_points.tolist() == [3 | 4 << 4, 5 | 6 << 4]


def test_4_bit_blocks_of_128_are_what_matmulnbits_computes():
    """The shipped 4-bit layout: GPTQ in blocks of gptq.INT4_BLOCK, packed, run by onnxruntime's
    MatMulNBits (block_size 128), gives the product with the dequantized weights."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnx_graph import IR_VERSION
    n, k = 24, 2 * gptq.INT4_BLOCK
    assert gptq.int4_block(k) == 128 and gptq.int4_block(64) == QBLOCK
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(4))
    x = correlated_inputs(512, k, seed=5)
    p = gptq.pack(*gptq.gptq(w, x.double().T @ x.double(), bits=4, block=gptq.int4_block(k)), n, k)
    assert p.block == 128 and p.q.shape == (n, 2, 64) and p.scales.shape == (n, 2) and p.zero_points.shape == (n,)
    node = helper.make_node("MatMulNBits", ["x", "q", "s", "z"], ["y"], domain="com.microsoft", K=k, N=n, bits=4,
                            block_size=p.block, accuracy_level=4)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                              [numpy_helper.from_array(a, name) for a, name in
                               ((p.q, "q"), (p.scales, "s"), (p.zero_points, "z"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=IR_VERSION)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    xs = x[:8].numpy()
    got = sess.run(None, {"x": xs})[0]
    want = xs @ dequantized(p).T
    assert np.abs(got - want).max() / np.abs(want).max() < 0.01
    assert np.abs(want - xs @ w.numpy().T).max() / np.abs(want).max() > 0.01   # the 4 bits really are there


def test_exported_graph_computes_with_the_gptq_weights(tmp_path, tok):  # noqa: F811
    """Prequantized matrices in an otherwise fp32 export: onnxruntime's logits equal PyTorch's
    with the same dequantized weights (to MatMulNBits' int8-activation accuracy), and differ
    from the unquantized model's (the 4-bit weights really are in the graph)."""
    model = qwen_model("dense")
    windows = np.random.default_rng(0).integers(0, 290, (4, 65))
    pre = gptq.quantize(model, windows, "int4-mixed", log=lambda m: None)
    four = [f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "ffn.ffn.w_in")]
    eight = [f"blocks.{i}.ffn.ffn.w_out.weight" for i in range(2)] + ["lm_head.weight"]
    assert sorted(pre) == sorted(four + eight)
    assert all(isinstance(p, Prequantized) for p in pre.values())
    assert {n: p.bits for n, p in pre.items()} == {**{n: 4 for n in four}, **{n: 8 for n in eight}}
    assert pre["blocks.0.ffn.ffn.w_out.weight"].block == 128 and pre["lm_head.weight"].block == 32   # K 128 / 64
    path = str(tmp_path / "gptq.safetensors")
    gptq.save(pre, path)
    pre = gptq.load(path)
    sd = {**model.state_dict(), **pre}
    export_to(model, tmp_path / "fp32", tok)
    export_to(type("M", (), {"cfg": model.cfg, "state_dict": lambda self: sd})(), tmp_path / "gptq", tok)
    with torch.no_grad():
        for name, p in pre.items():
            model.get_parameter(name).copy_(torch.from_numpy(dequantized(p)))
        want = model(torch.tensor([PROMPT]))[0][0].numpy()
    got = run_ort(tmp_path / "gptq")[0][:len(PROMPT)]
    fp32 = run_ort(tmp_path / "fp32")[0][:len(PROMPT)]
    scale = np.abs(want).max()
    print(f"\nGPTQ graph vs PyTorch with its weights {np.abs(got - want).max() / scale:.4f}; "
          f"vs the unquantized model {np.abs(fp32 - want).max() / scale:.4f}")
    assert np.abs(got - want).max() / scale < 0.01
    assert np.abs(fp32 - want).max() / scale > 3 * np.abs(got - want).max() / scale


@pytest.mark.parametrize("dtype,four_bit", [("int4-ffn-in-deep", ("w_in",)), ("int4-ffn-deep", ("w_in", "w_out"))])
def test_deep_recipes_put_only_the_later_blocks_ffn_in_4_bits(tmp_path, tok, dtype, four_bit):  # noqa: F811
    """The shipped weights ("int4-ffn-deep") and the recipe before them: GPTQ quantizes the FFN's
    gate/up (and down) of blocks INT8_FIRST_BLOCKS.. only, and the exported graph has 4-bit
    MatMulNBits exactly there (every other product 8-bit)."""
    import onnx
    from onnx import numpy_helper
    from onnx_builder import INT8_FIRST_BLOCKS
    n_layer = INT8_FIRST_BLOCKS + 2
    model = qwen_model("dense", n_layer=n_layer)
    windows = np.random.default_rng(0).integers(0, 290, (2, 65))
    pre = gptq.quantize(model, windows, dtype, log=lambda m: None)
    want = sorted(f"blocks.{i}.ffn.ffn.{m}.weight" for i in range(INT8_FIRST_BLOCKS, n_layer) for m in four_bit)
    assert sorted(n for n, p in pre.items() if p.bits == 4) == want
    sd = {**model.state_dict(), **pre}
    m = export_to(type("M", (), {"cfg": model.cfg, "state_dict": lambda self: sd})(), tmp_path / "deep", tok,
                  weights_dtype=dtype)
    assert m["graph"]["weights_dtype"] == dtype
    graph = onnx.load(str(tmp_path / "deep" / "model.onnx")).graph
    bits = {n.input[1]: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node
            if n.op_type == "MatMulNBits"}
    four = sorted(k for k, b in bits.items() if b == 4)
    assert four == sorted(w + ".q4" for w in want)
    assert sum(b == 8 for b in bits.values()) == len(bits) - len(four) > 2 * n_layer
    # The 4-bit weights in the graph are GPTQ's, not a rounding at export.
    inits = {t.name: t for t in graph.initializer}
    for w in want[-len(four_bit):]:
        assert np.array_equal(numpy_helper.to_array(inits[w + ".q4"]), pre[w].q)


def test_calibration_packages_are_pinned_train_split_packages():
    """The GPTQ calibration text must never come from the validation split (the FIM cases are
    drawn from it), and each package must be pinned exactly as the corpus manifest pins it."""
    import json
    corpus = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus")
    manifest = {(p["name"], p["version"]): p for p in json.load(open(os.path.join(corpus, "manifest.json")))["packages"]}
    card = open(os.path.join(corpus, "DATA_CARD.md"), encoding="utf-8").read()
    spec = json.load(open(gptq.CALIBRATION_FILE))
    assert {p["language"] for p in spec["packages"]} == {"python", "javascript", "typescript"}
    for p in spec["packages"]:
        assert manifest[(p["name"], p["version"])] == p
        assert f"| {p['name']} | {p['version']} | {p['registry']} | {p['license']} | train |" in card, p["name"]


def test_int4_sensitivity_reads_back_the_weights_gptq_saved(tmp_path):
    """int4_sensitivity.int4_w_in unpacks a saved GPTQ file into exactly the matrix the levels,
    scales and zero points stand for (nibble order and zero-point packing as MatMulNBits')."""
    import int4_sensitivity
    torch.manual_seed(0)
    w = torch.randn(6, 96)                         # 3 blocks a row: zero points padded to whole bytes
    levels, scales, zeros = gptq.gptq(w, torch.eye(96, dtype=torch.float64))
    path = str(tmp_path / "gptq.safetensors")
    gptq.save({int4_sensitivity.W_IN.format(0): gptq.pack(levels, scales, zeros, 6, 96)}, path)
    back = int4_sensitivity.int4_w_in(path)
    assert list(back) == [0]
    np.testing.assert_array_equal(back[0].numpy(), gptq.dequantize(levels, scales, zeros))


def test_a_trimmed_head_keeps_the_gptq_rows(tmp_path, tok):  # noqa: F811
    """The shipped head is GPTQ's 8-bit head cut to head.json's rows: the graph's head holds
    exactly those rows' blocks and scales, and save/load keeps 8-bit matrices as they were."""
    import onnx
    from onnx import numpy_helper
    model = qwen_model("dense")
    windows = np.random.default_rng(1).integers(0, 290, (2, 65))
    pre = gptq.quantize(model, windows, "int4-ffn-in-deep", log=lambda m: None)
    path = str(tmp_path / "gptq.safetensors")
    gptq.save(pre, path)
    back = gptq.load(path)
    assert sorted(back) == sorted(pre)
    assert all(back[n].bits == pre[n].bits and np.array_equal(back[n].q, pre[n].q) for n in pre)
    keep = np.array(sorted({0, 5, 17, 100, 250, 290, 293}))
    sd = {**model.state_dict(), **back}
    export_to(type("M", (), {"cfg": model.cfg, "state_dict": lambda self: sd})(), tmp_path / "trim", tok,
              weights_dtype="int4-ffn-in-deep", head_ids=keep)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "trim" / "model.onnx")).graph.initializer}
    assert np.array_equal(inits["lm_head.q8"], pre["lm_head.weight"].q[keep])
    assert np.array_equal(inits["lm_head.scales"], pre["lm_head.weight"].scales[keep])
    with pytest.raises(ValueError):
        Prequantized(4, np.zeros((2, 2, 16), np.uint8), np.ones((2, 2), np.float32), np.zeros(2, np.uint8)).rows([0])
