"""
Forces a model's routing without changing its compute: used by the benchmark (ℓ = 1 vs
ℓ = 4 everywhere) and by tests (empty loop levels, empty experts).

The depth router has no bias, so a constant ℓ needs a constant input direction: residual
dimension 0 is made the same for every token (a constant embedding column, and no block
writes to it: row 0 of every attention and FFN output projection is zero). The router
then reads only that dimension, and its logits are a one-hot at the chosen loop count.
"""
import torch

from model import VersatileLM


@torch.no_grad()
def force_loops(model: VersatileLM, loops_per_layer, gap: float = 8.0) -> VersatileLM:
    """loops_per_layer: one ℓ (1..max_loops) per layer, or an int for all layers."""
    cfg = model.cfg
    if isinstance(loops_per_layer, int):
        loops_per_layer = [loops_per_layer] * cfg.n_layer
    model.tok_emb.weight[:, 0] = 1.0
    for block, loops in zip(model.blocks, loops_per_layer):
        block.attn.proj.weight[0] = 0.0
        block.ffn.ffn.w_out.weight[0] = 0.0
        router = block.ffn.depth_router.weight
        router.zero_()
        router[loops - 1, 0] = gap
    return model
