"""
Does skipping FFN units save wall-clock time on the CPU execution provider? One decode step
(one token) of one Qwen2.5-0.5B-shaped FFN (d 896, d_ff 4864, SwiGLU), timed in
onnxruntime on the graph forms a skipping graph could take:

  int4 / int8 masked   MatMulNBits for gate+up and down, every unit computed, the skipped
                       ones zeroed (the shipped form: it saves nothing by construction)
  fp32 dense           Gemm on fp32 weights, every unit
  fp32 gathered k%     gate on every unit, then only the kept units' rows of W_up and
                       columns of W_down are gathered and multiplied (no control flow):
                       the work shrinks with the share kept, but every kept weight is
                       copied before it is used
  int4 gathered        not expressible: MatMulNBits takes K (the units) as a fixed
                       attribute, and inside an If branch its weights are not pre-packed
                       (~100x slower, measured before), so a token-dependent unit count
                       cannot run on 4-bit weights

    .venv/bin/python models/toolchain/upcycle/skip_bench.py [--threads 2] [--out bench/results/skip.json]
Prints a table and writes JSON + Markdown.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from onnx_graph import QBLOCK, quantize_int4_blocks, quantize_int8_blocks  # noqa: E402

D, H = 896, 4864
LAYERS = 24   # the step is repeated once per layer of the model, so times are per token


def _nbits(name, w, bits, inits):
    if bits == 8:
        q, s = quantize_int8_blocks(w)
        inits += [numpy_helper.from_array(q, name + ".q"), numpy_helper.from_array(s, name + ".s")]
        extra = []
    else:
        q, s, z = quantize_int4_blocks(w)
        inits += [numpy_helper.from_array(q, name + ".q"), numpy_helper.from_array(s, name + ".s"),
                  numpy_helper.from_array(z.reshape(-1), name + ".z")]
        extra = [name + ".z"]
    return [name + ".q", name + ".s"] + extra


def build(form: str, keep: float, w_in: np.ndarray, w_out: np.ndarray) -> bytes:
    """A graph of LAYERS FFN steps in a row (x -> x + FFN(x)), so one run is one token's FFN work."""
    nodes, inits = [], []
    x = "x"
    bits = {"int4": 4, "int8": 8}.get(form.split()[0])
    for layer in range(LAYERS):
        p = f"l{layer}_"
        if bits:
            wi, wo = _nbits(p + "wi", w_in, bits, inits), _nbits(p + "wo", w_out, bits, inits)
            nodes.append(helper.make_node("MatMulNBits", [x] + wi, [p + "gu"], domain="com.microsoft", K=D, N=2 * H,
                                          bits=bits, block_size=QBLOCK, accuracy_level=4))
        else:
            if form == "fp32 dense":
                inits += [numpy_helper.from_array(w_in, p + "wi"), numpy_helper.from_array(w_out, p + "wo")]
                nodes.append(helper.make_node("Gemm", [x, p + "wi"], [p + "gu"], transB=1))
            else:   # gate for every unit; up and down for the kept ones only
                inits += [numpy_helper.from_array(w_in[:H], p + "wg"), numpy_helper.from_array(w_in[H:], p + "wu"),
                          numpy_helper.from_array(np.ascontiguousarray(w_out.T), p + "woT")]
        if form == "fp32 gathered":
            # Exactly the share `keep` of units, chosen per run: fixed random scores plus 0·sum(x), so
            # the mask depends on the input and nothing is constant-folded at session creation.
            scores = np.random.default_rng(layer).random(H).astype(np.float32).reshape(1, H)
            inits += [numpy_helper.from_array(scores, p + "score"),
                      numpy_helper.from_array(np.float32(1.0 - keep - 1e-6).reshape(1), p + "t")]
            nodes += [helper.make_node("Gemm", [x, p + "wg"], [p + "g"], transB=1),
                      helper.make_node("Sigmoid", [p + "g"], [p + "sg"]), helper.make_node("Mul", [p + "g", p + "sg"], [p + "a"]),
                      helper.make_node("ReduceSum", [x], [p + "xs"], keepdims=1),
                      helper.make_node("Mul", [p + "xs", "zero_f"], [p + "x0"]),
                      helper.make_node("Add", [p + "score", p + "x0"], [p + "sc"]),
                      helper.make_node("GreaterOrEqual", [p + "sc", p + "t"], [p + "m"]),
                      helper.make_node("Squeeze", [p + "m", "zero"], [p + "m1"]),
                      helper.make_node("NonZero", [p + "m1"], [p + "nz"]),
                      helper.make_node("Squeeze", [p + "nz", "zero"], [p + "idx"]),
                      helper.make_node("Gather", [p + "wu", p + "idx"], [p + "wu_k"], axis=0),
                      helper.make_node("Gather", [p + "woT", p + "idx"], [p + "wo_k"], axis=0),
                      helper.make_node("Gather", [p + "a", p + "idx"], [p + "a_k"], axis=1),
                      helper.make_node("Gemm", [x, p + "wu_k"], [p + "u_k"], transB=1),
                      helper.make_node("Mul", [p + "a_k", p + "u_k"], [p + "h_k"]),
                      helper.make_node("MatMul", [p + "h_k", p + "wo_k"], [p + "y"])]
        else:
            nodes += [helper.make_node("Split", [p + "gu", "split"], [p + "g", p + "u"], axis=1),
                      helper.make_node("Sigmoid", [p + "g"], [p + "sg"]), helper.make_node("Mul", [p + "g", p + "sg"], [p + "a"]),
                      helper.make_node("Mul", [p + "a", p + "u"], [p + "h"])]
            if bits:
                nodes.append(helper.make_node("MatMulNBits", [p + "h"] + wo, [p + "y"], domain="com.microsoft", K=H, N=D,
                                              bits=bits, block_size=QBLOCK, accuracy_level=4))
            else:
                nodes.append(helper.make_node("Gemm", [p + "h", p + "wo"], [p + "y"], transB=1))
        nodes.append(helper.make_node("Add", [x, p + "y"], [p + "out"]))
        x = p + "out"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    inits += [numpy_helper.from_array(np.array([H, H], np.int64), "split"), numpy_helper.from_array(np.array([0], np.int64), "zero"),
              numpy_helper.from_array(np.zeros(1, np.float32), "zero_f")]
    graph = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, D])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def time_form(form, keep, threads, repeats, w_in, w_out):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(build(form, keep, w_in, w_out), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(1, D)).astype(np.float32) * 0.01
    for _ in range(3):
        s.run(None, {"x": x})
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        s.run(None, {"x": x})
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "..", "bench", "results", "skip.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w_in = (rng.normal(size=(2 * H, D)) * 0.02).astype(np.float32)
    w_out = (rng.normal(size=(D, H)) * 0.02).astype(np.float32)
    forms = [("int4 masked", 1.0), ("int8 masked", 1.0), ("fp32 dense", 1.0)] + \
            [("fp32 gathered", k) for k in (1.0, 0.75, 0.5, 0.25)]
    rows = []
    for rnd in range(2):   # two rounds, interleaved, medians of both: the machine is shared
        for form, keep in forms:
            ms = time_form(form, keep, args.threads, args.repeats, w_in, w_out)
            rows.append({"form": form, "units_kept": keep, "round": rnd, "ms_per_token_24_layers": round(ms, 2)})
            print(f"  {form:14s} kept {keep:4.0%}: {ms:7.2f} ms", file=sys.stderr)
    table = {}
    for r in rows:
        table.setdefault((r["form"], r["units_kept"]), []).append(r["ms_per_token_24_layers"])
    summary = [{"form": f, "units_kept": k, "ms": round(statistics.median(v), 2)} for (f, k), v in table.items()]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": cpu,
              "cores": os.cpu_count(), "load_average_at_start": os.getloadavg(), "threads": args.threads,
              "onnxruntime": ort.__version__, "layers": LAYERS, "d_model": D, "d_ff": H, "summary": summary, "runs": rows}
    md = [f"# FFN skipping on the CPU EP: one decode token, {LAYERS} layers of d {D} / d_ff {H}", "",
          f"{report['date']}, {cpu}, {args.threads} threads, onnxruntime {ort.__version__}, "
          f"load average at start {report['load_average_at_start'][0]:.2f}. Medians of {args.repeats} runs × 2 rounds.", "",
          "| graph form | units kept | ms per token (FFN only) |", "|---|---|---|"]
    md += [f"| {s['form']} | {s['units_kept']:.0%} | {s['ms']:.2f} |" for s in summary]
    md += ["", "int4 gathered: not expressible (MatMulNBits' K is a fixed attribute; inside If its weights are not pre-packed)."]
    write_report(args.out, report, md)


def write_report(out: str, report: dict, md: list) -> None:
    """The JSON report at `out` (….json), its Markdown beside it (….md), the Markdown printed."""
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(report, open(out, "w"), indent=1)
    open(out[:-5] + ".md", "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
