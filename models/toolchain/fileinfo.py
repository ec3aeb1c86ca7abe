"""A file's sha256 and size, read in chunks: the one definition the toolchain uses for model
manifests, checkpoints and pinned downloads."""
import hashlib
import os


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: str) -> dict:
    """{"sha256", "bytes"}: how manifests and checkpoints record a file."""
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}
