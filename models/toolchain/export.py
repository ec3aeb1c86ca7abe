"""
Exports a checkpoint (or a freshly initialized model) to a model folder per
models/FORMAT.md: model.onnx, tokenizer.json, manifest.json, README.md.

  # a trained checkpoint (run folder with ckpt.safetensors + ckpt.json, see checkpoint.py)
  python models/toolchain/export.py --checkpoint models/work/runs/default \
      --tokenizer models/tokenizer/tokenizer.json --out models/vffn-code-small
  # a random-weight model from a config, for tests and benchmarks
  python models/toolchain/export.py --random --config cfg.json --set n_layer=2 --out /tmp/m

The folder is built under a temporary name beside --out and renamed into place at the end,
so a failed export leaves nothing half-written.

The manifest is checked against models/manifest.schema.json (manifest_schema.py) before the
folder is written: the backend checks the same schema before loading.

Other scripts call export_model() (e.g. upcycle/build.py for a converted Qwen2 model, with
its own special tokens and stop ids). Graphs whose initializers exceed EXTERNAL_DATA_BYTES
(protobuf cannot serialize 2 GB) keep their weights in model.onnx.data beside model.onnx
(ONNX external data), listed in the manifest's files like every other file.
"""
import argparse
import datetime
import json
import os
import shutil
import sys

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest_schema  # noqa: E402
import special_tokens  # noqa: E402
from embedding_file import EMBEDDINGS_FILE, EMBEDDINGS_LAYOUT, write_embeddings  # noqa: E402
from fileinfo import file_entry  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402
from onnx_builder import QUANTIZED, WEIGHTS_DTYPES, Prequantized  # noqa: E402
from onnx_graph import INPUT_NAMES, build_graph, output_names  # noqa: E402

FORMAT_VERSION = 1
SPECIAL_TOKENS = special_tokens.TOKENS
SPECIAL_IDS = special_tokens.IDS
DEFAULT_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tokenizer", "tokenizer.json")
# Above this many bytes of initializers a graph is saved with external data (model.onnx.data):
# protobuf refuses messages over 2 GB; the margin covers the graph itself and the fp16/int8
# estimate being made after the build.
EXTERNAL_DATA_BYTES = 1536 * 1024 * 1024


class ExportError(Exception):
    pass


def check_state_dict(cfg: ModelConfig, sd: dict, where: str):
    """Names and shapes against a freshly built model, so a mismatch is reported here, not inside ONNX."""
    with torch.device("meta"):   # shapes only: no memory, no random init (a 0.5B model would take GBs)
        expected = {k: tuple(v.shape) for k, v in VersatileLM(cfg).state_dict().items()}
    missing, extra = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or extra:
        raise ExportError(f"{where}: parameters do not match the config (missing {missing[:5]}, "
                          f"unexpected {extra[:5]}); is the sidecar from the same run?")
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            raise ExportError(f"{where}: {k} has shape {tuple(sd[k].shape)}, the config implies {shape}")
        finite = np.isfinite(sd[k].scales).all() if isinstance(sd[k], Prequantized) else torch.isfinite(sd[k].float()).all()
        if not finite:
            raise ExportError(f"{where}: {k} contains NaN or Inf; export an earlier checkpoint")


def random_model(cfg: ModelConfig, seed: int = 0) -> VersatileLM:
    torch.manual_seed(seed)
    return VersatileLM(cfg).eval()


def check_tokenizer(path: str, vocab_size: int, special_tokens: dict = None, special_ids: dict = None):
    """The tokenizer must carry the special tokens at their ids (by default this project's six
    at ids 0..5) and fit the embedding."""
    special_tokens = SPECIAL_TOKENS if special_tokens is None else special_tokens
    special_ids = SPECIAL_IDS if special_ids is None else special_ids
    if set(special_tokens) != set(special_ids):
        raise ExportError(f"special_tokens names {sorted(special_tokens)} and special_ids names "
                          f"{sorted(special_ids)} differ")
    for key in ("eot", "fim_prefix", "fim_suffix", "fim_middle"):
        if key not in special_tokens:
            raise ExportError(f"special tokens lack {key!r} (FIM prompts and stopping need it)")
    bad = {k: i for k, i in special_ids.items() if not (isinstance(i, int) and 0 <= i < vocab_size)}
    if bad:
        raise ExportError(f"special ids {bad} are outside the model's vocabulary of {vocab_size}")
    if not os.path.exists(path):
        raise ExportError(f"{path}: tokenizer not found; pass --tokenizer or build models/tokenizer first")
    try:
        with open(path, encoding="utf-8") as f:
            tok = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: not a valid tokenizer.json ({e})") from None
    added = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    for key, content in special_tokens.items():
        if added.get(content) != special_ids[key]:
            raise ExportError(f"{path}: special token {content} must have id {special_ids[key]}, "
                              f"found {added.get(content)}; retrain the tokenizer with the team's special tokens")
    n_vocab = len(tok.get("model", {}).get("vocab", {}))
    if n_vocab > vocab_size:
        raise ExportError(f"{path}: tokenizer has {n_vocab} tokens but the model's vocab_size is {vocab_size}; "
                          f"use the tokenizer the model was trained with")


