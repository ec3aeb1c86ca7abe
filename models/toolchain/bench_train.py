"""
Training throughput benchmark: runs the real training loop (data loading, FIM, forward,
backward, optimizer; no eval, no checkpoints) for a few steps per model kind and reports
tokens/s over the timed steps (warm-up/compilation steps excluded), plus the ratio
versatile/dense. Writes a JSON and a Markdown report.

  python models/toolchain/bench_train.py models/toolchain/configs/tiny_smoke.py --steps=10
  python models/toolchain/bench_train.py models/toolchain/configs/gpu_default.py --steps=60 --out=$OUT/bench
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def bench(config_args: list[str], kinds: list[str], steps: int, warmup: int) -> list[dict]:
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            summary = train.main(config_args + [
                f"--ffn_kind={kind}", f"--max_steps={steps + warmup}", f"--warmup_untimed_steps={warmup}",
                "--eval_interval=0", "--checkpoint=false", "--time_budget_s=0", "--stop_after_steps=0",
                f"--log_interval={max(1, steps // 4)}", f"--out_dir={tmp}"])
        results.append({k: summary[k] for k in ("ffn_kind", "params", "tokens_per_s", "timed_steps", "wall_s",
                                                 "device", "world_size")})
    return results


def write_report(results: list[dict], config_args: list[str], out: str):
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    by_kind = {r["ffn_kind"]: r for r in results}
    ratio = None
    if "versatile" in by_kind and "dense" in by_kind and by_kind["dense"]["tokens_per_s"]:
        ratio = by_kind["versatile"]["tokens_per_s"] / by_kind["dense"]["tokens_per_s"]
    report = {"config": config_args, "results": results, "versatile_over_dense": ratio,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "load_average": os.getloadavg()}
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    lines = ["# Training throughput", "", f"Config: `{' '.join(config_args)}`  ",
             f"Device: {results[0]['device']}, world size {results[0]['world_size']}; "
             f"load average at the end {report['load_average'][0]:.1f}; {report['date']}", "",
             "| model | parameters | tokens/s (data loading included) | timed steps |", "|---|---|---|---|"]
    lines += [f"| {r['ffn_kind']} | {r['params']:,} | {r['tokens_per_s']:,.0f} | {r['timed_steps']} |" for r in results]
    if ratio:
        lines += ["", f"VersatileFFN trains at {ratio:.2f}x the dense baseline's tokens/s."]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="*", help="config files and --key=value overrides, as for train.py")
    ap.add_argument("--kinds", default="versatile,dense")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per kind")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (compilation)")
    ap.add_argument("--out", default="models/work/bench/train_throughput", help="report path without extension")
    args, rest = ap.parse_known_args()
    config_args = args.config + rest
    write_report(bench(config_args, args.kinds.split(","), args.steps, args.warmup), config_args, args.out)
