"""
Builds the ONNX graph of models/FORMAT.md directly with onnx.helper, from a ModelConfig and
a PyTorch state dict (parameter names of model.py). Building by hand rather than tracing
gives full control over the one thing a tracer cannot express well: per-token work.

build_graph lays out inputs and outputs (KV cache, routing outputs), the embedding, each
layer's attention (onnx_attention.py: onnxruntime's GroupQueryAttention by default or
standard ops with attention="plain"; an optional QKV bias is an Add after the qkv product)
and FFN (onnx_ffn.py: VersatileFFN per token, dense/k-loop baselines, UpcycledFFN), and the
output head: the embedding (tied) or lm_head.weight (tie_embeddings False), optionally
trimmed to a subset of tokens. The op-by-op builder and the int8/int4 weight formats are in
onnx_builder.py (re-exported here).
"""
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from model import ModelConfig
from onnx_attention import gqa_attention, plain_attention
from onnx_builder import (QBLOCK, QUANTIZED, WEIGHTS_DTYPES, GraphBuilder, Prequantized, QWeight,  # noqa: F401 (re-exported)
                          quantize_int4_blocks, quantize_int8_blocks, weight_bits)
from onnx_ffn import UPCYCLED_EXPERT_SLOTS, ffn, upcycled_ffn

OPSET = 17          # ScatterND reduction needs 16; 17 is well inside onnxruntime(-node) 1.30
IR_VERSION = 8      # the IR version that goes with opset 17

INPUT_NAMES = {"input_ids": "input_ids", "num_logits": "num_logits",
               "past_key": "past_key_{i}", "past_value": "past_value_{i}"}
OUTPUT_NAMES = {"logits": "logits", "present_key": "present_key_{i}", "present_value": "present_value_{i}",
                "loops": "route_loops", "lambda": "route_lambda", "experts": "route_experts",
                "weights": "route_weights", "loop_probs": "route_loop_probs"}


def output_names(cfg: ModelConfig) -> dict:
    """The graph's output names by FORMAT.md key: OUTPUT_NAMES, plus route_ffn_share for upcycled."""
    if cfg.ffn_kind == "upcycled":
        return {**OUTPUT_NAMES, "ffn_share": "route_ffn_share"}
    return dict(OUTPUT_NAMES)


LOGIT_FLOOR = -1e9  # the logit of a token a trimmed head leaves out: finite, so 0·logit stays 0


ATTENTION = ("gqa", "plain")


VARIANTS = ("cpu-sparse", "masked")


