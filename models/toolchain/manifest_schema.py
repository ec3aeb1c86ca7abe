"""models/manifest.schema.json, the only contract between this toolchain and the backend:
export.py checks every manifest against it before writing a model folder, and the backend
(backend/src/engine/modelFolder.ts) checks it before loading one. Both are tested on the
same fixtures (test/fixtures/manifests). Errors are reported by field path in the backend's
notation ("architecture.max_loops", "graph.variants.masked.providers[2]")."""
import json
import os

SCHEMA_PATH = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "manifest.schema.json"))


class ManifestError(Exception):
    pass


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


_validator = None


def _get_validator():
    global _validator
    if _validator is None:
        try:
            from jsonschema import Draft202012Validator
        except ImportError:   # an environment set up before the schema existed
            raise ManifestError("the jsonschema package is missing: run npm run setup "
                                "(or .venv/bin/pip install -r models/toolchain/requirements.txt)") from None
        schema = load_schema()
        Draft202012Validator.check_schema(schema)
        _validator = Draft202012Validator(schema)
    return _validator


def path_text(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (p if out == "" else f".{p}")
    return out


def errors(manifest: dict) -> list:
    """[(path, message)], sorted, one entry per field at fault. A missing or unexpected field is
    reported at its own path (jsonschema reports it at the parent object)."""
    out = set()
    for e in _get_validator().iter_errors(manifest):
        at = list(e.absolute_path)
        if e.validator == "required":
            for name in e.validator_value:
                if isinstance(e.instance, dict) and name not in e.instance:
                    out.add((path_text(at + [name]), "is missing"))
        elif e.validator == "additionalProperties" and e.validator_value is False:
            declared = set(e.schema.get("properties", {}))
            for name in e.instance:
                if name not in declared:
                    out.add((path_text(at + [name]), "is not a field of this format"))
        elif "propertyNames" in e.schema_path:   # a key of an open object (files.*) that is not allowed
            out.add((path_text(at + [e.instance]), f"is not an allowed name ({e.message})"))
        else:
            out.add((path_text(at), e.message))
    return sorted(out)


def check(manifest: dict, where: str = "manifest.json"):
    """Raises ManifestError naming every field that breaks the schema."""
    found = errors(manifest)
    if found:
        listed = "; ".join(f"{p or '(the manifest)'} {m}" for p, m in found[:6])
        more = f" (and {len(found) - 6} more)" if len(found) > 6 else ""
        raise ManifestError(f"{where} does not match models/manifest.schema.json: {listed}{more}")


def providers() -> list:
    """The execution providers a graph variant may name (the schema's list; the backend's is
    common/vocabulary.ts EXECUTION_PROVIDERS, and a test keeps them equal)."""
    return list(load_schema()["$defs"]["provider"]["enum"])


def special_names() -> list:
    """The special tokens every manifest names (tokenizer.special_ids)."""
    return list(load_schema()["$defs"]["tokenizer"]["properties"]["special_ids"]["required"])
