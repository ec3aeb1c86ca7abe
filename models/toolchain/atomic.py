"""Atomic file writes for the toolchain: write beside the target, fsync, rename. Readers
never see a half-written file, and a failure leaves the previous file (if any) untouched
and no temporary file behind."""
import os
import tempfile


def atomic_write(path: str, write):
    """Calls write(tmp_path) to produce the file, then renames it onto `path`."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=os.path.basename(path) + ".tmp-")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary files
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)
