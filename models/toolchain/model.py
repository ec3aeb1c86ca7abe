"""
A decoder-only code LM whose feed-forward block is VersatileFFN (Nie et al. 2025,
arXiv 2512.14531): one SwiGLU FFN reused wide (8 virtual experts, each a 1/8 slice of
its hidden units, top-2 routed) and deep (the same FFN applied up to 4 times), mixed per
token by a learned loop count. The same code builds the two baselines we compare
against: a dense model (the FFN applied once) and a fixed k-loop model, and the block of
a pretrained dense model upcycled into VersatileFFN ("upcycled", see UpcycledFFN).

Rules are in docs/VERSATILEFFN.md (the upcycled block: docs/UPCYCLING.md); the names of
parameters here are part of the export contract (export.py reads the state dict by name).

Reading order: config, RoPE, attention, FFN, VersatileFFN routing, block, model.
"""
import math
from dataclasses import dataclass, asdict, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

FFN_KINDS = ("versatile", "dense", "loop", "upcycled")


@dataclass
class ModelConfig:
    vocab_size: int = 12288
    n_layer: int = 6
    n_head: int = 6
    d_model: int = 384
    d_ff: int = 1536              # SwiGLU intermediate size h; must divide by n_experts
    context_length: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    ffn_kind: str = "versatile"   # "versatile" | "dense" | "loop"
    max_loops: int = 4            # L_max of the depth path
    n_experts: int = 8            # virtual experts cut from the FFN
    top_k: int = 2
    fixed_loops: int = 4          # only for ffn_kind == "loop"
    # What pretrained sources (qwen2) need; the defaults are this project's own models.
    n_kv_head: int = 0            # grouped-query attention: key/value heads (0: = n_head)
    qkv_bias: bool = False
    tie_embeddings: bool = True   # False: a separate lm_head.weight

    def __post_init__(self):
        if self.ffn_kind not in FFN_KINDS:
            raise ValueError(f"unknown ffn_kind {self.ffn_kind!r}; expected one of {FFN_KINDS}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.d_ff % self.n_experts:
            raise ValueError(f"d_ff {self.d_ff} is not divisible by n_experts {self.n_experts}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError("head_dim must be even for RoPE")
        if self.n_kv_head == 0:
            self.n_kv_head = self.n_head
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_dim(self) -> int:
        return self.n_kv_head * self.head_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; this toolchain knows {sorted(known)}")
        return cls(**d)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).type_as(x)


def rope_tables(head_dim: int, positions: torch.Tensor, theta: float):
    """cos/sin of shape [T, head_dim] for rotate-half RoPE."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).type_as(x)


class CausalSelfAttention(nn.Module):
    """Multi-head attention with grouped-query heads (query head j reads key/value head
    j // (n_head / n_kv_head), as Qwen2 and onnxruntime's GroupQueryAttention do). qkv holds
    the query rows, then the key rows, then the value rows."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, cfg.d_model + 2 * cfg.kv_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, cache: list = None, layer: int = 0):
        """cache: optional per-layer list of (k, v) from earlier positions, updated in place
        (cos/sin then cover the new positions only)."""
        B, T, D = x.shape
        c = self.cfg
        nh, nkv, hd = c.n_head, c.n_kv_head, c.head_dim
        q, k, v = self.qkv(x).split([D, c.kv_dim, c.kv_dim], dim=-1)
        q = apply_rope(q.view(B, T, nh, hd).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, nkv, hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, nkv, hd).transpose(1, 2)
        past = 0
        if cache is not None:
            if cache[layer] is not None:
                past = cache[layer][0].shape[2]
                k, v = torch.cat([cache[layer][0], k], dim=2), torch.cat([cache[layer][1], v], dim=2)
            cache[layer] = (k, v)
        if nkv != nh:
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    """w_in holds the gate half (rows 0..h-1) then the up half (rows h..2h-1), so a
    virtual expert's slice is the same row range in both halves."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.d_ff = cfg.d_ff
        self.w_in = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.w_out = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def hidden(self, x):
        gate, up = self.w_in(x).split(self.d_ff, dim=-1)
        return F.silu(gate) * up

    def forward(self, x):
        return self.w_out(self.hidden(x))


def gumbel_loop_choice(loop_logits, tau: float, training: bool):
    """One-hot over loop counts. Training: straight-through hard Gumbel-softmax, so the
    forward pass uses a discrete choice and gradients reach the depth predictor.
    Inference: argmax (the paper's rule)."""
    if training:
        return F.gumbel_softmax(loop_logits.float(), tau=tau, hard=True).type_as(loop_logits)
    return F.one_hot(loop_logits.argmax(-1), loop_logits.shape[-1]).type_as(loop_logits)


def expert_mask(expert_logits, top_k: int, n_experts: int, d_ff: int):
    """Top-k experts with softmax-over-k weights, expanded to a [.., d_ff] mask that puts
    each chosen expert's weight on its slice of hidden units."""
    top_vals, top_idx = expert_logits.topk(top_k, dim=-1)
    top_w = F.softmax(top_vals.float(), dim=-1).type_as(expert_logits)
    per_expert = torch.zeros_like(expert_logits).scatter(-1, top_idx, top_w)
    return per_expert.repeat_interleave(d_ff // n_experts, dim=-1), top_idx, top_w


def load_balance_loss(expert_logits, top_idx, n_experts: int):
    """Switch-Transformer style: n_experts * sum_e (share of routed slots to e) * (mean router prob of e)."""
    probs = F.softmax(expert_logits.float().reshape(-1, n_experts), dim=-1)
    counts = F.one_hot(top_idx.reshape(-1), n_experts).float().mean(0)
    return n_experts * (counts * probs.mean(0)).sum()


class VersatileFFN(nn.Module):
    """The FFN sub-layer of a block, including its residual: returns Y given H (the
    residual stream after attention). Dense and k-loop baselines share the weights' shape."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)
        if cfg.ffn_kind == "versatile":
            self.depth_router = nn.Linear(cfg.d_model, cfg.max_loops, bias=False)
            self.expert_router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)

    def step(self, h):
        return h + self.ffn(self.ffn_norm(h))

    def forward(self, H, tau: float = 1.0):
        cfg = self.cfg
        if cfg.ffn_kind == "dense":
            return self.step(H), None
        if cfg.ffn_kind == "loop":
            for _ in range(cfg.fixed_loops):
                H = self.step(H)
            return H, None

        loop_logits = self.depth_router(H)
        expert_logits = self.expert_router(H)
        choice = gumbel_loop_choice(loop_logits, tau, self.training)          # [B,T,L]

        # Loop 1's hidden units are shared with the width path (same norm, input, weights).
        h1 = self.ffn.hidden(self.ffn_norm(H))
        mask, top_idx, top_w = expert_mask(expert_logits, cfg.top_k, cfg.n_experts, cfg.d_ff)
        width = H + self.ffn.w_out(mask * h1)

        # All loops are evaluated and the one-hot selects one: training costs ~4.25x dense.
        depth_states = [H + self.ffn.w_out(h1)]
        for _ in range(cfg.max_loops - 1):
            depth_states.append(self.step(depth_states[-1]))
        depth = sum(choice[..., k:k + 1] * depth_states[k] for k in range(cfg.max_loops))

        # λ = (L_max − ℓ)/L_max, written through the one-hot so it carries the ST gradient.
        lam_per_loop = torch.tensor([(cfg.max_loops - (k + 1)) / cfg.max_loops for k in range(cfg.max_loops)],
                                    device=H.device, dtype=choice.dtype)
        lam = (choice * lam_per_loop).sum(-1, keepdim=True)
        Y = (1 - lam) * depth + lam * width

        routing = {
            "loops": choice.argmax(-1) + 1,                  # [B,T]
            "lambda": lam.squeeze(-1),
            "experts": top_idx,                              # [B,T,k]
            "weights": top_w,
            "loop_probs": F.softmax(loop_logits.float(), dim=-1),
            "balance_loss": load_balance_loss(expert_logits, top_idx, cfg.n_experts),
        }
        return Y, routing


class UpcycledFFN(nn.Module):
    """The FFN sub-layer of a pretrained dense model upcycled into VersatileFFN, in a form
    that contains the dense model exactly (a departure from the paper's block; the reasons
    and measurements are in docs/UPCYCLING.md).

    Width: the virtual experts are single hidden units, routed in two stages per token:
    a unit whose gate activation |silu(gate)| is below the layer's `gate_threshold` is
    skipped (its up and down projections are not needed); of the rest, a unit whose
    computed activation |silu(gate)·up| is below `down_threshold` skips the down
    projection. Thresholds 0 keep every unit: exactly the dense FFN. ffn_share is the share
    of the up and down projections' work done, (units up-computed + units down-computed) /
    (2·d_ff), so FFN cost = 1/3 (gate) + 2/3 · ffn_share.
    Depth: ℓ = argmax(depth_router(H)) + 1 as in the paper; loop k ≥ 2 adds
    loop_gate[k-2] · FFN(norm(H_{k-1})) with the full FFN. Both start at zero (ℓ = 1, no-op
    loops), so an untrained extra loop cannot hurt the pretrained function."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)
        self.depth_router = nn.Linear(cfg.d_model, cfg.max_loops, bias=False)
        self.loop_gate = nn.Parameter(torch.zeros(cfg.max_loops - 1))
        self.register_buffer("gate_threshold", torch.zeros(()))
        self.register_buffer("down_threshold", torch.zeros(()))

    def init_identity(self):
        """Routers and gates at the dense model's function: ℓ = 1 everywhere, no skipping."""
        with torch.no_grad():
            self.depth_router.weight.zero_()
            self.loop_gate.zero_()
            self.gate_threshold.zero_()
            self.down_threshold.zero_()

    def forward(self, H, tau: float = 1.0):
        gate, up = self.ffn.w_in(self.ffn_norm(H)).split(self.cfg.d_ff, dim=-1)
        act = F.silu(gate)
        keep_up = act.abs() >= self.gate_threshold
        hidden = act * keep_up * up
        keep_down = keep_up & (hidden.abs() >= self.down_threshold)
        Y = H + self.ffn.w_out(hidden * keep_down)
        loops = self.depth_router(H).argmax(-1) + 1                                      # [B,T]
        for k in range(2, self.cfg.max_loops + 1):
            chosen = loops >= k
            if not bool(chosen.any()):   # the usual case: no token asked for another loop
                break
            Y = Y + chosen.unsqueeze(-1).type_as(Y) * self.loop_gate[k - 2] * self.ffn(self.ffn_norm(Y))
        up_share = keep_up.float().mean(-1)
        return Y, {"loops": loops, "ffn_share": (up_share + keep_down.float().mean(-1)) / 2, "up_share": up_share}


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ffn = UpcycledFFN(cfg) if cfg.ffn_kind == "upcycled" else VersatileFFN(cfg)

    def forward(self, x, cos, sin, tau, cache=None, layer=0):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return self.ffn(x, tau)


class VersatileLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale residual output projections by depth.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("ffn.w_out.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        for block in self.blocks:
            if isinstance(block.ffn, UpcycledFFN):
                block.ffn.init_identity()

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def head_weight(self):
        return self.tok_emb.weight if self.cfg.tie_embeddings else self.lm_head.weight

    def forward(self, idx, targets=None, tau: float = 1.0, cache: list = None):
        """Returns (logits, loss, aux). aux["routing"] is a per-layer list (None for
        baselines); aux["balance_loss"] sums the load-balancing loss over layers.
        The output head is tied to the token embedding unless cfg.tie_embeddings is False.
        cache: optional per-layer list of (k, v), None at first, extended in place: the new
        tokens idx continue the cached ones (greedy decoding)."""
        B, T = idx.shape
        past = 0 if cache is None or cache[0] is None else cache[0][0].shape[2]
        cos, sin = rope_tables(self.cfg.head_dim, torch.arange(past, past + T, device=idx.device), self.cfg.rope_theta)
        x = self.tok_emb(idx)
        routing, balance = [], x.new_zeros((), dtype=torch.float32)
        for i, block in enumerate(self.blocks):
            x, r = block(x, cos, sin, tau, cache, i)
            routing.append(r)
            if r is not None and "balance_loss" in r:
                balance = balance + r["balance_loss"]
        logits = F.linear(self.norm_f(x), self.head_weight())
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss, {"routing": routing, "balance_loss": balance}


def gumbel_tau(step: int, start: float = 5.0, end: float = 0.1, decay: float = 0.99984) -> float:
    """Temperature schedule of the reference code: multiply by `decay` each step, floor at `end`."""
    return max(end, start * decay ** step)
