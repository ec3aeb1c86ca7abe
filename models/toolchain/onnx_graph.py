"""
Builds the ONNX graph of models/FORMAT.md directly with onnx.helper, from a ModelConfig and
a PyTorch state dict (parameter names of model.py). Building by hand rather than tracing
gives full control over the one thing a tracer cannot express well: per-token work.

Inside the graph, batch size is 1 and activations are [T, d]. Every linear layer is a Gemm
with transB=1 on the PyTorch weight as stored ([out, in]), so no transposed copies are
written and the tied output head reuses the embedding matrix.

VersatileFFN on the CPU execution provider ("cpu-sparse" variant):
  loop 1     all tokens: h1 = SwiGLU hidden of norm(H); H1 = H + W_out h1
  loops 2..4 If nobody has ℓ ≥ k: skip. If everybody: one plain FFN step. Else rows =
             NonZero(ℓ ≥ k); GatherND -> FFN step -> ScatterND back. A token pays for
             exactly its own ℓ loops, and a decode step never pays for gather/scatter.
  width      If no token has ℓ < 4: skip. If T ≤ 4 and all are easy (decode): gather each
             token's two [d_ff/8, d] slices of W_out and do a batched mat-vec. Else, per
             virtual expert e: the easy tokens that chose e, h1's slice e of those rows
             (hidden units shared with loop 1, see VERSATILEFFN.md) times W_out's column
             slice e, scatter-added. Routing weights are folded into h1 first.
  fusion     Y = (1 − λ)·H_ℓ + λ·(H + width), λ = (4 − ℓ)/4
If nodes cost about 1 µs each on the CPU EP; weight reshapes/slices are constant-folded
at session creation. int8 weights (MatMulNBits) are kept out of If branches, where
onnxruntime does not pre-pack them. Attention is onnxruntime's GroupQueryAttention by default (see
_gqa_attention) or standard ops (attention="plain"); grouped-query attention (n_kv_head < n_head)
keeps n_kv_head heads in the KV cache, and an optional QKV bias is an Add after the qkv product.
The output head is the embedding (tied) or lm_head.weight (tie_embeddings False).

UpcycledFFN (ffn_kind "upcycled", a pretrained dense model's FFN, see _upcycled_ffn): no control
flow. Gate and up come from one w_in product; units with |silu(gate)| below the layer's
threshold are zeroed (masked: every unit is still computed, route_ffn_share reports the kept
share); extra loops are masked full FFN steps, emitted only when the layer's router and loop
gates are not zero.
"""
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from model import ModelConfig

OPSET = 17          # ScatterND reduction needs 16; 17 is well inside onnxruntime(-node) 1.30
IR_VERSION = 8      # the IR version that goes with opset 17

INPUT_NAMES = {"input_ids": "input_ids", "num_logits": "num_logits",
               "past_key": "past_key_{i}", "past_value": "past_value_{i}"}
OUTPUT_NAMES = {"logits": "logits", "present_key": "present_key_{i}", "present_value": "present_value_{i}",
                "loops": "route_loops", "lambda": "route_lambda", "experts": "route_experts",
                "weights": "route_weights", "loop_probs": "route_loop_probs"}
UPCYCLED_EXPERT_SLOTS = 2   # route_experts/route_weights keep FORMAT.md's width 2 (all -1 / 0) for upcycled


def output_names(cfg: ModelConfig) -> dict:
    """The graph's output names by FORMAT.md key: OUTPUT_NAMES, plus route_ffn_share for upcycled."""
    if cfg.ffn_kind == "upcycled":
        return {**OUTPUT_NAMES, "ffn_share": "route_ffn_share"}
    return dict(OUTPUT_NAMES)


QBLOCK = 32         # quantized weights: MatMulNBits blocks of 32 input features, one fp32 scale each
WEIGHTS_DTYPES = ("float32", "float16", "int8", "int4", "int4-ffn-in")
QUANTIZED = ("int8", "int4", "int4-ffn-in")


def weight_bits(weights_dtype: str, name: str) -> int:
    """Bits of a quantized matrix: "int4-ffn-in" keeps int8 everywhere but the FFN's gate/up
    projection (w_in, over half of the weights), the part least sensitive to 4 bits."""
    if weights_dtype == "int4-ffn-in":
        return 4 if name.endswith("ffn.w_in.weight") else 8
    return 4 if weights_dtype == "int4" else 8
