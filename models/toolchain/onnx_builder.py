"""
The op-by-op ONNX builder under onnx_graph.build_graph, and the quantized weight formats.

Inside the graph, batch size is 1 and activations are [T, d]. Every linear layer is a Gemm
with transB=1 on the PyTorch weight as stored ([out, in]), so no transposed copies are
written and the tied output head reuses the embedding matrix. int8 and int4 weights are
MatMulNBits blocks (QWeight); weight reshapes/slices are constant-folded at session creation.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QBLOCK = 32         # 4-bit weights rounded to nearest and the int8 embedding table: blocks of 32 input features,
                    # one fp32 scale each (GPTQ's 4-bit matrices take blocks of 128: upcycle/gptq.py, INT4_BLOCK)
# 8-bit matrices: blocks of 128 where the input features allow. onnxruntime's CPU kernel (MatMulNBits,
# accuracy level 4) keeps a packed copy of every block's scale and of its weight sum beside the weights,
# 8 bytes a block: with blocks of 32 that is a quarter of an int8 matrix's bytes again. Blocks of 128 took
# the default model's session from 551 to 475 MB of RSS and its decode step ~8% faster (docs/SPEED.md,
# "int8 in blocks of 128, rounded by GPTQ"). Rounded to nearest, as quantize_int8_blocks does for recipes
# without GPTQ, they cost the default model 3 of 1,000 FIM cases; its set-up rounds them by GPTQ instead.
INT8_BLOCK = 128
WEIGHTS_DTYPES = ("float32", "float16", "int8", "int4", "int4-ffn-in", "int4-ffn-in-deep", "int4-ffn-deep", "int4-mixed")
QUANTIZED = ("int8", "int4", "int4-ffn-in", "int4-ffn-in-deep", "int4-ffn-deep", "int4-mixed")
# "int4-mixed": 4 bits for the attention projections and the FFN's gate/up, 8 for the FFN's down
# projection (its inputs are the sparse, heavy-tailed SwiGLU activations: 4 bits there cost the
# most) and for the output head.
INT4_MIXED = ("attn.qkv.weight", "attn.proj.weight", "ffn.w_in.weight")
# "int4-ffn-in-deep" keeps the gate/up of the first blocks in 8 bits: 4 bits cost the first
# layers the most (upcycle/int4_sensitivity.py on Qwen2.5-Coder-0.5B: layers 0-3 2-4x the
# median layer), and keeping 0-5 brought the FIM loss of GPTQ int4 from 1.4 points to none
# measurable (docs/SPEED.md). "int4-ffn-deep" puts those blocks' down projection in 4 bits too: by
# GPTQ in blocks of 128 it cost no FIM exact match on the default model (docs/SPEED.md, "The down
# projection in 4 bits too").
INT8_FIRST_BLOCKS = 6


def weight_bits(weights_dtype: str, name: str) -> int:
    """Bits of a quantized matrix: "int4-ffn-in" keeps int8 everywhere but the FFN's gate/up
    projection (w_in, over half of the weights), the part least sensitive to 4 bits;
    "int4-ffn-in-deep" does so from block INT8_FIRST_BLOCKS on; "int4-ffn-deep" puts both FFN
    projections (gate/up and down) of those blocks in 4 bits."""
    if weights_dtype in ("int4-ffn-in-deep", "int4-ffn-deep"):
        deep = name.startswith("blocks.") and int(name.split(".")[1]) >= INT8_FIRST_BLOCKS
        ffn = ("ffn.w_in.weight",) if weights_dtype == "int4-ffn-in-deep" else ("ffn.w_in.weight", "ffn.w_out.weight")
        return 4 if deep and name.endswith(ffn) else 8
    if weights_dtype == "int4-ffn-in":
        return 4 if name.endswith("ffn.w_in.weight") else 8
    if weights_dtype == "int4-mixed":
        return 4 if name.endswith(INT4_MIXED) else 8
    return 4 if weights_dtype == "int4" else 8


class QWeight:
    """A quantized weight for com.microsoft.MatMulNBits, in PyTorch's [out, in] order, in blocks
    of `block` input features: int8: B uint8 [N, K/block, block], symmetric (zero point 128);
    int4: B uint8 [N, K/block, block/2], two weights a byte (low nibble first), asymmetric with
    packed 4-bit zero points [N, ceil(K/block/2)]. Scales fp32 [N, K/block]."""

    def __init__(self, name: str, n: int, k: int, bits: int, block: int = QBLOCK):
        self.n, self.k, self.bits, self.block = n, k, bits, block
        self.q, self.scales = f"{name}.q{bits}", name + ".scales"
        self.zero_points = name + ".zp" if bits == 4 else None

    def inputs(self, x):
        return [x, self.q, self.scales] + ([self.zero_points] if self.zero_points else [])


def fitting_block(k: int, preferred: int) -> int:
    """The block size of a quantized matrix with k input features: `preferred` where it divides k,
    else QBLOCK (which every model dimension here is a multiple of)."""
    return preferred if k % preferred == 0 else QBLOCK


def int8_block(k: int) -> int:
    """The block size of an 8-bit matrix with k input features."""
    return fitting_block(k, INT8_BLOCK)


def quantize_int8_blocks(w: np.ndarray, rows: int = 4096, block: int = QBLOCK):
    """Symmetric int8 blocks of `block` input features, zero point 128. Row chunks of `rows`
    bound the temporaries (a 150k-row output head would otherwise need several fp32 copies of
    itself); the result is the same as in one piece."""
    n, k = w.shape
    q = np.empty((n, k // block, block), np.uint8)
    scales = np.empty((n, k // block), np.float32)
    for r in range(0, n, rows):
        blocks = w[r:r + rows].reshape(-1, k // block, block)
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
        q[r:r + rows], zps[r:r + rows] = pack_int4(v, zp.astype(np.uint8))
        scales[r:r + rows] = scale
    return q, scales, zps


def pack_int4(levels: np.ndarray, zeros: np.ndarray):
    """MatMulNBits' int4 layout: levels uint8 [N, K/block, block] in 0..15, two a byte (low nibble
    first) -> [N, K/block, block/2]; zero points uint8 [N, K/block], two a byte per row, padded to
    whole bytes -> [N, ceil(K/block/2)]."""
    q = levels[..., 0::2] | (levels[..., 1::2] << 4)
    if zeros.shape[1] % 2:
        zeros = np.concatenate([zeros, np.zeros((len(zeros), 1), np.uint8)], axis=1)
    return q, zeros[:, 0::2] | (zeros[:, 1::2] << 4)


def unpack_int4(q: np.ndarray, zero_points: np.ndarray, n_blocks: int):
    """pack_int4 undone: q uint8 [N, K/block, block/2] and packed zero points (any shape holding N rows)
    -> levels uint8 [N, K] and zero points uint8 [N, K/block]."""
    n = q.shape[0]
    levels = np.stack([q & 0x0F, q >> 4], -1).reshape(n, -1)
    zps = zero_points.reshape(n, -1)
    return levels, np.stack([zps & 0x0F, zps >> 4], -1).reshape(n, -1)[:, :n_blocks]


class Prequantized:
    """A matrix already quantized in QWeight's layout: q uint8 [N, K/block, block] (int8) or
    [N, K/block, block/2] (int4), scales float32 [N, K/block], zero_points packed uint8 (int4,
    flat) or None (int8). The builder makes one for every quantized weight; a state dict entry of
    this type (GPTQ, upcycle/gptq.py) is exported as is, whatever weights_dtype says."""

    def __init__(self, bits: int, q: np.ndarray, scales: np.ndarray, zero_points=None):
        self.bits, self.q, self.scales, self.zero_points = bits, q, scales, zero_points
        self.block = q.shape[2] * (8 // bits)
        self.shape = (q.shape[0], scales.shape[1] * self.block)

    def numel(self) -> int:   # the parameters it stands for (manifests count parameters, not bytes)
        return self.shape[0] * self.shape[1]

    def rows(self, ids) -> "Prequantized":
        """The output rows `ids` (a trimmed head): an int8 row is its own blocks and scales."""
        if self.bits != 8:
            raise ValueError("only 8-bit matrices are cut to rows (the output head stays 8-bit: 4 bits there cost 1.4 FIM points)")
        ids = np.asarray(ids, np.int64)
        return Prequantized(8, self.q[ids], self.scales[ids])


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
        if isinstance(tensor, Prequantized):
            if not matmul:
                raise ValueError(f"{name}: a prequantized weight must feed a MatMulNBits")
            return self._qweight(name, tensor)
        arr = tensor.detach().float().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor, np.float32)
        if matmul and self.weights_dtype in QUANTIZED and arr.shape[1] % QBLOCK == 0:
            if weight_bits(self.weights_dtype, name) == 8:
                return self._qweight(name, Prequantized(8, *quantize_int8_blocks(arr, block=int8_block(arr.shape[1]))))
            q, scales, zps = quantize_int4_blocks(arr)
            return self._qweight(name, Prequantized(4, q, scales, zps.reshape(-1)))
        if self.weights_dtype == "float16":
            self.root.inits.append(numpy_helper.from_array(arr.astype(np.float16), name + ".fp16"))
            return self.op("Cast", [name + ".fp16"], to=TensorProto.FLOAT)
        self.root.inits.append(numpy_helper.from_array(arr, name))
        return name

    def _qweight(self, name: str, p: Prequantized) -> QWeight:
        qw = QWeight(name, *p.shape, bits=p.bits, block=p.block)
        self.root.inits.extend([numpy_helper.from_array(p.q, qw.q), numpy_helper.from_array(p.scales, qw.scales)])
        if qw.zero_points:
            self.root.inits.append(numpy_helper.from_array(p.zero_points, qw.zero_points))
        return qw

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
                           block_size=w.block, accuracy_level=4)
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
