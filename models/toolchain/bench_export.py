"""
Measures the exported graph's cost on onnxruntime's CPU execution provider: decode-step
time at past 0/512/1024 and 1k-token prefill time, for VersatileFFN with routing forced
to ℓ = 1 and ℓ = 4 everywhere (routing_control.py), the dense baseline, and VersatileFFN
with its own (random-init) routing. Medians over repeats. A benchmark, not a test.

  .venv/bin/python models/toolchain/bench_export.py                # all configs
  .venv/bin/python models/toolchain/bench_export.py --configs small --repeats 5

Variants of one config run round-robin (fair under load from other processes); the table
shows median (min) milliseconds. Writes bench/results/export_cpu.json (--out).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from atomic import atomic_write_text  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402
from onnx_graph import build_graph  # noqa: E402
from routing_control import force_loops  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = {
    "small": dict(vocab_size=12288, n_layer=6, n_head=4, d_model=256, d_ff=1024),
    "candidate": dict(vocab_size=12288, n_layer=6, n_head=6, d_model=384, d_ff=1536),
    "large": dict(vocab_size=12288, n_layer=8, n_head=8, d_model=512, d_ff=2048),
}
VARIANTS = {  # name -> (ffn_kind, forced ℓ or None)
    "versatile l=1": ("versatile", 1),
    "versatile l=4": ("versatile", 4),
    "versatile routed": ("versatile", None),
    "dense": ("dense", None),
}


def session(path: str, threads: int, spin: bool = False):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not spin:
        # Spinning worker threads fight other processes for a 2-core machine (and the editor).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def feeds(cfg: ModelConfig, T: int, P: int, rng) -> dict:
    f = {"input_ids": rng.integers(6, cfg.vocab_size, (1, T)).astype(np.int64),
         "num_logits": np.array([1], np.int64)}
    for i in range(cfg.n_layer):
        for k in ("key", "value"):
            f[f"past_{k}_{i}"] = rng.standard_normal((1, cfg.n_head, P, cfg.head_dim)).astype(np.float32)
    return f


def interleaved(sessions: dict, f: dict, repeats: int, warmup: int = 1) -> dict:
    """Runs the variants round-robin so that load from other processes on a shared machine
    hits them alike; returns {variant: (median ms, min ms)}."""
    for _ in range(warmup):
        for sess in sessions.values():
            sess.run(None, f)
    times = {k: [] for k in sessions}
    for _ in range(repeats):
        for k, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, f)
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: (round(statistics.median(v), 3), round(min(v), 3)) for k, v in times.items()}


def build_sessions(cname: str, variants, args, tmp: str):
    sessions, rows = {}, {}
    for vname in variants:
        kind, forced = VARIANTS[vname]
        cfg = ModelConfig(**CONFIGS[cname], ffn_kind=kind)
        torch.manual_seed(0)
        model = VersatileLM(cfg).eval()
        if forced is not None:
            force_loops(model, forced)
        path = os.path.join(tmp, f"{cname}-{kind}-{forced}.onnx")
        onnx.save(build_graph(cfg, model.state_dict(), weights_dtype=args.weights_dtype, attention=args.attention), path)
        sessions[vname] = session(path, args.threads, args.spin)
        rows[vname] = {"config": cname, "variant": vname, **CONFIGS[cname], "parameters": model.num_params(),
                       "onnx_bytes": os.path.getsize(path)}
    return cfg, sessions, rows


def bench_config(cname: str, args, tmp: str) -> list:
    cfg, sessions, rows = build_sessions(cname, args.variants, args, tmp)
    rng = np.random.default_rng(0)
    pre = feeds(cfg, args.prefill, 0, rng)
    for vname, (med, mn) in interleaved(sessions, pre, args.prefill_repeats).items():
        rows[vname].update(prefill_ms=med, prefill_ms_min=mn)
    if "versatile routed" in sessions:
        rows["versatile routed"]["mean_loops"] = round(float(sessions["versatile routed"].run(["route_loops"], pre)[0].mean()), 3)
    for P in args.past:
        for vname, (med, mn) in interleaved(sessions, feeds(cfg, 1, P, rng), args.repeats).items():
            rows[vname].update({f"decode_ms_past{P}": med, f"decode_ms_past{P}_min": mn})
    return list(rows.values())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=["small", "candidate"], choices=list(CONFIGS))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=30, help="decode steps timed per point")
    ap.add_argument("--prefill", type=int, default=1024)
    ap.add_argument("--prefill-repeats", type=int, default=5)
    ap.add_argument("--past", type=int, nargs="*", default=[0, 512, 1024])
    ap.add_argument("--attention", choices=["gqa", "plain"], default="gqa")
    ap.add_argument("--weights-dtype", choices=["float32", "float16", "int8"], default="float32")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = onnxruntime's default)")
    ap.add_argument("--spin", action="store_true", help="let onnxruntime's worker threads spin (its default)")
    ap.add_argument("--machine", default=None, help="machine name for the results (default: hostname + cores)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "export_cpu.json"))
    args = ap.parse_args(argv)

    machine = args.machine or f"{platform.node()} ({os.cpu_count()} cores)"
    results = {"machine": machine, "onnxruntime": ort.__version__, "provider": "CPUExecutionProvider",
               "threads": args.threads or "default", "spin": args.spin, "attention": args.attention, "weights_dtype": args.weights_dtype, "load_avg_start": os.getloadavg(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "prefill_tokens": args.prefill,
               "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for cname in args.configs:
            for row in bench_config(cname, args, tmp):
                results["rows"].append(row)
                print(_fmt(row, args.past), flush=True)
    results["load_avg_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=2))
    print(f"machine: {machine}; load average {results['load_avg_start']} -> {results['load_avg_end']}; wrote {args.out}")


def _fmt(row, past):
    """Median (min) in ms."""
    decode = "  ".join(f"decode@{p} {row[f'decode_ms_past{p}']:6.2f} ({row[f'decode_ms_past{p}_min']:6.2f})" for p in past)
    extra = f"  mean ℓ {row['mean_loops']}" if "mean_loops" in row else ""
    return (f"{row['config']:9s} {row['variant']:17s} {row['parameters'] / 1e6:5.1f}M  "
            f"prefill {row['prefill_ms']:7.1f} ({row['prefill_ms_min']:7.1f})  {decode}{extra}")


if __name__ == "__main__":
    main()
