"""
Exports the upcycled model at another point of routing.json's curve (an experiment: the shipped
build uses the file's chosen thresholds), the way build.py exports the shipped graph (same weights
recipe, head, context), into the cache beside the shipped build, and prints the folder:

    python models/toolchain/upcycle/export_point.py --point 0.2/0.6
    python models/toolchain/upcycle/export_point.py --routing models/work/upcycle/routing-trained.json
    python models/toolchain/eval_engine.py --model FOLDER --fim-cases 500 --seed 4321 --prompt-tokens 1024 --out …

Needs a set-up that has run (the converted weights and GPTQ file are reused from the cache). A later
set-up prunes the folder (build.py prune), as it does every earlier build.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import build  # noqa: E402
from head import HEAD_FILE, read_head  # noqa: E402
from routing_file import RoutingFileError, load_routing, point_of, with_checksum  # noqa: E402
from source import default_cache, fetch_gguf  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--point", default=None, help="gate_skip/down_skip of a point on the routing file's curve "
                    "(default: the file's own thresholds, e.g. train_routing.py's)")
    ap.add_argument("--routing", default=build.ROUTING, help="a routing file (default: the committed one)")
    ap.add_argument("--cache", default=None, help="default: $VFFN_CACHE or ~/.cache/versatileffn")
    args = ap.parse_args()
    cache = args.cache or default_cache()
    try:
        doc = load_routing(args.routing, 24, 4864)
        point = point_of(doc, args.point)
    except RoutingFileError as e:
        sys.exit(f"error: {e}")
    # Its own checksum: the folder's manifest must not name the routing file as the one it was built with.
    doc = with_checksum({**doc, "gate_thresholds": point["gate_thresholds"], "down_thresholds": point["down_thresholds"],
                         "gate_skip": point["gate_skip"], "down_skip": point["down_skip"]})
    conv = build.convert_step(fetch_gguf(cache, print), cache, print)
    quantized = build.quantize_step(conv, cache, build.WEIGHTS_DTYPE, print)
    name = f"point-{args.point.replace('/', '-')}" if args.point else "routing"
    print(build.export_step(conv, "upcycled", doc, read_head(HEAD_FILE, 151936), cache, f"{name}-{doc['sha256'][:8]}", print,
                            build.WEIGHTS_DTYPE, quantized))


if __name__ == "__main__":
    main()
