"""
What a weight matrix costs on the CPU execution provider by the number of token rows M it
multiplies: M = 1 is a decode step, 2-5 a step with a speculative draft, 128 a prefill chunk.
The default model's shapes (Qwen2.5-Coder-0.5B: fused gate/up 896 -> 9728, down 4864 -> 896,
the trimmed output head 896 -> 64,313 split in 24 parts), 24 matrices a graph so that one run
reads what a token's 24 layers read, in the kernels a graph could use:

  nbits8 / nbits4   MatMulNBits, 8 / 4 bits in blocks of 128, accuracy_level 4 (the shipped form)
  dqmm              DynamicQuantizeMatMul, int8 weights with one scale a column, the activations
                    quantized to uint8 per tensor on the fly (MLAS' u8s8 GEMM, VNNI)

Weights are random (speed only). Interleaved rounds, medians; prints a table and writes
JSON + Markdown.

    .venv/bin/python models/toolchain/upcycle/kernel_bench.py [--rows 1,2,3,5,128] [--kernels nbits8,nbits4,dqmm]
"""
import argparse
import datetime
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from skip_bench import write_report

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = 24
BLOCK = 128
SHAPES = {"gate/up": (896, 9728), "down": (4864, 896), "head (1/24)": (896, 64313 // LAYERS)}
BYTES_PER_WEIGHT = {"nbits8": 1 + 4 / BLOCK, "nbits4": 0.5 + 4 / BLOCK, "dqmm": 1.0}


def graph(kernel: str, k: int, n: int, rng) -> bytes:
    """LAYERS independent products of the input x [M, k] with random [k, n] weights."""
    inits, nodes, outs = [], [], []
    for i in range(LAYERS):
        if kernel.startswith("nbits"):
            bits = int(kernel[5:])
            blob = rng.integers(0, 256, size=(n, k // BLOCK, BLOCK * bits // 8), dtype=np.uint8)
            scales = rng.random(n * (k // BLOCK), dtype=np.float32) * 0.01 + 0.001
            inits += [numpy_helper.from_array(blob, f"w{i}"), numpy_helper.from_array(scales, f"s{i}")]
            nodes.append(helper.make_node("MatMulNBits", ["x", f"w{i}", f"s{i}"], [f"y{i}"], domain="com.microsoft",
                                          K=k, N=n, bits=bits, block_size=BLOCK, accuracy_level=4))
        else:
            w = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
            scales = rng.random(n, dtype=np.float32) * 0.01 + 0.001
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(scales, f"s{i}")]
            nodes.append(helper.make_node("DynamicQuantizeMatMul", ["x", f"w{i}", f"s{i}"], [f"y{i}"], domain="com.microsoft"))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "matrices", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 9   # what onnxruntime 1.30 reads
    return m.SerializeToString()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="1,2,3,5,128")
    ap.add_argument("--kernels", default="nbits8,nbits4,dqmm")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "..", "bench", "results", "kernels.json"))
    args = ap.parse_args()
    rows_list = [int(r) for r in args.rows.split(",")]
    kernels = args.kernels.split(",")
    rng = np.random.default_rng(0)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    load_at_start = os.getloadavg()
    runs = []
    for shape, (k, n) in SHAPES.items():
        sessions = {kr: ort.InferenceSession(graph(kr, k, n, rng), so, providers=["CPUExecutionProvider"]) for kr in kernels}
        for m_rows in rows_list:
            x = rng.standard_normal((m_rows, k), dtype=np.float32)
            reps = 20 if m_rows < 16 else 3
            for rnd in range(args.rounds):   # interleaved: the machine is shared
                for kr, s in sessions.items():
                    s.run(None, {"x": x})
                    t = time.perf_counter()
                    for _ in range(reps):
                        s.run(None, {"x": x})
                    ms = (time.perf_counter() - t) / reps * 1000
                    runs.append({"shape": shape, "k": k, "n": n, "rows": m_rows, "kernel": kr, "round": rnd, "ms": round(ms, 3)})
    table = {}
    for r in runs:
        table.setdefault((r["shape"], r["rows"], r["kernel"]), []).append(r["ms"])
    summary = []
    for (shape, m_rows, kr), v in table.items():
        k, n = SHAPES[shape]
        ms = statistics.median(v)
        one = statistics.median(table[(shape, 1, kr)]) if (shape, 1, kr) in table else None
        summary.append({"shape": shape, "rows": m_rows, "kernel": kr, "ms": round(ms, 2),
                        "vs_one_row": round(ms / one, 2) if one else None,
                        "weight_gb_per_s": round(LAYERS * k * n * BYTES_PER_WEIGHT[kr] / ms / 1e6, 1),
                        "gop_per_s": round(2 * m_rows * k * n * LAYERS / ms / 1e6)})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": cpu,
              "cores": os.cpu_count(), "load_average_at_start": load_at_start, "threads": args.threads,
              "onnxruntime": ort.__version__, "layers": LAYERS, "summary": summary, "runs": runs}
    md = [f"# Weight-matrix kernels by token rows, {LAYERS} matrices of each of the default model's shapes", "",
          f"{report['date']}, {cpu}, {args.threads} threads, onnxruntime {ort.__version__}, load average at start "
          f"{load_at_start[0]:.2f}. Medians of {args.rounds} interleaved rounds. "
          "Command: `.venv/bin/python models/toolchain/upcycle/kernel_bench.py`.", "",
          "| shape | token rows | kernel | ms (24 matrices) | vs 1 row | weights read, GB/s | GOP/s |", "|---|---|---|---|---|---|---|"]
    md += [f"| {s['shape']} | {s['rows']} | {s['kernel']} | {s['ms']:.2f} | {s['vs_one_row']}× | {s['weight_gb_per_s']} | {s['gop_per_s']} |"
           for s in summary]
    write_report(args.out, report, md)


if __name__ == "__main__":
    sys.exit(main())
