"""
The two ways evaluate.py runs a model, with one interface (context_length, kind, params,
meta, source, new_stats(), score(x, y, stats), start(prompt), feed(token)):
TorchModel, a training checkpoint in PyTorch with a KV-cache decode path written here, and
OnnxModel, an exported model folder run with onnxruntime (onnx_infer.py) as the backend
runs it. RoutingStats accumulates routing and does the compute accounting
(docs/VERSATILEFFN.md).
"""
import os

import numpy as np
import torch
import torch.nn.functional as F


WIDTH_EXTRA = 1.0 / 12.0      # the width path's extra cost in dense-FFN units (2/8 of W_out = F/12)
GATE_COST = 1.0 / 3.0         # upcycled: the gate projection, always computed (a third of a dense FFN)


def upcycled_cost(share, loops):
    """Upcycled FFN cost in dense-FFN units: the gate projection, the up and down projections
    of the kept share of units, and a full FFN per extra loop (docs/UPCYCLING.md)."""
    return GATE_COST + (1 - GATE_COST) * share + (loops - 1)


class EvalError(RuntimeError):
    pass


class RoutingStats:
    """Per layer: how many tokens chose each loop count, how many routed slots each expert got."""

    def __init__(self, kind: str, n_layer: int, max_loops: int = 4, n_experts: int = 8, fixed_loops: int = 1):
        self.kind, self.n_layer, self.max_loops, self.n_experts = kind, n_layer, max_loops, n_experts
        self.fixed_loops = fixed_loops
        self.loops = np.zeros((n_layer, max_loops), np.int64)
        self.experts = np.zeros((n_layer, n_experts), np.int64)
        self.share_sum = np.zeros(n_layer)       # upcycled: Σ over tokens of the kept share of FFN units
        self.cost_sum = np.zeros(n_layer)        # upcycled: Σ over tokens of the layer's FFN cost

    def add_share(self, layer: int, loops: np.ndarray, share: np.ndarray):
        """Upcycled models: ℓ and the kept share of FFN units per token."""
        loops, share = loops.reshape(-1), share.reshape(-1).astype(np.float64)
        self.loops[layer] += np.bincount(loops - 1, minlength=self.max_loops)[:self.max_loops]
        self.share_sum[layer] += share.sum()
        self.cost_sum[layer] += upcycled_cost(share, loops).sum()

    def add(self, layer: int, loops: np.ndarray, experts: np.ndarray):
        """loops: ℓ (1..max_loops) per token; experts: [tokens, k] chosen experts, -1 = unused."""
        self.loops[layer] += np.bincount(loops.reshape(-1) - 1, minlength=self.max_loops)[:self.max_loops]
        e = experts.reshape(-1)
        e = e[e >= 0]
        self.experts[layer] += np.bincount(e, minlength=self.n_experts)[:self.n_experts]

    def summary(self) -> dict:
        if self.kind == "upcycled":
            n = np.maximum(self.loops.sum(1), 1)
            share = self.loops / n[:, None]
            layers = [{"layer": i, "ffn_share": float(self.share_sum[i] / n[i]),
                       "loop_share": [float(x) for x in share[i]],
                       "compute_vs_dense": float(self.cost_sum[i] / n[i])} for i in range(self.n_layer)]
            compute = float(np.mean([la["compute_vs_dense"] for la in layers]))
            tot = self.loops.sum(0) / max(self.loops.sum(), 1)
            return {"kind": self.kind, "tokens": int(self.loops[0].sum()),
                    "mean_loops": float((tot * np.arange(1, self.max_loops + 1)).sum()),
                    "ffn_share": float(np.mean([la["ffn_share"] for la in layers])),
                    "loop_share": [float(x) for x in tot], "compute_vs_dense": compute,
                    "compute_vs_4loop": compute / self.max_loops, "layers": layers}
        if self.kind != "versatile":
            c = 1.0 if self.kind == "dense" else float(self.fixed_loops)
            return {"kind": self.kind, "compute_vs_dense": c, "compute_vs_4loop": c / 4}
        L = self.max_loops
        ell = np.arange(1, L + 1)
        cost = ell + np.where(ell < L, WIDTH_EXTRA, 0.0)
        share = self.loops / np.maximum(self.loops.sum(1, keepdims=True), 1)
        eshare = self.experts / np.maximum(self.experts.sum(1, keepdims=True), 1)
        tot = self.loops.sum(0)
        tot_share = tot / max(tot.sum(), 1)
        etot = self.experts.sum(0) / max(self.experts.sum(), 1)
        compute = float((tot_share * cost).sum())
        # a layer that sends every token to ℓ = 4 never uses its width path: no expert shares (None)
        used = [bool(self.experts[i].sum()) for i in range(self.n_layer)]
        layers = [{"layer": i, "mean_loops": float((share[i] * ell).sum()),
                   "loop_share": [float(x) for x in share[i]],
                   "compute_vs_dense": float((share[i] * cost).sum()),
                   "width_slots": int(self.experts[i].sum()),
                   "expert_share": [float(x) for x in eshare[i]] if used[i] else None,
                   "expert_share_min": float(eshare[i].min()) if used[i] else None,
                   "expert_share_max": float(eshare[i].max()) if used[i] else None,
                   "experts_unused": int((self.experts[i] == 0).sum()) if used[i] else None}
                  for i in range(self.n_layer)]
        mins = [la["expert_share_min"] for la in layers if la["expert_share_min"] is not None]
        maxs = [la["expert_share_max"] for la in layers if la["expert_share_max"] is not None]
        return {"kind": self.kind, "tokens": int(self.loops[0].sum()),
                "mean_loops": float((tot_share * ell).sum()), "loop_share": [float(x) for x in tot_share],
                "expert_share": [float(x) for x in etot],
                "expert_share_min": min(mins) if mins else None,
                "expert_share_max": max(maxs) if maxs else None,
                "layers_without_width_path": [i for i in range(self.n_layer) if not used[i]],
                "compute_vs_dense": compute, "compute_vs_4loop": compute / L, "layers": layers}