def build_graph(cfg: ModelConfig, sd: dict, weights_dtype: str = "float32", attention: str = "gqa",
                variant: str = "cpu-sparse", kv: str = "concat", head_ids=None,
                embeddings: str = "graph") -> onnx.ModelProto:
    """attention: "gqa" uses onnxruntime's GroupQueryAttention contrib op (RoPE, cache append
    and causal attention in one kernel); "plain" spells it out in standard
    ONNX ops (any runtime).
    variant: "cpu-sparse" skips work per token (If/NonZero/GatherND/ScatterND, see the
    module docstring); "masked" has no data-dependent control flow, for GPU providers:
    every token runs all loops and one masked output projection for the width path, and
    the per-token choice is a select. Same I/O and same routing outputs; compute spent is
    accounted from route_loops, as on the CPU.
    head_ids: a sorted subset of token ids for a trimmed output head (models/FORMAT.md,
    "Trimmed head"): the head's product covers those rows only and every other token's logit
    is LOGIT_FLOOR, so logits keep the full vocabulary's shape and ids.
    embeddings: "graph" (the table is an initializer, the graph takes input_ids) or, with
    quantized weights, "file": the graph takes inputs_embeds [1, T, d_model], rows of the int8
    table that embedding_file.py writes beside it (models/FORMAT.md)."""
    if kv not in ("concat", "shared") or (kv == "shared" and attention != "gqa"):
        raise ValueError(f"kv must be 'concat' or (with gqa attention) 'shared', not {kv!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, not {weights_dtype!r}")
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    if embeddings not in ("graph", "file") or (embeddings == "file" and weights_dtype not in QUANTIZED):
        raise ValueError(f"embeddings must be 'graph' or (with quantized weights) 'file', not {embeddings!r}")
    g = GraphBuilder(weights_dtype)
    nkv, hd = cfg.n_kv_head, cfg.head_dim     # the KV cache holds the key/value heads only

    first = (helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"]) if embeddings == "graph" else
             helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [1, "T", cfg.d_model]))
    inputs = [first, helper.make_tensor_value_info("num_logits", TensorProto.INT64, [1])]
    if kv == "shared":   # fixed-capacity cache buffers; the valid length comes as an input
        inputs.append(helper.make_tensor_value_info("past_length", TensorProto.INT64, [1]))
    cache_len = "C" if kv == "shared" else "P"
    present_len = "C" if kv == "shared" else "S"
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "N", cfg.vocab_size])]
    for i in range(cfg.n_layer):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", TensorProto.FLOAT, [1, nkv, cache_len, hd]))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", TensorProto.FLOAT, [1, nkv, present_len, hd]))
    L = cfg.n_layer
    upcycled = cfg.ffn_kind == "upcycled"
    slots = UPCYCLED_EXPERT_SLOTS if upcycled else cfg.top_k
    outputs += [helper.make_tensor_value_info("route_loops", TensorProto.INT64, [L, "T"]),
                helper.make_tensor_value_info("route_lambda", TensorProto.FLOAT, [L, "T"]),
                helper.make_tensor_value_info("route_experts", TensorProto.INT64, [L, "T", slots]),
                helper.make_tensor_value_info("route_weights", TensorProto.FLOAT, [L, "T", slots]),
                helper.make_tensor_value_info("route_loop_probs", TensorProto.FLOAT, [L, "T", cfg.max_loops])]
    if upcycled:
        outputs.append(helper.make_tensor_value_info("route_ffn_share", TensorProto.FLOAT, [L, "T"]))

    # Lengths and positions: P from the first layer's past, T from the new tokens.
    if embeddings == "graph":
        ids = g.op("Squeeze", ["input_ids", g.const([0])])                              # [T]
        T = g.op("Shape", [ids])                                                        # [1]
    else:
        rows = g.op("Squeeze", ["inputs_embeds", g.const([0])])                         # [T, d]
        T = g.op("Shape", [rows], start=0, end=1)                                       # [1]
    P = "past_length" if kv == "shared" else g.op("Slice", [g.op("Shape", ["past_key_0"]), g.const([2]), g.const([3])])
    S = g.op("Add", [P, T])
    T0, P0, S0 = (g.op("Squeeze", [v, g.const([0])]) for v in (T, P, S))
    attend = (gqa_attention if attention == "gqa" else plain_attention)(g, cfg, T, S, P0, S0)

    quantized = weights_dtype in QUANTIZED
    emb = None if quantized else g.weight("tok_emb.weight", sd["tok_emb.weight"])
    if embeddings == "file":
        x = rows
    else:
        x = g.embedding("tok_emb.weight", sd["tok_emb.weight"], ids) if quantized else g.op("Gather", [emb, ids], axis=0)   # [T, d]
    route_names = output_names(cfg)
    route = {k: [] for k in ("loops", "lambda", "experts", "weights", "loop_probs", "ffn_share") if k in route_names}
    zeros_T = g.op("ConstantOfShape", [T], value=helper.make_tensor("z", TensorProto.INT64, [1], [0]))
    for i in range(L):
        p = f"blocks.{i}."
        hn = g.rmsnorm(x, g.weight(p + "attn_norm.weight", sd[p + "attn_norm.weight"]), cfg.norm_eps)
        qkv = g.linear(hn, g.weight(p + "attn.qkv.weight", sd[p + "attn.qkv.weight"], matmul=True))
        if cfg.qkv_bias:
            qkv = g.op("Add", [qkv, g.weight(p + "attn.qkv.bias", sd[p + "attn.qkv.bias"])])
        o = attend(i, qkv)
        x = g.op("Add", [x, g.linear(o, g.weight(p + "attn.proj.weight", sd[p + "attn.proj.weight"], matmul=True))])
        if upcycled:
            x = upcycled_ffn(g, cfg, sd, p + "ffn.", x, zeros_T, route)
        else:
            x = ffn(g, cfg, sd, p + "ffn.", x, T0, zeros_T, route, variant)

    # Head: the last num_logits rows only.
    xs = g.op("Slice", [x, g.op("Sub", [T, "num_logits"]), T, g.const([0])])
    xs = g.rmsnorm(xs, g.weight("norm_f.weight", sd["norm_f.weight"]), cfg.norm_eps)
    head_w = sd["tok_emb.weight"] if cfg.tie_embeddings else sd["lm_head.weight"]
    if head_ids is not None:
        head_ids = np.asarray(head_ids, np.int64)
        if head_ids.ndim != 1 or len(head_ids) == 0 or np.any(np.diff(head_ids) <= 0) or head_ids[-1] >= cfg.vocab_size:
            raise ValueError("head_ids must be sorted, distinct ids below vocab_size")
        head_w = head_w.rows(head_ids) if isinstance(head_w, Prequantized) else head_w[torch.as_tensor(head_ids)]
    if head_ids is None and cfg.tie_embeddings and not quantized:
        head = emb   # tied: the embedding matrix itself
    else:        # untied, trimmed or quantized: a matrix of its own (MatMulNBits when quantized)
        head = g.weight("lm_head", head_w, matmul=True)
    logits = g.linear(xs, head)                                                          # [N, V or K]
    if head_ids is not None:
        # Column K is LOGIT_FLOOR; every token id gathers its column (K when trimmed away).
        column = np.full(cfg.vocab_size, len(head_ids), np.int32)
        column[head_ids] = np.arange(len(head_ids), dtype=np.int32)
        padded = g.op("Pad", [logits, g.const([0, 0, 0, 1]), g.const(LOGIT_FLOOR, np.float32)])
        logits = g.op("Gather", [padded, g.const(column, np.int32)], axis=1)
    g.op("Unsqueeze", [logits, g.const([0])], name="logits")
    for key in route:
        _route_output(g, route[key], route_names[key])

    # What helper.make_graph + make_model write, without copying the initializers.
    model = g.model
    model.graph.node.extend(g.nodes)
    model.graph.name = f"vffn_{cfg.ffn_kind}"
    model.graph.input.extend(inputs)
    model.graph.output.extend(outputs)
    uses_ms = attention == "gqa" or quantized
    model.ir_version = IR_VERSION
    model.opset_import.extend([helper.make_opsetid("", OPSET)] +
                              ([helper.make_opsetid("com.microsoft", 1)] if uses_ms else []))
    model.producer_name = "vffn-export"
    return model


def _route_output(g: GraphBuilder, per_layer: list, name: str):
    """[L, ...] from the layers' tensors; one Tile when every layer has the same tensor (constant
    routing), which saves two nodes per layer and output on every step."""
    if len(set(per_layer)) == 1 and len(per_layer) > 1:
        one = g.op("Unsqueeze", [per_layer[0], g.const([0])])
        rank = g.op("Shape", [g.op("Shape", [one])])
        reps = g.op("Concat", [g.const([len(per_layer)]), g.op("Expand", [g.const([1]), g.op("Sub", [rank, g.const([1])])])], axis=0)
        return g.op("Tile", [one, reps], name=name)
    return g.op("Concat", [g.op("Unsqueeze", [r, g.const([0])]) for r in per_layer], axis=0, name=name)
