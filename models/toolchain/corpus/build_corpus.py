"""Build the code corpus from the pinned manifest.

    python models/toolchain/corpus/build_corpus.py [--manifest PATH] [--work models/work]
        [--val-fraction 0.03] [--download-threads 8] [--workers 2] [--limit N]

Downloads every package artifact (cached under WORK/cache, verified by sha256 or npm
integrity), keeps permissively licensed source files that pass filters.py, exact-dedups
files, splits train/validation by package and writes WORK/corpus/{train,val}.jsonl plus
stats.json atomically, and DATA_CARD.md beside this file. A package that fails (gone from
the registry, bad checksum, unreadable archive) is reported by name and skipped.
"""
import argparse
import base64
import email.parser
import hashlib
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))   # the toolchain: atomic.py
import data_card  # noqa: E402
from atomic import atomic_write  # noqa: E402
import filters  # noqa: E402
import licenses  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


class PackageError(Exception):
    """A package that cannot be used; the message names it and says what to do."""


# ---------------------------------------------------------------- download + verify

def cache_path(cache_dir, pkg):
    # Scoped npm tarballs share basenames (@angular/core and @jest/core -> core-X.tgz).
    scope = pkg["name"].split("/")[0] + "__" if pkg["name"].startswith("@") else ""
    return os.path.join(cache_dir, pkg["registry"], scope + pkg["url"].rsplit("/", 1)[-1])


def verify(pkg, data):
    if pkg.get("sha256"):
        got = hashlib.sha256(data).hexdigest()
        ok = got == pkg["sha256"]
    elif pkg.get("integrity", "").startswith("sha512-"):
        got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        ok = got == pkg["integrity"]
    elif pkg.get("shasum"):
        got = hashlib.sha1(data).hexdigest()
        ok = got == pkg["shasum"]
    else:
        return
    if not ok:
        raise PackageError(f"{pkg['name']}@{pkg['version']}: checksum mismatch for {pkg['url']}; "
                           "the cached file was removed, rerun the build (if it persists the "
                           "registry artifact changed: re-pin with make_manifest.py)")


def download(pkg, cache_dir):
    """Fetch (or reuse) the artifact; returns its local path."""
    path = cache_path(cache_dir, pkg)
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        try:
            verify(pkg, data)
            return path
        except PackageError:
            os.remove(path)  # stale or corrupt cache entry: fetch it again
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with urllib.request.urlopen(pkg["url"], timeout=120) as r:
            data = r.read()
    except urllib.error.HTTPError as e:
        raise PackageError(f"{pkg['name']}@{pkg['version']} ({pkg['registry']}) no longer resolves: "
                           f"HTTP {e.code} for {pkg['url']}. Re-pin it with make_manifest.py or "
                           "remove it from manifest.json") from None
    except (urllib.error.URLError, OSError) as e:
        raise PackageError(f"{pkg['name']}@{pkg['version']}: download failed ({e}); check the "
                           "registry is reachable and rerun (finished downloads are cached); if the version "
                           "was unpublished, re-pin it with make_manifest.py or remove it from "
                           "manifest.json") from None
    verify(pkg, data)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, write)
    return path


# ---------------------------------------------------------------- read an archive

def read_members(path):
    """Yield (package-relative path, bytes) for regular files in a .tgz/.tar.gz/.zip."""
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename.split("/", 1)[-1], z.read(info)
        return
    with tarfile.open(path, "r:*") as t:
        for m in t:
            if m.isfile():
                yield m.name.split("/", 1)[-1], t.extractfile(m).read()


def artifact_license(pkg, meta_files):
    """License from the artifact's own metadata, falling back to the manifest's."""
    cands = []
    if pkg["registry"] == "npm" and "package.json" in meta_files:
        try:
            pj = json.loads(meta_files["package.json"])
            cands += [pj.get("license"), pj.get("licenses")]
        except ValueError:
            pass
    if pkg["registry"] == "pypi" and "PKG-INFO" in meta_files:
        msg = email.parser.Parser().parsestr(meta_files["PKG-INFO"].decode("utf-8", "replace"))
        cands += [msg.get("License-Expression"), msg.get("License"),
                  licenses.from_classifiers(msg.get_all("Classifier"))]
    cands.append(pkg.get("license"))
    return licenses.choose(cands)


