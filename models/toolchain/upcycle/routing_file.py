"""
The committed result of routing calibration (calibrate.py): per-layer gate thresholds of
the upcycled model (gate and down thresholds), with the measurements that chose them. Small, versioned, checksummed:
the set-up refuses a file whose shape, version or checksum is wrong.
"""
import hashlib
import json

ROUTING_VERSION = 1


class RoutingFileError(Exception):
    pass


def _digest(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def with_checksum(doc: dict) -> dict:
    return {**doc, "sha256": _digest(doc)}


def load_routing(path: str, n_layer: int, d_ff: int) -> dict:
    """The routing file at path, checked against the model it will be applied to."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RoutingFileError(f"{path}: cannot be read as JSON ({e})") from None
    if doc.get("version") != ROUTING_VERSION:
        raise RoutingFileError(f"{path}: version {doc.get('version')!r}; this toolchain reads version {ROUTING_VERSION}")
    if doc.get("sha256") != _digest(doc):
        raise RoutingFileError(f"{path}: checksum mismatch (edited by hand or truncated); re-run calibrate.py")
    t = doc.get("gate_thresholds")
    if doc.get("n_layer") != n_layer or doc.get("d_ff") != d_ff or not isinstance(t, list) or len(t) != n_layer:
        raise RoutingFileError(f"{path}: made for n_layer {doc.get('n_layer')}, d_ff {doc.get('d_ff')} "
                               f"with {len(t) if isinstance(t, list) else 'no'} thresholds; the model has "
                               f"n_layer {n_layer}, d_ff {d_ff}")
    d = doc.get("down_thresholds", [0.0] * n_layer)
    if not isinstance(d, list) or len(d) != n_layer:
        raise RoutingFileError(f"{path}: down_thresholds must list one threshold per layer ({n_layer})")
    if not all(isinstance(x, (int, float)) and 0 <= x < 1e3 for x in t + d):
        raise RoutingFileError(f"{path}: thresholds must be finite, non-negative numbers")
    return doc


def curve_point(doc: dict, point: str) -> dict:
    """The point "gate_skip/down_skip" (e.g. "0.2/0.6") of a routing file's measured curve."""
    gate, down = (float(x) for x in point.split("/"))
    for p in doc.get("curve", []):
        if abs(p["gate_skip"] - gate) < 1e-9 and abs(p["down_skip"] - down) < 1e-9:
            return p
    raise RoutingFileError(f"no point {point} on the curve: {[(p['gate_skip'], p['down_skip']) for p in doc.get('curve', [])]}")


def chosen_point(doc: dict) -> dict | None:
    """The point a routing file ships, with its per-layer shares and compute on the calibration's validation
    tokens: a trained file's trained thresholds (train_routing.py), else the curve point at its gate_skip/down_skip.
    None for a file whose curve lacks it."""
    if "trained" in doc:
        return doc["trained"]["point"]
    return next((p for p in doc.get("curve", [])
                 if (p["gate_skip"], p["down_skip"]) == (doc.get("gate_skip"), doc.get("down_skip"))), None)


def point_of(doc: dict, point: str | None) -> dict:
    """The thresholds an experiment exports or scores: the curve point "gate_skip/down_skip", or with point None
    the file's own (shipped or trained) thresholds."""
    if point:
        return curve_point(doc, point)
    return {"gate_thresholds": doc["gate_thresholds"], "down_thresholds": doc["down_thresholds"],
            "gate_skip": doc.get("gate_skip"), "down_skip": doc.get("down_skip")}
