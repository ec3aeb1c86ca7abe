"""
How much each layer's 4-bit gate/up projection costs the shipped upcycled model: the mean
KL divergence of the next-token distribution (fp32 model → the same model with only layer i's
w_in replaced by its GPTQ int4 weights dequantized), and the loss increase, over FIM windows
of the corpus' train split (never validation: the choice made from this is measured on it).

All 24 layers in 4 bits cost 1.4 FIM points on 1,000 cases (docs/SPEED.md); keeping the
layers whose 4 bits cost most in 8 bits is the cheapest way back inside the 1-point bound.
Each run of a layer starts from the fp32 hidden state entering it (recorded once), so a
layer costs the blocks after it, not the whole network.

    python models/toolchain/upcycle/int4_sensitivity.py --gptq FILE [--keep 0,1,2,23] \
        [--corpus models/work/corpus] [--out models/work/upcycle/int4-sensitivity.json]

--keep measures one configuration instead: every layer 4-bit except those listed.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
sys.path.insert(0, TOOLCHAIN)
sys.path.insert(0, HERE)
REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
import gptq  # noqa: E402
from calibrate import fim_windows, set_thresholds  # noqa: E402
from convert import load_converted  # noqa: E402
from model import rope_tables  # noqa: E402
from routing_file import load_routing  # noqa: E402
from atomic import atomic_write_text  # noqa: E402
from onnx_builder import unpack_int4  # noqa: E402
from source import GGUF_SHA256, default_cache  # noqa: E402
from build import CONTEXT, ROUTING  # noqa: E402

W_IN = "blocks.{}.ffn.ffn.w_in.weight"


def int4_w_in(path: str) -> dict:
    """{layer: dequantized fp32 w_in [2·d_ff, d]} from a gptq.save file."""
    out = {}
    for name, p in gptq.load(path).items():
        if name.endswith("ffn.w_in.weight") and p.bits == 4:
            levels, zeros = unpack_int4(p.q, p.zero_points, p.scales.shape[1])
            out[int(name.split(".")[1])] = torch.from_numpy(gptq.dequantize(levels, p.scales, zeros))
    return out


@torch.inference_mode()
def run_from(model, layer: int, x, cos, sin, record: list = None):
    """Logits from layer `layer`'s input x on; `record` collects every layer's input."""
    for i in range(layer, model.cfg.n_layer):
        if record is not None:
            record.append(x)
        x, _ = model.blocks[i](x, cos, sin, 1.0, None, i)
    return F.linear(model.norm_f(x), model.head_weight()).float()


def kl_and_loss(ref_logp, logits, targets) -> tuple[float, float]:
    logp = F.log_softmax(logits, -1)
    kl = float((ref_logp.exp() * (ref_logp - logp)).sum(-1).mean())
    return kl, float(F.nll_loss(logp, targets))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gptq", required=True, help="gptq.safetensors of an int4-ffn-in build (~/.cache/versatileffn/quantized/KEY; "
                    "`build.py --weights-dtype int4-ffn-in --models DIR` makes it)")
    ap.add_argument("--corpus", default=os.path.join(REPO, "models", "work", "corpus"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "work", "upcycle", "int4-sensitivity.json"))
    ap.add_argument("--windows", type=int, default=2, help="per language")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--keep", help="comma-separated layers kept in 8 bits: measure that one configuration")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    log = lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", file=sys.stderr, flush=True)  # noqa: E731
    from tokenizers import Tokenizer
    conv = os.path.join(default_cache(), "converted", GGUF_SHA256[:16])    # build.convert_step's folder
    if not os.path.exists(os.path.join(conv, "done.json")):
        sys.exit(f"{conv}: no converted source model; run `npm run setup` first")
    tok = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
    windows = fim_windows(os.path.join(args.corpus, "train.jsonl"), tok, args.windows, args.window, args.seed)
    model = load_converted(conv, ffn_kind="upcycled", context_length=CONTEXT)
    routing = load_routing(ROUTING, model.cfg.n_layer, model.cfg.d_ff)
    set_thresholds(model, routing["gate_thresholds"], routing["down_thresholds"])
    q4 = int4_w_in(args.gptq)
    L = model.cfg.n_layer
    if sorted(q4) != list(range(L)):
        sys.exit(f"{args.gptq} has 4-bit gate/up for layers {sorted(q4)}; this needs every layer's: the GPTQ file of "
                 f"`build.py --weights-dtype int4-ffn-in --models DIR` (the shipped int4-ffn-in-deep file keeps 0-5 in 8 bits)")
    fp32 = {i: model.blocks[i].ffn.ffn.w_in.weight.data.clone() for i in range(L)}
    log(f"{windows.size:,} train-split tokens in {len(windows)} windows; {len(q4)} int4 layers")

    # Per window: the fp32 input of every layer and the reference log-probabilities.
    cached = []
    with torch.inference_mode():
        for w in windows:
            idx = torch.from_numpy(w[None, :-1])
            cos, sin = rope_tables(model.cfg.head_dim, torch.arange(idx.shape[1]), model.cfg.rope_theta)
            inputs = []
            ref = F.log_softmax(run_from(model, 0, model.tok_emb(idx), cos, sin, inputs)[0], -1)
            cached.append((inputs, cos, sin, ref, torch.from_numpy(w[1:])))
    ref_loss = float(np.mean([F.nll_loss(c[3], c[4]).item() for c in cached]))
    log(f"fp32 reference loss {ref_loss:.4f}")

    def measure(int4_layers: list) -> dict:
        for i in range(L):
            model.blocks[i].ffn.ffn.w_in.weight.data = q4[i] if i in int4_layers else fp32[i]
        start = min(int4_layers)
        kls, losses = [], []
        for inputs, cos, sin, ref, targets in cached:
            kl, loss = kl_and_loss(ref, run_from(model, start, inputs[start], cos, sin)[0], targets)
            kls.append(kl)
            losses.append(loss)
        return {"kl": float(np.mean(kls)), "d_loss": float(np.mean(losses)) - ref_loss}

    result = {"tokens": int(windows.size), "seed": args.seed, "ref_loss": ref_loss}
    if args.keep is not None:
        keep = [int(k) for k in args.keep.split(",") if k]
        result["keep"] = keep
        result["all_int4_but_keep"] = measure([i for i in range(L) if i not in keep])
        log(f"int4 except {keep}: {result['all_int4_but_keep']}")
    else:
        result["all_int4"] = measure(list(range(L)))
        log(f"every layer int4: {result['all_int4']}")
        result["layers"] = []
        for i in range(L):
            result["layers"].append(measure([i]))
            log(f"layer {i:2d} alone int4: KL {result['layers'][-1]['kl']:.5f}  Δloss {result['layers'][-1]['d_loss']:+.5f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