LOGIT_FLOOR = -1e9  # the logit of a token a trimmed head leaves out: finite, so 0·logit stays 0


class QWeight:
    """A quantized weight for com.microsoft.MatMulNBits, in PyTorch's [out, in] order:
    int8: B uint8 [N, K/32, 32], symmetric (zero point 128); int4: B uint8 [N, K/32, 16], two
    weights a byte (low nibble first), asymmetric with packed 4-bit zero points [N, K/64].
    Scales fp32 [N, K/32]."""

    def __init__(self, name: str, n: int, k: int, bits: int):
        self.n, self.k, self.bits = n, k, bits
        self.q, self.scales = f"{name}.q{bits}", name + ".scales"
        self.zero_points = name + ".zp" if bits == 4 else None

    def inputs(self, x):
        return [x, self.q, self.scales] + ([self.zero_points] if self.zero_points else [])


def quantize_int8_blocks(w: np.ndarray, rows: int = 4096):
    """Row chunks of `rows` bound the temporaries (a 150k-row output head would otherwise
    need several fp32 copies of itself); the result is the same as in one piece."""
    n, k = w.shape
    q = np.empty((n, k // QBLOCK, QBLOCK), np.uint8)
    scales = np.empty((n, k // QBLOCK), np.float32)
    for r in range(0, n, rows):
        blocks = w[r:r + rows].reshape(-1, k // QBLOCK, QBLOCK)
        scale = np.abs(blocks).max(-1) / 127.0
        scale[scale == 0] = 1.0
        q[r:r + rows] = np.clip(np.round(blocks / scale[..., None]), -127, 127).astype(np.int16) + 128
        scales[r:r + rows] = scale
    return q, scales


def quantize_int4_blocks(w: np.ndarray, rows: int = 4096):
    """Asymmetric 4-bit blocks (min..max onto 0..15, as llama.cpp's Q4_1): a block of
    same-signed weights keeps all 16 levels. Returns packed weights, scales and packed zero
    points in MatMulNBits' layout."""
    n, k = w.shape
    nb = k // QBLOCK
    q = np.empty((n, nb, QBLOCK // 2), np.uint8)
    scales = np.empty((n, nb), np.float32)
    zps = np.empty((n, (nb + 1) // 2), np.uint8)
    for r in range(0, n, rows):
        blocks = w[r:r + rows].reshape(-1, nb, QBLOCK)
        lo, hi = np.minimum(blocks.min(-1), 0.0), np.maximum(blocks.max(-1), 0.0)   # 0 stays exact
        scale = (hi - lo) / 15.0
        scale[scale == 0] = 1.0
        zp = np.clip(np.round(-lo / scale), 0, 15)
        v = np.clip(np.round(blocks / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
        q[r:r + rows] = v[..., 0::2] | (v[..., 1::2] << 4)
        zp = zp.astype(np.uint8)
        if nb % 2:
            zp = np.concatenate([zp, np.zeros((len(zp), 1), np.uint8)], axis=1)
        zps[r:r + rows] = zp[:, 0::2] | (zp[:, 1::2] << 4)
        scales[r:r + rows] = scale
    return q, scales, zps


class GraphBuilder:
    """A tiny op-by-op builder: each call adds one node and returns its output name(s)."""

    def __init__(self, weights_dtype: str, parent: "GraphBuilder" = None):
        self.nodes = []
        self.weights_dtype = weights_dtype
        # A subgraph builder (If branches) shares names, constants and initializers with
        # the main graph: initializers live in the outer scope, visible to every branch.
        self.root = parent.root if parent else self
        if not parent:
            # Initializers go straight into the ModelProto that build_graph returns (appending
            # copies each tensor once; the temporary is dropped at once), so a large model is
            # never held twice, as make_graph + make_model would (each copies every tensor).
            self.model = onnx.ModelProto()
            self.inits, self.n, self._consts = self.model.graph.initializer, 0, {}

    def fresh(self, hint: str) -> str:
        self.root.n += 1
        return f"{hint}_{self.root.n}"

    def if_(self, cond, then_fn, else_fn, elem_type=TensorProto.FLOAT):
        """An If node; each branch function gets a sub-builder and returns its output name."""
        out = self.fresh("if")
        branches = []
        for label, fn in (("then", then_fn), ("else", else_fn)):
            sub = GraphBuilder(self.weights_dtype, parent=self)
            res = fn(sub)
            branch_out = sub.op("Identity", [res])
            branches.append(helper.make_graph(sub.nodes, self.fresh(label), [],
                                              [helper.make_tensor_value_info(branch_out, elem_type, None)]))
        self.nodes.append(helper.make_node("If", [cond], [out], name=self.fresh("n_If"),
                                           then_branch=branches[0], else_branch=branches[1]))
        return out

    def op(self, op_type: str, inputs, n_out: int = 1, name: str = None, names=None, domain: str = None, **attrs):
        outs = names or ([name] if name else [self.fresh(op_type.lower()) for _ in range(n_out)])
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh("n_" + op_type),
                                           domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=np.int64) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        consts = self.root._consts
        if key not in consts:
            name = self.fresh("c")
            self.root.inits.append(numpy_helper.from_array(arr, name))
            consts[key] = name
        return consts[key]

    def weight(self, name: str, tensor, matmul: bool = False):
        """A float weight; stored fp16 and Cast to fp32 when weights_dtype is float16
        (onnxruntime folds the Cast at session creation, so compute stays fp32). With int8 or
        int4, the weights of large matrix products (matmul=True) become QWeights for
        MatMulNBits: a quarter (int8) or under a sixth (int4) of fp32's bytes per decode step."""
        arr = tensor.detach().float().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor, np.float32)
        if matmul and self.weights_dtype in QUANTIZED and arr.shape[1] % QBLOCK == 0:
            qw = QWeight(name, *arr.shape, bits=weight_bits(self.weights_dtype, name))
            if qw.bits == 8:
                q, scales = quantize_int8_blocks(arr)
                self.root.inits.extend([numpy_helper.from_array(q, qw.q), numpy_helper.from_array(scales, qw.scales)])
            else:
                q, scales, zps = quantize_int4_blocks(arr)
                self.root.inits.extend([numpy_helper.from_array(q, qw.q), numpy_helper.from_array(scales, qw.scales),
                                        numpy_helper.from_array(zps.reshape(-1), qw.zero_points)])
            return qw
        if self.weights_dtype == "float16":
            self.root.inits.append(numpy_helper.from_array(arr.astype(np.float16), name + ".fp16"))
            return self.op("Cast", [name + ".fp16"], to=TensorProto.FLOAT)
        self.root.inits.append(numpy_helper.from_array(arr, name))
        return name

    def embedding(self, name: str, tensor, ids):
        """Gather of token rows. With quantized weights the table is stored as int8 blocks
        (the int8 layout of QWeight) and only the gathered rows are dequantized: the table is
        read a row per token, so it costs memory, not bandwidth, and 8 bits keep it exact
        enough at a quarter of fp32's memory."""
        if self.weights_dtype not in QUANTIZED:
            return self.op("Gather", [self.weight(name, tensor), ids], axis=0)
        arr = tensor.detach().float().cpu().numpy()
        q, scales = quantize_int8_blocks(arr)
        self.root.inits.extend([numpy_helper.from_array(q, name + ".q8"), numpy_helper.from_array(scales, name + ".scales")])
        rows = self.op("Cast", [self.op("Gather", [name + ".q8", ids], axis=0)], to=TensorProto.FLOAT)   # [T, K/32, 32]
        rows = self.op("Mul", [self.op("Sub", [rows, self.const(128.0, np.float32)]),
                               self.op("Unsqueeze", [self.op("Gather", [name + ".scales", ids], axis=0), self.const([2])])])
        return self.op("Reshape", [rows, self.const([0, arr.shape[1]])])

    # Small composite helpers ------------------------------------------------------------
    def linear(self, x, w):
        if isinstance(w, QWeight):
            return self.op("MatMulNBits", w.inputs(x), domain="com.microsoft", K=w.k, N=w.n, bits=w.bits,
                           block_size=QBLOCK, accuracy_level=4)
        return self.op("Gemm", [x, w], transB=1)

    def rmsnorm(self, x, w, eps):
        # The exact pattern onnxruntime fuses into one SimplifiedLayerNormalization kernel.
        ms = self.op("ReduceMean", [self.op("Pow", [x, self.const(2.0, np.float32)])], axes=[-1], keepdims=1)
        rms = self.op("Sqrt", [self.op("Add", [ms, self.const(eps, np.float32)])])
        return self.op("Mul", [self.op("Div", [x, rms]), w])

    def swiglu_hidden(self, x, w_in, d_ff):
        gate, up = self.op("Split", [self.linear(x, w_in), self.const([d_ff, d_ff])], n_out=2, axis=1)
        return self.op("Mul", [self.op("Mul", [gate, self.op("Sigmoid", [gate])]), up])

    def rows_where(self, cond):
        """[n, 1] int64 row indices where the vector cond is nonzero (GatherND/ScatterND form)."""
        return self.op("Transpose", [self.op("NonZero", [cond])], perm=[1, 0])

    def count(self, cond):
        """Scalar int64: how many entries of the bool vector cond are true."""
        return self.op("ReduceSum", [self.op("Cast", [cond], to=TensorProto.INT64)], keepdims=0)


ATTENTION = ("gqa", "plain")


VARIANTS = ("cpu-sparse", "masked")


def build_graph(cfg: ModelConfig, sd: dict, weights_dtype: str = "float32", attention: str = "gqa",
                variant: str = "cpu-sparse", kv: str = "concat", head_ids=None) -> onnx.ModelProto:
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
    is LOGIT_FLOOR, so logits keep the full vocabulary's shape and ids."""
    if kv not in ("concat", "shared") or (kv == "shared" and attention != "gqa"):
        raise ValueError(f"kv must be 'concat' or (with gqa attention) 'shared', not {kv!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, not {weights_dtype!r}")
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    g = GraphBuilder(weights_dtype)
    nkv, hd = cfg.n_kv_head, cfg.head_dim     # the KV cache holds the key/value heads only

    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"]),
              helper.make_tensor_value_info("num_logits", TensorProto.INT64, [1])]
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
    ids = g.op("Squeeze", ["input_ids", g.const([0])])                                  # [T]
    T = g.op("Shape", [ids])                                                            # [1]
    P = "past_length" if kv == "shared" else g.op("Slice", [g.op("Shape", ["past_key_0"]), g.const([2]), g.const([3])])
    S = g.op("Add", [P, T])
    T0, P0, S0 = (g.op("Squeeze", [v, g.const([0])]) for v in (T, P, S))
    attend = (_gqa_attention if attention == "gqa" else _plain_attention)(g, cfg, T, S, P0, S0)

    quantized = weights_dtype in QUANTIZED
    emb = None if quantized else g.weight("tok_emb.weight", sd["tok_emb.weight"])
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
            x = _upcycled_ffn(g, cfg, sd, p + "ffn.", x, zeros_T, route)
        else:
            x = _ffn(g, cfg, sd, p + "ffn.", x, T0, zeros_T, route, variant)

    # Head: the last num_logits rows only.
    xs = g.op("Slice", [x, g.op("Sub", [T, "num_logits"]), T, g.const([0])])
    xs = g.rmsnorm(xs, g.weight("norm_f.weight", sd["norm_f.weight"]), cfg.norm_eps)
    head_w = sd["tok_emb.weight"] if cfg.tie_embeddings else sd["lm_head.weight"]
    if head_ids is not None:
        head_ids = np.asarray(head_ids, np.int64)
        if head_ids.ndim != 1 or len(head_ids) == 0 or np.any(np.diff(head_ids) <= 0) or head_ids[-1] >= cfg.vocab_size:
            raise ValueError("head_ids must be sorted, distinct ids below vocab_size")
        head_w = head_w[torch.as_tensor(head_ids)]
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


def _inv_freq(cfg: ModelConfig) -> np.ndarray:
    # PyTorch's float32 arithmetic (model.rope_tables), so the angles match bit for bit.
    return (1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))).numpy()[None, :]


def _gqa_attention(g: GraphBuilder, cfg: ModelConfig, T, S, P0, S0):
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


def _plain_attention(g: GraphBuilder, cfg: ModelConfig, T, S, P0, S0):
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


def _ffn(g: GraphBuilder, cfg: ModelConfig, sd: dict, p: str, H, T0, zeros_T, route, variant: str):
    """FFN sub-layer with its residual; appends this layer's routing outputs to `route`."""
    h, tk, L = cfg.d_ff, cfg.top_k, cfg.max_loops
    norm_w = g.weight(p + "ffn_norm.weight", sd[p + "ffn_norm.weight"])
    w_in = g.weight(p + "ffn.w_in.weight", sd[p + "ffn.w_in.weight"], matmul=True)
    w_out = g.weight(p + "ffn.w_out.weight", sd[p + "ffn.w_out.weight"], matmul=True)

    def step(b: GraphBuilder, s):
        return b.op("Add", [s, b.linear(b.swiglu_hidden(b.rmsnorm(s, norm_w, cfg.norm_eps), w_in, h), w_out)])

    if cfg.ffn_kind in ("dense", "loop"):
        n = 1 if cfg.ffn_kind == "dense" else cfg.fixed_loops
        for _ in range(n):
            H = step(g, H)
        _constant_routing(g, cfg, n, zeros_T, route)
        return H

    # Routing.
    loop_logits = g.linear(H, g.weight(p + "depth_router.weight", sd[p + "depth_router.weight"]))     # [T, 4]
    loops = g.op("Add", [g.op("ArgMax", [loop_logits], axis=1, keepdims=0), g.const(1)])              # [T]
    expert_logits = g.linear(H, g.weight(p + "expert_router.weight", sd[p + "expert_router.weight"]))  # [T, 8]
    top_vals, top_idx = g.op("TopK", [expert_logits, g.const([tk])], n_out=2, axis=1, largest=1, sorted=1)
    top_w = g.op("Softmax", [top_vals], axis=1)
    lam = g.op("Div", [g.op("Cast", [g.op("Sub", [g.const(L), loops])], to=TensorProto.FLOAT),
                       g.const(float(L), np.float32)])                                                # [T]
    easy = g.op("Less", [loops, g.const(L)])                                                          # [T] bool
    easy_col = g.op("Unsqueeze", [easy, g.const([1])])
    route["loops"].append(loops)
    route["lambda"].append(lam)
    route["experts"].append(g.op("Where", [easy_col, top_idx, g.const(-1)]))
    route["weights"].append(g.op("Where", [easy_col, top_w, g.const(0.0, np.float32)]))
    route["loop_probs"].append(g.op("Softmax", [loop_logits], axis=1))

    # Loop 1 for every token; its hidden units also feed the width path.
    h1 = g.swiglu_hidden(g.rmsnorm(H, norm_w, cfg.norm_eps), w_in, h)                                # [T, h]
    D = g.op("Add", [H, g.linear(h1, w_out)])
    if variant == "masked":
        D, width = _masked_paths(g, cfg, H, h1, D, w_out, step, loops, expert_logits, top_idx, top_w, easy_col)
        lam_col = g.op("Unsqueeze", [lam, g.const([1])])
        return g.op("Add", [g.op("Mul", [g.op("Sub", [g.const(1.0, np.float32), lam_col]), D]),
                            g.op("Mul", [lam_col, width])])

    # Loops 2..L only on the tokens that chose at least that many. Three cases, so that a
    # decode step (T = 1) never pays for gather/scatter: nobody (skip), everybody (plain
    # step), some (gather the rows, step, scatter back). int8 weights: always the last.
    for k in range(2, L + 1):
        chosen = g.op("GreaterOrEqual", [loops, g.const(k)])
        n_k = None if isinstance(w_in, QWeight) else g.count(chosen)

        def sparse(b, D=D, chosen=chosen):
            idx = b.rows_where(chosen)
            return b.op("ScatterND", [D, idx, step(b, b.op("GatherND", [D, idx]))])

        if isinstance(w_in, QWeight):
            D = sparse(g)   # MatMulNBits inside If branches runs unpacked (100x slower), so no If
            continue
        D = g.if_(g.op("Equal", [n_k, g.const(0)]), lambda b, D=D: D,
                  lambda b, D=D, n_k=n_k, sparse=sparse: b.if_(b.op("Equal", [n_k, T0]), lambda c: step(c, D), sparse))

    w_out_slices = _expert_slices(g, cfg, sd[p + "ffn.w_out.weight"], w_out, p + "ffn.w_out.weight")
    width = _width_path(g, cfg, H, h1, w_out, w_out_slices, expert_logits, top_idx, top_w, easy_col, g.count(easy), T0)
    lam_col = g.op("Unsqueeze", [lam, g.const([1])])
    return g.op("Add", [g.op("Mul", [g.op("Sub", [g.const(1.0, np.float32), lam_col]), D]), g.op("Mul", [lam_col, width])])


def _weighted_hidden(b: GraphBuilder, cfg: ModelConfig, h1, expert_logits, top_idx, top_w, easy_col):
    """h1 with each hidden unit scaled by its expert's routing weight (0 for unchosen
    experts and for tokens with ℓ = 4): the m ⊙ h1 of VERSATILEFFN.md."""
    ne, es = cfg.n_experts, cfg.d_ff // cfg.n_experts
    zeros = b.op("Mul", [expert_logits, b.const(0.0, np.float32)])                                    # [T, 8]
    per_expert = b.op("ScatterElements", [zeros, top_idx, top_w], axis=1)
    per_expert = b.op("Mul", [per_expert, b.op("Cast", [easy_col], to=TensorProto.FLOAT)])
    hw = b.op("Mul", [b.op("Reshape", [h1, b.const([0, ne, es])]), b.op("Unsqueeze", [per_expert, b.const([2])])])
    return b.op("Reshape", [hw, b.const([0, ne * es])]), per_expert


def _masked_paths(g, cfg, H, h1, D1, w_out, step, loops, expert_logits, top_idx, top_w, easy_col):
    """GPU variant: all loops for all tokens, then H_ℓ picked by a one-hot select; the width
    path as one masked output projection."""
    states = [D1]
    for _ in range(cfg.max_loops - 1):
        states.append(step(g, states[-1]))
    one_hot = g.op("Cast", [g.op("Equal", [g.op("Unsqueeze", [loops, g.const([1])]),
                                           g.const(list(range(1, cfg.max_loops + 1)))])], to=TensorProto.FLOAT)  # [T, 4]
    D = None
    for k, s in enumerate(states):
        term = g.op("Mul", [s, g.op("Slice", [one_hot, g.const([k]), g.const([k + 1]), g.const([1])])])
        D = term if D is None else g.op("Add", [D, term])
    hw, _ = _weighted_hidden(g, cfg, h1, expert_logits, top_idx, top_w, easy_col)
    return D, g.op("Add", [H, g.linear(hw, w_out)])


GATHERED_MAX_T = 4   # up to this many tokens, gather the chosen weight slices instead of grouping by expert


def _expert_slices(g: GraphBuilder, cfg: ModelConfig, w_out_tensor, w_out, name: str):
    """W_out[:, slice e] ([d, d_ff/8]) per virtual expert: a Slice that onnxruntime folds at
    session creation for float weights; separately quantized slices for int8 (the blocks of
    32 input features line up with the slices, so the values equal the full matrix's)."""
    es = cfg.d_ff // cfg.n_experts
    if isinstance(w_out, QWeight):
        return [g.weight(f"{name}.e{e}", w_out_tensor[:, e * es:(e + 1) * es], matmul=True) for e in range(cfg.n_experts)]
    return [g.op("Slice", [w_out, g.const([e * es]), g.const([(e + 1) * es]), g.const([1])]) for e in range(cfg.n_experts)]


def _width_path(g: GraphBuilder, cfg: ModelConfig, H, h1, w_out, w_out_slices, expert_logits, top_idx, top_w,
                easy_col, n_easy, T0):
    """H + Σ_k w_k · W_out[:, slice e_k] · h1[slice e_k] for the easy tokens (ℓ < 4), H for the
    others. Only the two chosen slices of the output projection are computed per token."""
    d, ne = cfg.d_model, cfg.n_experts
    es = cfg.d_ff // ne

    def gathered(b):
        # Few tokens, all easy (decode): fetch each token's two [es, d] weight slices and
        # do a batched mat-vec. Copies 2·es·d weights per token, so only for small T.
        w_slices = b.op("Transpose", [b.op("Reshape", [w_out, b.const([d, ne, es])])], perm=[1, 2, 0])  # [8, es, d], folded
        W = b.op("Gather", [w_slices, top_idx], axis=0)                                                  # [T, 2, es, d]
        h_sel = b.op("GatherND", [b.op("Reshape", [h1, b.const([0, ne, es])]),
                                   b.op("Unsqueeze", [top_idx, b.const([2])])], batch_dims=1)           # [T, 2, es]
        h_sel = b.op("Mul", [h_sel, b.op("Unsqueeze", [top_w, b.const([2])])])
        y = b.op("MatMul", [b.op("Unsqueeze", [h_sel, b.const([2])]), W])                               # [T, 2, 1, d]
        return b.op("Add", [H, b.op("ReduceSum", [y, b.const([1, 2])], keepdims=0)])

    def by_expert(b):
        # Many tokens (prefill): per expert, gather the easy tokens that chose it, one
        # [n, es] x [es, d] product, scatter-add. Routing weights are folded into h1 first.
        hw, per_expert = _weighted_hidden(b, cfg, h1, expert_logits, top_idx, top_w, easy_col)
        per_expert_t = b.op("Transpose", [per_expert], perm=[1, 0])                                       # [8, T]
        width = H
        for e in range(ne):
            idx = b.rows_where(b.op("Gather", [per_expert_t, b.const(e)], axis=0))
            rows = b.op("GatherND", [b.op("Slice", [hw, b.const([e * es]), b.const([(e + 1) * es]), b.const([1])]), idx])
            width = b.op("ScatterND", [width, idx, b.linear(rows, w_out_slices[e])], reduction="add")
        return width

    if isinstance(w_out, QWeight):   # no float matrix to gather slices from, and no If (see _ffn)
        return by_expert(g)
    small_all_easy = g.op("And", [g.op("Equal", [n_easy, T0]), g.op("LessOrEqual", [T0, g.const(GATHERED_MAX_T)])])
    return g.if_(g.op("Equal", [n_easy, g.const(0)]), lambda b: H,
                 lambda b: b.if_(small_all_easy, gathered, by_expert))


def _constant_routing(g: GraphBuilder, cfg: ModelConfig, n_loops: int, zeros_T, route, slots: int = None):
    """Baselines: ℓ = the fixed loop count, λ = 0, experts −1 with weight 0, loop_probs
    one-hot at ℓ (zeros when ℓ > max_loops). slots: width of experts/weights (top_k)."""
    tk, L = cfg.top_k if slots is None else slots, cfg.max_loops
    memo = g.root.__dict__.setdefault("_constant_routing", {})
    if (n_loops, tk) in memo:   # every layer with this routing shares one set of tensors
        for key, name in memo[(n_loops, tk)].items():
            route[key].append(name)
        return
    first = len(route["loops"])
    route["loops"].append(g.op("Add", [zeros_T, g.const(n_loops)]))
    zf = g.op("Cast", [zeros_T], to=TensorProto.FLOAT)
    route["lambda"].append(zf)
    col = g.op("Unsqueeze", [zeros_T, g.const([1])])
    route["experts"].append(g.op("Add", [col, g.const([-1] * tk)]))
    route["weights"].append(g.op("Cast", [g.op("Add", [col, g.const([0] * tk)])], to=TensorProto.FLOAT))
    one_hot = [1.0 if k + 1 == n_loops else 0.0 for k in range(L)]
    route["loop_probs"].append(g.op("Add", [g.op("Unsqueeze", [zf, g.const([1])]), g.const(one_hot, np.float32)]))
    memo[(n_loops, tk)] = {key: route[key][first] for key in ("loops", "lambda", "experts", "weights", "loop_probs")}


def _route_output(g: GraphBuilder, per_layer: list, name: str):
    """[L, ...] from the layers' tensors; one Tile when every layer has the same tensor (constant
    routing), which saves two nodes per layer and output on every step."""
    if len(set(per_layer)) == 1 and len(per_layer) > 1:
        one = g.op("Unsqueeze", [per_layer[0], g.const([0])])
        rank = g.op("Shape", [g.op("Shape", [one])])
        reps = g.op("Concat", [g.const([len(per_layer)]), g.op("Expand", [g.const([1]), g.op("Sub", [rank, g.const([1])])])], axis=0)
        return g.op("Tile", [one, reps], name=name)
    return g.op("Concat", [g.op("Unsqueeze", [r, g.const([0])]) for r in per_layer], axis=0, name=name)


def _upcycled_ffn(g: GraphBuilder, cfg: ModelConfig, sd: dict, p: str, H, zeros_T, route):
    """UpcycledFFN (model.py) with its residual, masked (no control flow, so int8 weights
    stay pre-packed): act = silu(gate); keep_up = |act| >= the layer's gate_threshold;
    hidden = act · keep_up · up; keep_down = |hidden| >= down_threshold;
    Y = H + W_out (hidden · keep_down); then, for k = 2..max_loops, Y += [ℓ ≥ k] · loop_gate[k-2] ·
    FFN(norm(Y)), computed for every token and selected per token. A loop whose gate is 0 is
    a no-op and is left out; when every gate or the whole depth router is 0 no loop is
    emitted and ℓ = 1 (route_loop_probs one-hot at 1). Routing: ℓ, λ 0, experts −1 / weight 0,
    and route_ffn_share = (mean(keep_up) + mean(keep_down)) / 2, the share of the up and down
    projections' work done (FFN cost 1/3 + 2/3 · share)."""
    h = cfg.d_ff
    norm_w = g.weight(p + "ffn_norm.weight", sd[p + "ffn_norm.weight"])
    w_in = g.weight(p + "ffn.w_in.weight", sd[p + "ffn.w_in.weight"], matmul=True)
    w_out = g.weight(p + "ffn.w_out.weight", sd[p + "ffn.w_out.weight"], matmul=True)
    threshold = float(sd[p + "gate_threshold"])
    down_threshold = float(sd[p + "down_threshold"]) if p + "down_threshold" in sd else 0.0
    loop_gate = sd[p + "loop_gate"].detach().float().cpu().numpy().reshape(-1)
    router = sd[p + "depth_router.weight"]

    gate, up = g.op("Split", [g.linear(g.rmsnorm(H, norm_w, cfg.norm_eps), w_in), g.const([h, h])], n_out=2, axis=1)
    act = g.op("Mul", [gate, g.op("Sigmoid", [gate])])
    zf = g.op("Cast", [zeros_T], to=TensorProto.FLOAT)                                                # [T] zeros
    one = g.op("Add", [zf, g.const(1.0, np.float32)])                                                # [T] ones
    up_share = down_share = None   # [T] shares of units whose up / down projection is done
    if threshold > 0:
        keep_up = g.op("Cast", [g.op("GreaterOrEqual", [g.op("Abs", [act]), g.const(threshold, np.float32)])],
                       to=TensorProto.FLOAT)                                                          # [T, h]
        act = g.op("Mul", [act, keep_up])
        up_share = g.op("ReduceMean", [keep_up], axes=[-1], keepdims=0)
    hidden = g.op("Mul", [act, up])
    if down_threshold > 0:   # units skipped at the gate have hidden 0 < threshold: skipped here too
        keep_down = g.op("Cast", [g.op("GreaterOrEqual", [g.op("Abs", [hidden]), g.const(down_threshold, np.float32)])],
                         to=TensorProto.FLOAT)
        hidden = g.op("Mul", [hidden, keep_down])
        down_share = g.op("ReduceMean", [keep_down], axes=[-1], keepdims=0)
    Y = g.op("Add", [H, g.linear(hidden, w_out)])
    if up_share is None and down_share is None:   # thresholds 0: every unit, share 1
        share = one
    else:   # without a down threshold the down projection follows the up one
        u = up_share or one
        share = g.op("Mul", [g.op("Add", [u, down_share or u]), g.const(0.5, np.float32)])
    route["ffn_share"].append(share)

    gates = [(k, float(loop_gate[k - 2])) for k in range(2, cfg.max_loops + 1) if float(loop_gate[k - 2]) != 0.0]
    if not gates or not bool(torch.any(router != 0)):
        _constant_routing(g, cfg, 1, zeros_T, {k: v for k, v in route.items() if k != "ffn_share"},
                          slots=UPCYCLED_EXPERT_SLOTS)
        return Y

    loop_logits = g.linear(H, g.weight(p + "depth_router.weight", router))                           # [T, L]
    loops = g.op("Add", [g.op("ArgMax", [loop_logits], axis=1, keepdims=0), g.const(1)])              # [T]
    for k, gk in gates:
        extra = g.linear(g.swiglu_hidden(g.rmsnorm(Y, norm_w, cfg.norm_eps), w_in, h), w_out)
        chosen = g.op("Unsqueeze", [g.op("Cast", [g.op("GreaterOrEqual", [loops, g.const(k)])], to=TensorProto.FLOAT),
                                    g.const([1])])                                                    # [T, 1]
        Y = g.op("Add", [Y, g.op("Mul", [chosen, g.op("Mul", [extra, g.const(gk, np.float32)])])])
    col = g.op("Unsqueeze", [zeros_T, g.const([1])])
    route["loops"].append(loops)
    route["lambda"].append(zf)
    route["experts"].append(g.op("Add", [col, g.const([-1] * UPCYCLED_EXPERT_SLOTS)]))
    route["weights"].append(g.op("Cast", [g.op("Add", [col, g.const([0] * UPCYCLED_EXPERT_SLOTS)])], to=TensorProto.FLOAT))
    route["loop_probs"].append(g.op("Softmax", [loop_logits], axis=1))
    return Y