def architecture(cfg: ModelConfig, n_params: int, sd: dict = None) -> dict:
    """The manifest's architecture. This project's own models (n_kv_head = n_head, no QKV
    bias, tied head) keep the fields they always had; other shapes add n_kv_head, qkv_bias
    and tie_embeddings. Upcycled: the virtual experts are single hidden units (n_experts =
    d_ff) kept by a per-layer threshold instead of a top-k (top_k 0); gate_thresholds lists
    the thresholds by layer."""
    upcycled = cfg.ffn_kind == "upcycled"
    a = {"kind": cfg.ffn_kind, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "d_model": cfg.d_model,
         "d_ff": cfg.d_ff, "vocab_size": cfg.vocab_size, "max_loops": cfg.max_loops,
         "n_experts": cfg.d_ff if upcycled else cfg.n_experts, "top_k": 0 if upcycled else cfg.top_k,
         "fixed_loops": cfg.fixed_loops if cfg.ffn_kind == "loop" else None,
         "context_length": cfg.context_length, "rope_theta": cfg.rope_theta, "norm_eps": cfg.norm_eps,
         "parameters": n_params}
    if upcycled or cfg.n_kv_head != cfg.n_head or cfg.qkv_bias or not cfg.tie_embeddings:
        a.update(n_kv_head=cfg.n_kv_head, qkv_bias=cfg.qkv_bias, tie_embeddings=cfg.tie_embeddings)
    if upcycled:
        a["gate_thresholds"] = [float(sd[f"blocks.{i}.ffn.gate_threshold"]) for i in range(cfg.n_layer)]
        a["down_thresholds"] = [float(sd.get(f"blocks.{i}.ffn.down_threshold", 0.0)) for i in range(cfg.n_layer)]
    return a


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(t.ByteSize() for t in model.graph.initializer)


def save_graph(model: onnx.ModelProto, path: str, external_data: bool = None) -> list:
    """Saves and checks one graph; returns the files written (names relative to its folder).
    external_data None: only when the initializers exceed EXTERNAL_DATA_BYTES; True: always;
    False: never (fails above protobuf's 2 GB). The weights then go to <file>.data, one file,
    every tensor of 1 kB or more; the tensors' raw bytes are released as they are written."""
    if external_data is None:
        external_data = _initializer_bytes(model) > EXTERNAL_DATA_BYTES
    name = os.path.basename(path)
    if not external_data:
        onnx.save(model, path)
        onnx.checker.check_model(path)
        return [name]
    data = name + ".data"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data, size_threshold=1024)
    onnx.checker.check_model(path)   # by path: the checker reads external data from the folder
    os.chmod(os.path.join(os.path.dirname(path), data), 0o644)   # onnx creates it owner-only; a model is readable like model.onnx
    return [name, data]


