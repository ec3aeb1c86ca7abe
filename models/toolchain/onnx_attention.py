"""
Attention of build_graph's layers, each a factory that returns attend(i, qkv) -> [T, d]:
onnxruntime's GroupQueryAttention (gqa_attention, the default) or the same in standard ONNX
ops (plain_attention, attention="plain"). Grouped-query attention (n_kv_head < n_head) keeps
n_kv_head heads in the KV cache.
"""
import numpy as np
import torch
from onnx import TensorProto

from model import ModelConfig
from onnx_builder import GraphBuilder


def _inv_freq(cfg: ModelConfig) -> np.ndarray:
    # PyTorch's float32 arithmetic (model.rope_tables), so the angles match bit for bit.
    return (1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))).numpy()[None, :]


def gqa_attention(g: GraphBuilder, cfg: ModelConfig, T, S, P0, S0):
    """onnxruntime's GroupQueryAttention (com.microsoft; verified on the CPU EP of onnxruntime
    and onnxruntime-node 1.30; WebGPU has a kernel, unverified): RoPE (rotate-half), cache
    append and causal attention over past + new in one kernel. It reads RoPE tables for
    positions 0..S-1 and takes each new token's position from the cache length."""
    nh, nkv = cfg.n_head, cfg.n_kv_head
    pos = g.op("Cast", [g.op("Range", [g.const(0), S0, g.const(1)])], to=TensorProto.FLOAT)
    angles = g.op("Mul", [g.op("Unsqueeze", [pos, g.const([1])]), g.const(_inv_freq(cfg), np.float32)])  # [S, hd/2]
    cos, sin = g.op("Cos", [angles]), g.op("Sin", [angles])
    seqlens_k = g.op("Cast", [g.op("Sub", [S, g.const([1])])], to=TensorProto.INT32)                  # [1]
    total_len = g.op("Cast", [S0], to=TensorProto.INT32)                                             # scalar

    def attend(i, qkv):
        out = g.op("GroupQueryAttention",
                   [g.op("Unsqueeze", [qkv, g.const([0])]), "", "", f"past_key_{i}", f"past_value_{i}",
                    seqlens_k, total_len, cos, sin],
                   n_out=3, names=[g.fresh("gqa"), f"present_key_{i}", f"present_value_{i}"],
                   domain="com.microsoft", num_heads=nh, kv_num_heads=nkv, do_rotary=1, rotary_interleaved=0)[0]
        return g.op("Squeeze", [out, g.const([0])])
    return attend


def plain_attention(g: GraphBuilder, cfg: ModelConfig, T, S, P0, S0):
    """The same attention in standard ONNX ops: Concat KV cache, explicit RoPE and mask.
    Grouped-query attention: the cache holds n_kv_head heads; each is repeated for its
    n_head / n_kv_head query heads (query head j reads key/value head j // group)."""
    d, nh, nkv, hd = cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim
    group = nh // nkv
    pos = g.op("Range", [P0, S0, g.const(1)])                                                       # [T]
    angles = g.op("Mul", [g.op("Unsqueeze", [g.op("Cast", [pos], to=TensorProto.FLOAT), g.const([1])]),
                          g.const(_inv_freq(cfg), np.float32)])
    angles = g.op("Concat", [angles, angles], axis=1)                                                # [T, hd]
    cos, sin = g.op("Cos", [angles]), g.op("Sin", [angles])
    # Causal mask over [T, S]: key j is visible to new token i iff j <= P + i.
    key_pos = g.op("Range", [g.const(0), S0, g.const(1)])
    visible = g.op("LessOrEqual", [g.op("Unsqueeze", [key_pos, g.const([0])]), g.op("Unsqueeze", [pos, g.const([1])])])
    bias = g.op("Where", [visible, g.const(0.0, np.float32), g.const(-np.inf, np.float32)])

    def rope(x):  # x [nh, T, hd]
        lo = g.op("Slice", [x, g.const([0]), g.const([hd // 2]), g.const([2])])
        hi = g.op("Slice", [x, g.const([hd // 2]), g.const([hd]), g.const([2])])
        rotated = g.op("Concat", [g.op("Neg", [hi]), lo], axis=2)
        return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])

    def heads(t, n):
        return g.op("Transpose", [g.op("Reshape", [t, g.const([-1, n, hd])])], perm=[1, 0, 2])      # [n, T, hd]

    def repeat_kv(t):   # [1, nkv, S, hd] -> [nh, S, hd]
        if group == 1:
            return g.op("Squeeze", [t, g.const([0])])
        t = g.op("Unsqueeze", [g.op("Squeeze", [t, g.const([0])]), g.const([1])])                   # [nkv, 1, S, hd]
        t = g.op("Expand", [t, g.op("Concat", [g.const([nkv, group]), g.op("Shape", [t], start=2)], axis=0)])
        return g.op("Reshape", [t, g.const([nh, -1, hd])])

    def attend(i, qkv):
        kvd = nkv * hd
        q, k, v = g.op("Split", [qkv, g.const([d, kvd, kvd])], n_out=3, axis=1)
        q, k, v = rope(heads(q, nh)), rope(heads(k, nkv)), heads(v, nkv)
        pk = g.op("Concat", [f"past_key_{i}", g.op("Unsqueeze", [k, g.const([0])])], axis=2, name=f"present_key_{i}")
        pv = g.op("Concat", [f"past_value_{i}", g.op("Unsqueeze", [v, g.const([0])])], axis=2, name=f"present_value_{i}")
        K, V = repeat_kv(pk), repeat_kv(pv)
        scores = g.op("MatMul", [g.op("Mul", [q, g.const(1.0 / np.sqrt(hd), np.float32)]),
                                 g.op("Transpose", [K], perm=[0, 2, 1])])
        att = g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1)
        return g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [att, V])], perm=[1, 0, 2]), g.const([-1, d])])
    return attend
