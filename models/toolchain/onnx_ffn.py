"""
The FFN sub-layer of build_graph's layers, with its residual and routing outputs.

VersatileFFN on the CPU execution provider ("cpu-sparse" variant, see ffn):
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
If nodes cost about 1 µs each on the CPU EP. int8 weights (MatMulNBits) are kept out of If
branches, where onnxruntime does not pre-pack them. The "masked" variant (GPU providers) has
no data-dependent control flow. Dense and k-loop baselines run 1 or fixed_loops plain steps
with constant routing outputs.

UpcycledFFN (ffn_kind "upcycled", a pretrained dense model's FFN, see upcycled_ffn): no control
flow. Gate and up come from one w_in product; units with |silu(gate)| below the layer's
threshold are zeroed (masked: every unit is still computed, route_ffn_share reports the kept
share); extra loops are masked full FFN steps, emitted only when the layer's router and loop
gates are not zero.
"""
import numpy as np
import torch
from onnx import TensorProto

from model import ModelConfig
from onnx_builder import GraphBuilder, QWeight

UPCYCLED_EXPERT_SLOTS = 2   # route_experts/route_weights keep FORMAT.md's width 2 (all -1 / 0) for upcycled


def ffn(g: GraphBuilder, cfg: ModelConfig, sd: dict, p: str, H, T0, zeros_T, route, variant: str):
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

    if isinstance(w_out, QWeight):   # no float matrix to gather slices from, and no If (see ffn)
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


def upcycled_ffn(g: GraphBuilder, cfg: ModelConfig, sd: dict, p: str, H, zeros_T, route):
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
    if share != one:
        # onnxruntime's default execution order runs the nodes that only graph outputs need (these
        # shares) after the whole network, which keeps every layer's [T, d_ff] masks alive until
        # then: ~1 MB per prompt token (+122 MB peak for a 128-token chunk, measured). Adding
        # 0 × share to the layer's output makes the next layer wait for it, so each layer's masks
        # are freed in that layer. Y + 0 is exact.
        Y = g.op("Add", [Y, g.op("Unsqueeze", [g.op("Mul", [share, g.const(0.0, np.float32)]), g.const([1])])])

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
