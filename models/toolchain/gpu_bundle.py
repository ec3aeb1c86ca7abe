"""
What travels to and from the GPU machine, within its limits (64 MiB in, and back at most
8 files of at most 16 MiB, 64 MiB together).

  pack-data    models/work/data -> one xz archive of train.bin/val.bin/meta.json to carry
  unpack-data  the archive -> a data folder on the GPU machine
  pack-runs    run folders -> fp16 weights + sidecar + logs in one tar, split into <=15 MiB parts
  unpack-runs  those parts (fetched back) -> run folders here, ready for export.py
  check-size   fail fast if the models' fp16 weights cannot come back
"""
import argparse
import glob
import io
import json
import lzma
import os
import shlex
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from atomic import atomic_write  # noqa: E402

PART_BYTES = 15 * 2**20
RETURN_LIMIT = 62 * 2**20     # 64 MiB minus room for the summary and logs
DATA_FILES = ("train.bin", "val.bin", "meta.json")


def pack_data(data_dir: str, out: str, max_train_tokens: int = 0):
    """xz the token files. A cap on train tokens keeps the archive within what travels:
    then evenly spaced blocks of whole documents are kept, so every language (the file
    may be ordered by language) keeps its share."""
    import numpy as np
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)

    def write(tmp):
        with tarfile.open(tmp, "w:xz", preset=6) as tar:
            for name in DATA_FILES:
                path = os.path.join(data_dir, name)
                if not os.path.exists(path):
                    raise SystemExit(f"pack-data: {path} is missing; build the corpus and tokenize it first")
                data = open(path, "rb").read()
                if name == "train.bin" and max_train_tokens and len(data) > 2 * max_train_tokens:
                    data = subsample_documents(np.frombuffer(data, dtype=np.uint16), max_train_tokens).tobytes()
                    print(f"pack-data: kept {len(data) // 2:,} of {os.path.getsize(path) // 2:,} train tokens")
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    atomic_write(out, write)
    print(f"wrote {out}: {os.path.getsize(out) / 2**20:.1f} MiB")


