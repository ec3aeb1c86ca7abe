"""The model's formulations agree with the paper's definitions (VERSATILEFFN.md):
the fast training path (width from loop 1's hidden state, masked output projection)
equals per-expert computation, and inference equals a per-token reference that runs
exactly ℓ loops and the width path only when ℓ < 4."""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from model import ModelConfig, VersatileLM, rope_tables  # noqa: E402

TINY = dict(vocab_size=97, n_layer=2, n_head=2, d_model=32, d_ff=64, context_length=64)


def routed_model(seed=0, **kw) -> VersatileLM:
    """Random model with routers scaled up so tokens spread over loop counts and experts."""
    torch.manual_seed(seed)
    model = VersatileLM(ModelConfig(**{**TINY, **kw}))
    with torch.no_grad():
        model.tok_emb.weight.normal_(0.0, 0.5)
        for b in model.blocks:
            if model.cfg.ffn_kind == "versatile":
                b.ffn.depth_router.weight.normal_(0.0, 0.5)
                b.ffn.expert_router.weight.normal_(0.0, 0.5)
    return model.double()


def expert_output(ffn, H, e):
    """Virtual expert e on its own: H + W_out[:, slice] · SwiGLU(W_in[slice] · norm(H))."""
    cfg = ffn.cfg
    es = cfg.d_ff // cfg.n_experts
    sl = slice(e * es, (e + 1) * es)
    w_in, w_out = ffn.ffn.w_in.weight, ffn.ffn.w_out.weight
    x = ffn.ffn_norm(H)
    gate, up = x @ w_in[sl].T, x @ w_in[cfg.d_ff:][sl].T
    return H + (F.silu(gate) * up) @ w_out[:, sl].T


def per_token_ffn(ffn, H, loops, experts, weights):
    """Y for one token row H [d] with given ℓ, experts and weights: the block's rule, literally."""
    cfg = ffn.cfg
    depth = H
    for _ in range(loops):
        depth = depth + ffn.ffn(ffn.ffn_norm(depth))
    lam = (cfg.max_loops - loops) / cfg.max_loops
    if loops == cfg.max_loops:
        return depth
    width = sum(w * expert_output(ffn, H, int(e)) for e, w in zip(experts, weights))
    return (1 - lam) * depth + lam * width


@pytest.mark.parametrize("training", [False, True])
def test_fast_width_path_equals_per_expert(training):
    model = routed_model()
    ffn = model.blocks[0].ffn
    ffn.train(training)
    H = torch.randn(3, 17, TINY["d_model"], dtype=torch.float64)
    torch.manual_seed(1)
    Y, r = ffn(H, tau=0.5)
    # The routing outputs themselves: top-2 of the router, softmax over the two.
    top_vals, top_idx = ffn.expert_router(H).topk(2, dim=-1)
    assert torch.equal(r["experts"], top_idx)
    torch.testing.assert_close(r["weights"], F.softmax(top_vals, -1))
    seen = set()
    for b in range(H.shape[0]):
        for t in range(H.shape[1]):
            loops = int(r["loops"][b, t])
            seen.add(loops)
            ref = per_token_ffn(ffn, H[b, t], loops, r["experts"][b, t], r["weights"][b, t])
            torch.testing.assert_close(Y[b, t], ref, rtol=1e-6, atol=1e-6)  # RMSNorm computes in fp32
    assert len(seen) > 1, "routing collapsed to one loop count; the test would not cover the width path"


@torch.no_grad()
def test_inference_matches_per_token_reference():
    model = routed_model(seed=3).eval()
    cfg = model.cfg
    idx = torch.randint(0, cfg.vocab_size, (1, 40))
    logits, _, aux = model(idx)

    # Reference: attention over the sequence as usual, then each token on its own.
    cos, sin = rope_tables(cfg.head_dim, torch.arange(idx.shape[1]), cfg.rope_theta)
    x = model.tok_emb(idx)
    loop_counts = set()
    for layer, block in enumerate(model.blocks):
        H = x + block.attn(block.attn_norm(x), cos.double(), sin.double())
        ffn = block.ffn
        rows = []
        for t in range(H.shape[1]):
            h = H[0, t]
            loops = int(ffn.depth_router(h).argmax()) + 1
            vals, experts = ffn.expert_router(h).topk(2)
            rows.append(per_token_ffn(ffn, h, loops, experts, F.softmax(vals, -1)))
            assert loops == int(aux["routing"][layer]["loops"][0, t])
            loop_counts.add(loops)
        x = torch.stack(rows)[None]
    ref = F.linear(model.norm_f(x), model.tok_emb.weight)
    torch.testing.assert_close(logits, ref, rtol=1e-6, atol=1e-6)
    assert loop_counts == {1, 2, 3, 4}


def test_baselines_have_the_same_parameters_apart_from_routers():
    counts = {k: VersatileLM(ModelConfig(**TINY, ffn_kind=k)).num_params() for k in ("versatile", "dense", "loop")}
    routers = TINY["n_layer"] * (4 + 8) * TINY["d_model"]
    assert counts["dense"] == counts["loop"] == counts["versatile"] - routers


def test_loop_baseline_applies_the_ffn_k_times():
    torch.manual_seed(0)
    model = VersatileLM(ModelConfig(**TINY, ffn_kind="loop", fixed_loops=3)).double().eval()
    ffn = model.blocks[0].ffn
    H = torch.randn(1, 5, TINY["d_model"], dtype=torch.float64)
    ref = H
    for _ in range(3):
        ref = ref + ffn.ffn(ffn.ffn_norm(ref))
    torch.testing.assert_close(ffn(H)[0], ref)


def test_config_round_trip_and_unknown_key():
    cfg = ModelConfig(**TINY, ffn_kind="loop", fixed_loops=2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config keys.*d_modle"):
        ModelConfig.from_dict({**cfg.to_dict(), "d_modle": 3})
    with pytest.raises(ValueError, match="ffn_kind"):
        ModelConfig(**TINY, ffn_kind="moe")