def process_package(pkg, cache_dir):
    """Read one cached artifact -> dict with kept files and per-reason drop counts."""
    path = cache_path(cache_dir, pkg)
    try:
        members = list(read_members(path))
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise PackageError(f"{pkg['name']}@{pkg['version']}: cannot read archive {path} ({e}); "
                           "delete it and rerun the build") from None
    meta = {p: d for p, d in members if p in ("package.json", "PKG-INFO")}
    lic = artifact_license(pkg, meta)
    res = {"pkg": pkg, "license": lic, "files": [], "dropped": Counter(), "bench": None}
    if not licenses.is_permissive(lic):
        res["dropped"]["license not permissive"] = len(members)
        return res
    has_src = any(p.startswith("src/") and filters.language_of(p) for p, _ in members)
    for rel, data in members:
        if filters.benchmark_shipped(rel, data):
            res["bench"] = rel
        reason = filters.path_rejection(rel, has_src=has_src)
        if reason:
            res["dropped"][reason] += 1
            continue
        try:
            text = filters.decode(data, f"{pkg['name']}/{rel}")
        except filters.NotUtf8:
            res["dropped"]["not UTF-8"] += 1
            continue
        reason = filters.text_rejection(text)
        if reason is None and filters.BENCH_MENTION.search(text):
            reason = "mentions a code benchmark"
        if reason:
            res["dropped"][reason] += 1
            continue
        res["files"].append((rel, filters.language_of(rel), text))
    return res


# ---------------------------------------------------------------- split, dedup, write

def package_hash(pkg):
    h = hashlib.sha256(f"{pkg['registry']}:{pkg['name'].lower()}".encode()).hexdigest()
    return int(h[:12], 16) / float(1 << 48)


def assign_splits(results, val_fraction, min_val_bytes=0):
    """Package-level split: hash(name) < val_fraction -> val. Then, per main language, more
    packages in hash order move to val until that language's val holds min_val_bytes (never
    more than half its packages), so every language can be evaluated."""
    split, main_lang, size = {}, {}, {}
    for r in results:
        key = r["pkg"]["name"]
        split[key] = "val" if package_hash(r["pkg"]) < val_fraction else "train"
        by = Counter()
        for _, lang, text in r["files"]:
            by[lang] += len(text)
        if by:
            main_lang[key] = by.most_common(1)[0][0]
            size[key] = sum(by.values())
    for lang in sorted(set(main_lang.values())):
        pk = sorted((r["pkg"] for r in results if main_lang.get(r["pkg"]["name"]) == lang),
                    key=package_hash)
        have = sum(size[p["name"]] for p in pk if split[p["name"]] == "val")
        nval = sum(split[p["name"]] == "val" for p in pk)
        for p in pk:
            if (have >= min_val_bytes and nval >= 1) or nval >= len(pk) // 2:
                break
            if split[p["name"]] == "train":
                split[p["name"]] = "val"
                have += size[p["name"]]
                nval += 1
    return split


def cap_files(files, cap_bytes):
    """At most cap_bytes of one package, keeping a hash-ordered (so spread out, but
    deterministic) subset of its files: big packages must not dominate the mix."""
    if not cap_bytes:
        return files
    kept, total = [], 0
    for f in sorted(files, key=lambda f: hashlib.sha256(f[0].encode()).digest()):
        n = len(f[2].encode("utf-8"))
        if total + n > cap_bytes:
            continue
        kept.append(f)
        total += n
    return sorted(kept)


