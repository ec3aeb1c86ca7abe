"""License detection and the permissive-license filter.

Each package's license comes from the metadata inside the pinned artifact (package.json
"license" for npm, PKG-INFO License-Expression / License / classifiers for PyPI), falling
back to what the registry said when the manifest was generated. Only licenses in
PERMISSIVE are kept; anything unknown is dropped, never guessed.
"""
import re

PERMISSIVE = {
    "MIT", "MIT-0", "ISC", "0BSD", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear",
    "Apache-2.0", "Unlicense", "CC0-1.0", "PSF-2.0", "Python-2.0", "Zlib", "BlueOak-1.0.0",
    "HPND", "BSL-1.0", "MIT-CMU", "BSD", "NCSA", "X11", "WTFPL", "Artistic-2.0"
}

# Common free-text spellings found in PyPI metadata and old package.json files.
_ALIASES = [
    (r"^mit( license)?$", "MIT"),
    (r"^the mit license( \(mit\))?$", "MIT"),
    (r"^expat( license)?$", "MIT"),
    (r"^isc( license)?$", "ISC"),
    (r"^apache( software license)?( license)?,? ?(version |v)?2(\.0)?( license)?$", "Apache-2.0"),
    (r"^apache[- ]2(\.0)?$", "Apache-2.0"),
    (r"^apache software license$", "Apache-2.0"),
    (r"^apache license$", "Apache-2.0"),
    (r"^(new |modified |revised )?bsd( license)?$", "BSD"),
    (r"^(the )?bsd[- ]?3[- ]clause( license)?$", "BSD-3-Clause"),
    (r"^3[- ]clause bsd( license)?$", "BSD-3-Clause"),
    (r"^bsd[- ]?2[- ]clause( license)?$", "BSD-2-Clause"),
    (r"^(simplified )?bsd 2-clause$", "BSD-2-Clause"),
    (r"^psf( license)?$", "PSF-2.0"),
    (r"^python software foundation license$", "PSF-2.0"),
    (r"^unlicense$", "Unlicense"),
    (r"^public domain$", "Unlicense"),
    (r"^zlib( license)?$", "Zlib"),
    (r"^cc0( 1\.0)?( universal)?$", "CC0-1.0"),
    (r"^boost software license 1\.0$", "BSL-1.0"),
]

_CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: BSD License": "BSD",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "License :: Public Domain": "Unlicense",
}

_SPDX_CASE = {k.lower(): k for k in PERMISSIVE}


def normalize(raw):
    """Map one license string to an SPDX-like id, or return it unchanged if unknown."""
    if raw is None:
        return None
    if isinstance(raw, dict):  # old package.json: {"type": "MIT", "url": ...}
        raw = raw.get("type")
    if isinstance(raw, list):  # old package.json: "licenses": [{...}, ...]
        return " OR ".join(filter(None, (normalize(x) for x in raw))) or None
    s = str(raw).strip()
    if not s or s.upper() in ("UNKNOWN", "UNLICENSED", "SEE LICENSE IN LICENSE"):
        return None
    if "\n" in s or len(s) > 120:
        return _from_text(s)
    low = s.lower().strip(" .")
    if low in _SPDX_CASE:
        return _SPDX_CASE[low]
    for pat, spdx in _ALIASES:
        if re.match(pat, low):
            return spdx
    return s


def _from_text(text):
    """Some sdists put the whole license text in the License field; recognize the common ones."""
    t = " ".join(text.split()).lower()
    if "permission is hereby granted, free of charge" in t:
        return "MIT"
    if "apache license" in t and "version 2.0" in t:
        return "Apache-2.0"
    if "redistribution and use in source and binary forms" in t:
        return "BSD-3-Clause" if "neither the name" in t or "endorse or promote" in t else "BSD-2-Clause"
    if "permission to use, copy, modify, and/or distribute" in t:
        return "ISC"
    return None


def from_classifiers(classifiers):
    for c in classifiers or []:
        if c in _CLASSIFIERS:
            return _CLASSIFIERS[c]
    return None


def is_permissive(expr):
    """True if an SPDX expression is permissive: every AND term, some OR branch."""
    if not expr:
        return False
    e = expr.replace("(", " ").replace(")", " ")
    for branch in re.split(r"\s+OR\s+|/", e, flags=re.I):
        terms = [t.strip() for t in re.split(r"\s+AND\s+", branch, flags=re.I) if t.strip()]
        norm = [normalize(t.replace(" WITH LLVM-exception", "")) for t in terms]
        if terms and all(n in PERMISSIVE for n in norm):
            return True
    return False


def choose(candidates):
    """First permissive normalized candidate, else the first known one, else None."""
    normed = [normalize(c) for c in candidates if c]
    normed = [n for n in normed if n]
    for n in normed:
        if is_permissive(n):
            return n
    return normed[0] if normed else None