def export_model(cfg: ModelConfig, sd: dict, out_dir: str, *, name: str = None, display_name: str = None,
                 description: str = "", tokenizer: str = DEFAULT_TOKENIZER, weights_dtype: str = "float32",
                 training: dict = None, metrics: dict = None, test_vectors: dict = None,
                 intended_use: str = None, generation: dict = None, attention: str = "gqa",
                 export_date: str = "now", gpu_variant: bool = False, special_tokens: dict = None,
                 special_ids: dict = None, stop_ids: list = None, tokenizer_config: str = None,
                 card: str = None, external_data: bool = None, head_ids=None, head_rule: str = None,
                 kv: str = "concat", fim_order: str = "psm", embeddings: str = "graph") -> dict:
    """Writes the model folder and returns its manifest. export_date None leaves the date
    out (test models regenerate byte for byte). gpu_variant also writes model.masked.onnx,
    the graph without data-dependent control flow for GPU providers (graph.variants); an
    upcycled graph has no control flow, so its one model.onnx serves every provider.

    special_tokens / special_ids (name -> token text / id, the same names; default this
    project's six at ids 0..5) are checked against the tokenizer and written to the
    manifest; stop_ids (default [eot, file_sep]) become generation.stop_ids.
    tokenizer_config: a tokenizer_config.json to copy (default: the one beside the
    tokenizer, if any). card: the README.md text (default: generated from the manifest).
    external_data: save weights in model.onnx.data (None: only above EXTERNAL_DATA_BYTES).
    head_ids / head_rule: a trimmed output head (onnx_graph.build_graph) and the rule that
    chose its tokens, recorded as graph.head in the manifest.
    kv: "concat" (past and present tensors grow by the new tokens) or "shared" (fixed-capacity
    cache buffers updated in place, valid length in the past_length input; FORMAT.md).
    embeddings: "graph" (the table inside the graph) or "file" (quantized weights only: the
    table in embeddings.safetensors, read a row per token; embedding_file.py says why)."""
    if export_date == "now":
        export_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    special_tokens = dict(SPECIAL_TOKENS if special_tokens is None else special_tokens)
    special_ids = dict(SPECIAL_IDS if special_ids is None else special_ids)
    if embeddings not in ("graph", "file") or (embeddings == "file" and weights_dtype not in QUANTIZED):
        raise ExportError(f"embeddings {embeddings!r}: 'graph', or 'file' with quantized weights (int8, int4...)")
    check_state_dict(cfg, sd, "state dict")
    check_tokenizer(tokenizer, cfg.vocab_size, special_tokens, special_ids)
    if stop_ids is None:
        stop_ids = [special_ids[k] for k in ("eot", "file_sep") if k in special_ids]
    stop_ids = [int(i) for i in stop_ids]
    if not all(0 <= i < cfg.vocab_size for i in stop_ids):
        raise ExportError(f"stop ids {stop_ids} are outside the model's vocabulary of {cfg.vocab_size}")
    if tokenizer_config is not None and not os.path.isfile(tokenizer_config):
        raise ExportError(f"{tokenizer_config}: tokenizer config not found")
    out_dir = os.path.abspath(out_dir)
    name = name or os.path.basename(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        providers = manifest_schema.providers()   # the format's list of execution providers
        if cfg.ffn_kind == "upcycled":   # no control flow at all: one graph for every provider
            variants = {"masked": {"file": "model.onnx", "providers": providers}}
        else:
            variants = {"cpu-sparse": {"file": "model.onnx", "providers": ["cpu"]}}
            if gpu_variant:
                variants["masked"] = {"file": "model.masked.onnx", "providers": [p for p in providers if p != "cpu"]}
        graph_files, opset = [], None
        for variant, info in variants.items():
            graph = build_graph(cfg, sd, weights_dtype, attention, variant, kv=kv, head_ids=head_ids, embeddings=embeddings)
            opset = graph.opset_import[0].version
            graph_files += save_graph(graph, os.path.join(tmp, info["file"]), external_data)
            del graph   # before the next variant's weights are built
        if embeddings == "file":
            write_embeddings(os.path.join(tmp, EMBEDDINGS_FILE), sd["tok_emb.weight"].detach().float().cpu().numpy())
            graph_files.append(EMBEDDINGS_FILE)
        shutil.copyfile(tokenizer, os.path.join(tmp, "tokenizer.json"))
        files = graph_files + ["tokenizer.json", "README.md"]
        tok_config = tokenizer_config or os.path.join(os.path.dirname(tokenizer), "tokenizer_config.json")
        if os.path.exists(tok_config):
            shutil.copyfile(tok_config, os.path.join(tmp, "tokenizer_config.json"))
            files.append("tokenizer_config.json")
        n_params = sum(v.numel() for k, v in sd.items() if not k.endswith(("_threshold",)))   # buffers, not parameters
        data_files = [f for f in graph_files if f.endswith(".data")]
        inputs = {**INPUT_NAMES, **({"past_length": "past_length"} if kv == "shared" else {})}
        if embeddings == "file":
            del inputs["input_ids"]
            inputs = {"inputs_embeds": "inputs_embeds", **inputs}
        manifest = {
            "format": "versatileffn-onnx",
            "format_version": FORMAT_VERSION,
            "name": name,
            "display_name": display_name or name,
            "description": description,
            "architecture": architecture(cfg, n_params, sd),
            "graph": {"file": "model.onnx",
                      "inputs": inputs,
                      "outputs": output_names(cfg),
                      "head_dim": cfg.head_dim, "weights_dtype": weights_dtype,
                      "variant": "masked" if cfg.ffn_kind == "upcycled" else "cpu-sparse",
                      "attention": attention, "variants": variants,
                      **({"external_data": data_files} if data_files else {}),
                      **({"head": {"tokens": len(head_ids), "rule": head_rule or ""}} if head_ids is not None else {}),
                      **({"kv": "shared"} if kv == "shared" else {}),
                      **({"embeddings": {"file": EMBEDDINGS_FILE, "layout": EMBEDDINGS_LAYOUT}} if embeddings == "file" else {})},
            "tokenizer": {"file": "tokenizer.json",
                          **({"config_file": "tokenizer_config.json"} if "tokenizer_config.json" in files else {}),
                          "special_tokens": special_tokens, "special_ids": special_ids},
            "fim": {"order": fim_order},
            "generation": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "stop_ids": stop_ids,
                           **(generation or {})},
            "files": {},
            "training": {"tokens": 0, "steps": 0, "corpus": None, "hardware": None, "date": None,
                         **(training or {})},
            "metrics": {"val_loss": None, **(metrics or {})},
            "exported": {"date": export_date,
                         "exporter": "models/toolchain/export.py", "onnx_opset": opset,
                         "torch": torch.__version__, "onnx": onnx.__version__},
        }
        if test_vectors:
            manifest["test_vectors"] = test_vectors
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(model_card(manifest, intended_use) if card is None else card)
        for fname in files:
            manifest["files"][fname] = file_entry(os.path.join(tmp, fname))
        try:   # the backend reads exactly this schema; refuse here what it would refuse there
            manifest_schema.check(manifest, f"the manifest of {name}")
        except manifest_schema.ManifestError as e:
            raise ExportError(str(e)) from None
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
            f.write("\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(tmp: str, out_dir: str):
    old = None
    if os.path.exists(out_dir):
        old = out_dir.rstrip("/") + f".old-{os.getpid()}"
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def model_card(m: dict, intended_use: str = None) -> str:
    a, t, g = m["architecture"], m["training"], m["graph"]
    kind = {"versatile": "VersatileFFN (adaptive wide-and-deep FFN reuse: a depth predictor picks 1-4 loops of "
                         "the shared SwiGLU FFN per token; 8 virtual experts, top-2, form the cheap width path)",
            "dense": "dense baseline (the SwiGLU FFN applied once)",
            "loop": f"fixed {a['fixed_loops']}-loop baseline (the same FFN applied {a['fixed_loops']} times)",
            "upcycled": "pretrained dense FFN upcycled into VersatileFFN: per token, hidden units whose gate "
                        "activation is below the layer's calibrated threshold are skipped (each unit is a "
                        f"virtual expert), and a depth router may add up to {a['max_loops'] - 1} gated extra "
                        "loops of the same FFN"}[a["kind"]]
    upcycled = a["kind"] == "upcycled"
    heads = f"{a['n_head']}" + (f" (key/value heads {a['n_kv_head']})" if a.get("n_kv_head", a["n_head"]) != a["n_head"] else "")
    ids = m["tokenizer"]["special_ids"]
    specials = ("special tokens at ids 0-5" if ids == SPECIAL_IDS else
                "special tokens " + ", ".join(f"{m['tokenizer']['special_tokens'][k]} = {i}" for k, i in ids.items()))
    data = g.get("external_data", [])
    graph_files = "model.onnx" + (f" with its weights in {', '.join(data)}" if data else "") + \
        (f" and the token embedding table in {g['embeddings']['file']} (read a row per token)" if g.get("embeddings") else "")
    origin = ("- Upcycled from a pretrained model; it inherits that model's knowledge, biases and licence terms.\n"
              "- The skipped share of FFN units (route_ffn_share) is computed and then masked in this graph: "
              "it measures the work a sparse kernel could skip, not wall-clock savings." if upcycled else
              "- A small model trained from scratch on permissively licensed public source code: completions are short\n"
              "  and often wrong; it has no knowledge of natural language beyond comments in code.")
    cell = lambda v: "—" if v is None else (json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v)
    metrics = "\n".join(f"| {k} | {cell(v)} |" for k, v in m["metrics"].items()) or "| (none) | |"
    training = "\n".join(f"| {k} | {cell(v)} |" for k, v in t.items())
    use = intended_use or ("Local code completion (fill-in-the-middle) inside the VersatileFFN Code VS Code "
                           "extension, and research on per-token adaptive compute.")
    return f"""# {m['display_name']}

{m['description'] or ''}

## Architecture
Decoder-only transformer (RoPE, RMSNorm, pre-norm, SwiGLU) whose FFN is a {kind}.

| | |
|---|---|
| layers | {a['n_layer']} |
| d_model / heads | {a['d_model']} / {heads} |
| FFN hidden (d_ff) | {a['d_ff']} |
| vocabulary | {a['vocab_size']} |
| context length | {a['context_length']} |
| parameters | {a['parameters']:,} |
| weights in graph | {g['weights_dtype']} |

## Training data and run
| | |
|---|---|
{training}

## Metrics
| metric | value |
|---|---|
{metrics}

## Intended use
{use}

## Limitations
{origin}
- It may reproduce code from its training data; check licenses before reusing long completions.
- Routing outputs (loop counts, experts) show where the model spends compute, not why; they are not
  an explanation of correctness.
- Context is limited to {a['context_length']} tokens.

## Files
{graph_files} (ONNX opset {m['exported']['onnx_opset']}, format of models/FORMAT.md v{m['format_version']}),
tokenizer.json (byte-level BPE, {specials}), manifest.json (checksums, I/O names).
Exported{' ' + m['exported']['date'] if m['exported']['date'] else ''} by {m['exported']['exporter']}.
"""


def _parse_sets(pairs):
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ExportError(f"--set {pair!r}: expected key=value")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: cannot read {what} JSON ({e})") from None


def read_checkpoint(path: str):
    """(config, fp32 state dict, training metadata, metrics) from a train.py checkpoint
    (run folder, ckpt.json or ckpt.safetensors; see checkpoint.py)."""
    from checkpoint import CheckpointError, load_model
    try:
        model, meta = load_model(path)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    training = {k: meta[k] for k in ("step", "tokens") if k in meta}
    training.update(meta.get("training") or {})
    if "step" in training:
        training["steps"] = training.pop("step")
    metrics = dict(meta.get("metrics") or {})
    if meta.get("routing"):
        metrics["val_routing"] = meta["routing"]
    return model.cfg, model.state_dict(), training, metrics


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="train.py checkpoint: run folder, ckpt.json or ckpt.safetensors")
    src.add_argument("--random", action="store_true", help="a freshly initialized model (tests, benchmarks)")
    ap.add_argument("--config", help="JSON model config for --random")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields for --random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    ap.add_argument("--out", required=True, help="model folder to write (replaced atomically)")
    ap.add_argument("--name", help="model id (default: the folder name)")
    ap.add_argument("--display-name")
    ap.add_argument("--description", default="")
    ap.add_argument("--weights-dtype", choices=WEIGHTS_DTYPES, default="float32",
                    help="int8 / int4: MatMulNBits (blocks of 32) for the large matrix products; decode reads 4x / ~6x fewer bytes")
    ap.add_argument("--attention", choices=["gqa", "plain"], default="gqa",
                    help="gqa: onnxruntime's GroupQueryAttention contrib op (fast); plain: standard ONNX ops only")
    ap.add_argument("--gpu-variant", action="store_true",
                    help="also write model.masked.onnx (no data-dependent control flow) for GPU providers")
    ap.add_argument("--external-data", choices=["auto", "always", "never"], default="auto",
                    help="weights in model.onnx.data: auto = only above 1.5 GiB of initializers")
    ap.add_argument("--embeddings", choices=["graph", "file"], default="graph",
                    help="file (quantized weights): the embedding table in embeddings.safetensors, read a row per token, "
                         "instead of inside the graph (less resident memory)")
    ap.add_argument("--metrics", help="JSON file with metrics (merged over the checkpoint's)")
    ap.add_argument("--training", help="JSON file with training metadata (merged over the checkpoint's)")
    args = ap.parse_args(argv)
    try:
        training, metrics = {}, {}
        if args.checkpoint:
            cfg, sd, training, metrics = read_checkpoint(args.checkpoint)
        else:
            raw = _read_json(args.config, "model config") if args.config else {}
            raw.update(_parse_sets(args.set))
            try:
                cfg = ModelConfig.from_dict(raw)
            except (ValueError, TypeError) as e:
                raise ExportError(f"{args.config or '--set'}: bad model config: {e}") from None
            sd = random_model(cfg, args.seed).state_dict()
            training = {"corpus": "none (random weights)", "seed": args.seed}
        if args.training:
            training.update(_read_json(args.training, "training metadata"))
        if args.metrics:
            metrics.update(_read_json(args.metrics, "metrics"))
        m = export_model(cfg, sd, args.out, name=args.name, display_name=args.display_name,
                         description=args.description, tokenizer=args.tokenizer,
                         weights_dtype=args.weights_dtype, training=training, metrics=metrics,
                         attention=args.attention, gpu_variant=args.gpu_variant,
                         external_data={"auto": None, "always": True, "never": False}[args.external_data],
                         embeddings=args.embeddings)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {m['architecture']['kind']}, {m['architecture']['parameters']:,} parameters, "
          f"model.onnx {m['files']['model.onnx']['bytes']:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