class TorchModel:
    """A training checkpoint in PyTorch: batched scoring and a KV-cache greedy path."""

    def __init__(self, path: str, device: str = "cpu"):
        from checkpoint import load_model
        model, meta = load_model(path)
        self.init(model, meta, device)
        self.source = {"type": "checkpoint", "path": path}

    def init(self, model, meta: dict, device: str = "cpu"):
        self.model, self.meta, self.device = model.to(device).eval(), meta, device
        self.cfg = model.cfg
        self.fim_order = "psm"   # the order evaluate.py has always given checkpoints
        self.context_length = self.cfg.context_length
        self.kind = self.cfg.ffn_kind
        self.params = model.num_params()
        self.cache = None

    @classmethod
    def from_module(cls, model, meta: dict | None = None):
        self = cls.__new__(cls)
        self.init(model, meta or {})
        self.source = {"type": "module"}
        return self

    def new_stats(self) -> RoutingStats:
        c = self.cfg
        return RoutingStats(self.kind, c.n_layer, c.max_loops, c.n_experts, c.fixed_loops)

    @torch.inference_mode()
    def score(self, x: np.ndarray, y: np.ndarray, stats: RoutingStats) -> np.ndarray:
        """Per-token losses [B, T] of windows x -> y; adds their routing to stats."""
        idx = torch.from_numpy(x).to(self.device)
        logits, _, aux = self.model(idx)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                               torch.from_numpy(y).to(self.device).reshape(-1), reduction="none")
        for i, r in enumerate(aux["routing"]):
            if r is None:
                continue
            if "ffn_share" in r:
                stats.add_share(i, r["loops"].cpu().numpy(), r["ffn_share"].cpu().numpy())
                continue
            loops = r["loops"].cpu().numpy()
            experts = r["experts"].cpu().numpy().copy()
            experts[loops == self.cfg.max_loops] = -1
            stats.add(i, loops, experts)
        return loss.reshape(x.shape).cpu().numpy()

    @torch.inference_mode()
    def start(self, prompt: list[int]):
        """Empties the KV cache, feeds the prompt; returns the last position's logits."""
        self.cache = [None] * self.cfg.n_layer
        return forward_cached(self.model, torch.tensor([prompt], device=self.device), self.cache)[0, -1]

    @torch.inference_mode()
    def feed(self, token: int):
        return forward_cached(self.model, torch.tensor([[token]], device=self.device), self.cache)[0, -1]


def forward_cached(model, idx: torch.Tensor, cache: list) -> torch.Tensor:
    """Logits of VersatileLM for new tokens idx [1, T] after the keys/values in cache
    (a per-layer list of (k, v) or None, updated in place)."""
    return model(idx, cache=cache)[0]


class OnnxModel:
    """An exported model folder, run with onnxruntime as the backend runs it (batch 1)."""

    def __init__(self, folder: str, threads: int = 0):
        from onnx_infer import OrtLM, read_manifest
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            raise EvalError(f"{folder}: no manifest.json; pass an exported model folder (export.py) "
                            f"or use --checkpoint")
        self.manifest = read_manifest(folder)
        arch = self.manifest["architecture"]
        self.lm = OrtLM(folder, threads=threads)
        self.kind, self.context_length, self.params = arch["kind"], arch["context_length"], arch.get("parameters")
        self.arch = arch
        self.fim_order = self.manifest.get("fim", {}).get("order", "psm")   # as the backend builds its prompts
        self.meta = {"training": self.manifest.get("training")}
        self.source = {"type": "model_folder", "path": folder,
                       "weights_dtype": self.manifest.get("graph", {}).get("weights_dtype"),
                       "fim_order": self.fim_order}
        self.tokenizer_path = os.path.join(folder, self.manifest.get("tokenizer", {}).get("file", "tokenizer.json"))

    def new_stats(self) -> RoutingStats:
        a = self.arch
        return RoutingStats(self.kind, a["n_layer"], a.get("max_loops", 4), a.get("n_experts", 8),
                            a.get("fixed_loops") or 1)

    def score(self, x: np.ndarray, y: np.ndarray, stats: RoutingStats) -> np.ndarray:
        losses = np.zeros(x.shape, np.float64)
        for b in range(x.shape[0]):
            self.lm.reset()
            out = self.lm.step(x[b], num_logits=x.shape[1])
            lg = out["logits"][0].astype(np.float64)
            m = lg.max(-1, keepdims=True)
            lse = (m[:, 0] + np.log(np.exp(lg - m).sum(-1)))
            losses[b] = lse - lg[np.arange(x.shape[1]), y[b]]
            if self.kind == "versatile":
                for i in range(out["route_loops"].shape[0]):
                    stats.add(i, out["route_loops"][i], out["route_experts"][i])
            elif self.kind == "upcycled":
                for i in range(out["route_loops"].shape[0]):
                    stats.add_share(i, out["route_loops"][i], out["route_ffn_share"][i])
        return losses

    def start(self, prompt: list[int]):
        self.lm.reset()
        return self.lm.step(prompt)["logits"][0, -1]

    def feed(self, token: int):
        return self.lm.step([token])["logits"][0, -1]