def atomic_write_lines(path, lines):
    """One line per item, written atomically (atomic.py): readers never see a half-written file."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
    atomic_write(path, write)


def atomic_write_text(path, text):
    atomic_write_lines(path, [text.rstrip("\n")])


def assemble(results, val_fraction, min_val_bytes=0, cap_bytes=0):
    """Dedup (train packages first, so a val file seen in train is dropped) -> records, stats."""
    split = assign_splits(results, val_fraction, min_val_bytes)
    order = sorted(results, key=lambda r: (split[r["pkg"]["name"]] != "train", r["pkg"]["name"]))
    seen = set()
    records = {"train": [], "val": []}
    stats = {"packages": [], "dropped": Counter(), "excluded": [],
             "languages": defaultdict(lambda: {"train": [0, 0], "val": [0, 0]})}
    for r in order:
        pkg, s = r["pkg"], split[r["pkg"]["name"]]
        stats["dropped"].update(r["dropped"])
        if r["bench"]:
            stats["excluded"].append(f"{pkg['name']}@{pkg['version']}: ships a code-generation "
                                     f"benchmark ({r['bench']})")
            continue
        if not licenses.is_permissive(r["license"]):
            stats["excluded"].append(f"{pkg['name']}@{pkg['version']}: license {r['license']!r}")
            continue
        nbytes = nfiles = 0
        by_lang = Counter()
        files = cap_files(r["files"], cap_bytes)
        stats["dropped"]["over package cap"] += len(r["files"]) - len(files)
        for rel, lang, text in files:
            h = hashlib.sha256(text.encode("utf-8")).digest()
            if h in seen:
                stats["dropped"]["duplicate"] += 1
                continue
            seen.add(h)
            b = len(text.encode("utf-8"))
            records[s].append({"package": pkg["name"], "version": pkg["version"],
                               "registry": pkg["registry"], "path": rel, "language": lang,
                               "license": r["license"], "text": text})
            stats["languages"][lang][s][0] += b
            stats["languages"][lang][s][1] += 1
            nbytes += b
            nfiles += 1
            by_lang[lang] += b
        stats["packages"].append({"name": pkg["name"], "version": pkg["version"],
                                  "registry": pkg["registry"], "license": r["license"],
                                  "split": s, "files": nfiles, "bytes": nbytes,
                                  "main_language": by_lang.most_common(1)[0][0] if by_lang else None})
    return records, stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=os.path.join(HERE, "manifest.json"))
    ap.add_argument("--work", default=os.path.join(REPO, "models", "work"))
    ap.add_argument("--card", default=os.path.join(HERE, "DATA_CARD.md"))
    ap.add_argument("--val-fraction", type=float, default=0.03)
    ap.add_argument("--min-val-mb", type=float, default=3.0,
                    help="per main language, grow val (by package) to at least this much")
    ap.add_argument("--package-cap-mb", type=float, default=6.0,
                    help="keep at most this much source per package (0 = no cap)")
    ap.add_argument("--download-threads", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N packages (smoke runs)")
    args = ap.parse_args(argv)

    t0 = time.time()
    with open(args.manifest) as f:
        manifest = json.load(f)
    pkgs = manifest["packages"][: args.limit or None]
    cache_dir = os.path.join(args.work, "cache")
    out_dir = os.path.join(args.work, "corpus")
    os.makedirs(out_dir, exist_ok=True)

    errors = []
    ok = []
    with ThreadPoolExecutor(args.download_threads) as ex:
        for pkg, fut in [(p, ex.submit(download, p, cache_dir)) for p in pkgs]:
            try:
                fut.result()
                ok.append(pkg)
            except PackageError as e:
                errors.append(str(e))
                print(f"ERROR {e}", file=sys.stderr)
    t_dl = time.time() - t0
    print(f"downloaded {len(ok)}/{len(pkgs)} packages in {t_dl:.0f}s", file=sys.stderr)

    results = []
    with ProcessPoolExecutor(args.workers) as ex:
        for pkg, fut in [(p, ex.submit(process_package, p, cache_dir)) for p in ok]:
            try:
                results.append(fut.result())
                if len(results) % 50 == 0:
                    print(f"processed {len(results)}/{len(ok)} packages, {time.time()-t0:.0f}s",
                          file=sys.stderr)
            except PackageError as e:
                errors.append(str(e))
                print(f"ERROR {e}", file=sys.stderr)
    records, stats = assemble(results, args.val_fraction, int(args.min_val_mb * 1e6),
                              int(args.package_cap_mb * 1e6))
    for s in ("train", "val"):
        atomic_write_lines(os.path.join(out_dir, f"{s}.jsonl"),
                           (json.dumps(r, ensure_ascii=False) for r in records[s]))
    stats["errors"] = errors
    stats["seconds"] = round(time.time() - t0, 1)
    stats["download_seconds"] = round(t_dl, 1)
    stats["val_fraction"] = args.val_fraction
    stats["min_val_mb"] = args.min_val_mb
    stats["package_cap_mb"] = args.package_cap_mb
    atomic_write_text(os.path.join(out_dir, "stats.json"), json.dumps(stats, indent=1, default=dict))
    atomic_write_text(args.card, data_card.render(stats, tokens=None))
    for lang, v in sorted(stats["languages"].items()):
        print(f"{lang:11s} train {v['train'][0]/1e6:8.1f} MB {v['train'][1]:7d} files | "
              f"val {v['val'][0]/1e6:6.1f} MB {v['val'][1]:6d} files", file=sys.stderr)
    print(f"done in {stats['seconds']}s; {len(errors)} package errors; excluded "
          f"{len(stats['excluded'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