def subsample_documents(tokens, max_tokens: int, block: int = 1 << 20):
    """About max_tokens tokens from evenly spaced blocks, each trimmed to whole documents
    (from just after its first <|endoftext|> to its last)."""
    import numpy as np
    n_blocks = len(tokens) // block
    keep = max(1, max_tokens // block)
    parts = []
    for b in np.linspace(0, n_blocks - 1, keep).round().astype(int):
        chunk = tokens[b * block:(b + 1) * block]
        eots = np.flatnonzero(chunk == 0)
        if len(eots) >= 2:
            parts.append(chunk[eots[0] + 1:eots[-1] + 1])
    return np.concatenate(parts)


def unpack_data(archive: str, data_dir: str):
    if not os.path.exists(archive):
        raise SystemExit(f"unpack-data: {archive} is missing: carry it to the GPU machine (run's carry list)")
    os.makedirs(data_dir, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        _extract(tar, data_dir)
    print(f"unpacked {archive} -> {data_dir}: " + ", ".join(
        f"{n} {os.path.getsize(os.path.join(data_dir, n)):,} B" for n in DATA_FILES))


def pack_runs(run_dirs: list[str], out_dir: str, name: str = "runs"):
    """One tar holding, per run, fp16 weights, the sidecar and the log; split into parts."""
    from checkpoint import load_training_checkpoint, save_checkpoint
    from model import VersatileLM
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for run_dir in run_dirs:
            ckpt = load_training_checkpoint(run_dir)
            model = VersatileLM(ckpt["model_config"])
            model.load_state_dict(ckpt["state_dict"])
            stage = os.path.join(run_dir, "fp16")
            meta = dict(ckpt["meta"], files={})
            meta["training"] = dict(meta.get("training") or {}, transport_dtype="float16")
            save_checkpoint(stage, model, meta, dtype=__import__("torch").float16)
            base = os.path.basename(os.path.normpath(run_dir))
            for f in ("ckpt.safetensors", "ckpt.json"):
                tar.add(os.path.join(stage, f), arcname=f"{base}/{f}")
            log = os.path.join(run_dir, "train_log.jsonl")
            if os.path.exists(log):
                tar.add(log, arcname=f"{base}/train_log.jsonl")
    data = buf.getvalue()
    if len(data) > RETURN_LIMIT:
        raise SystemExit(f"pack-runs: {len(data) / 2**20:.1f} MiB is more than can come back "
                         f"({RETURN_LIMIT / 2**20:.0f} MiB); use smaller models")
    os.makedirs(out_dir, exist_ok=True)
    parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    for i, part in enumerate(parts):
        with open(os.path.join(out_dir, f"{name}.tar.part{i}"), "wb") as f:
            f.write(part)
    print(f"packed {', '.join(run_dirs)} -> {out_dir}/{name}.tar.part0..{len(parts) - 1} ({len(data) / 2**20:.1f} MiB)")


def unpack_runs(parts_dir: str, out_dir: str, name: str = "runs"):
    parts = sorted(glob.glob(os.path.join(parts_dir, f"{name}.tar.part*")), key=lambda p: int(p.rsplit("part", 1)[1]))
    if not parts:
        raise SystemExit(f"unpack-runs: no {name}.tar.part* files in {parts_dir}")
    data = b"".join(open(p, "rb").read() for p in parts)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        _extract(tar, out_dir)
        names = sorted({m.name.split("/")[0] for m in tar.getmembers()})
    print(f"unpacked {len(parts)} parts -> {', '.join(os.path.join(out_dir, n) for n in names)}")


def _extract(tar: tarfile.TarFile, dest: str):
    try:
        tar.extractall(dest, filter="data")
    except TypeError:  # Python without extraction filters; these archives are our own
        tar.extractall(dest)


def check_size(config_args: list[list[str]], data_dir: str):
    """fp16 bytes of each configured model, from the configs and the data's vocab_size."""
    import torch
    from dataclasses import replace
    from data import read_meta
    from model import VersatileLM
    from train_config import load_config
    total = 0
    vocab = read_meta(data_dir).get("vocab_size")
    for args in config_args:
        model_cfg, _, overrides = load_config(args)
        if vocab and "vocab_size" not in overrides:
            model_cfg = replace(model_cfg, vocab_size=int(vocab))
        with torch.device("meta"):
            n = VersatileLM(model_cfg).num_params()
        total += 2 * n
        print(f"{' '.join(args)}: {n:,} parameters, {2 * n / 2**20:.1f} MiB in fp16")
    if total > RETURN_LIMIT:
        raise SystemExit(f"check-size: the models' fp16 weights total {total / 2**20:.1f} MiB, more than the "
                         f"{RETURN_LIMIT / 2**20:.0f} MiB that can come back from the GPU machine. Shrink them.")
    print(f"fp16 weights total {total / 2**20:.1f} MiB: within the {RETURN_LIMIT / 2**20:.0f} MiB that comes back")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack-data"); p.add_argument("--data-dir", default="models/work/data")
    p.add_argument("--out", default="models/work/carry/data.tar.xz"); p.add_argument("--max-train-tokens", type=int, default=0)
    p = sub.add_parser("unpack-data"); p.add_argument("--archive", default="models/work/carry/data.tar.xz")
    p.add_argument("--data-dir", default="models/work/data")
    p = sub.add_parser("pack-runs"); p.add_argument("runs", nargs="+"); p.add_argument("--out", required=True)
    p = sub.add_parser("unpack-runs"); p.add_argument("parts_dir"); p.add_argument("--out", default="models/work/runs")
    p = sub.add_parser("check-size"); p.add_argument("--data-dir", default="models/work/data")
    p.add_argument("--config", action="append", required=True,
                   help="one model's config file and overrides as one string; repeat per model")
    a = ap.parse_args()
    if a.cmd == "pack-data":
        pack_data(a.data_dir, a.out, a.max_train_tokens)
    elif a.cmd == "unpack-data":
        unpack_data(a.archive, a.data_dir)
    elif a.cmd == "pack-runs":
        pack_runs(a.runs, a.out)
    elif a.cmd == "unpack-runs":
        unpack_runs(a.parts_dir, a.out)
    else:
        check_size([shlex.split(c) for c in a.config], a.data_dir)
