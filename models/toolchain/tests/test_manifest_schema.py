"""models/manifest.schema.json from the toolchain's side: the shared fixtures
(test/fixtures/manifests, also run by the backend's test/unit/backend/manifestSchema.test.ts),
the real model folders, and export_model refusing to write a manifest the schema refuses."""
import copy
import glob
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLCHAIN = os.path.dirname(HERE)
REPO = os.path.abspath(os.path.join(TOOLCHAIN, "..", ".."))
sys.path.insert(0, TOOLCHAIN)

import manifest_schema  # noqa: E402
import special_tokens  # noqa: E402

FIXTURES = os.path.join(REPO, "test", "fixtures", "manifests")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json"), encoding="utf-8"))["cases"]


def build(case: dict) -> dict:
    with open(os.path.join(FIXTURES, case["base"]), encoding="utf-8") as f:
        m = json.load(f)
    for path, value in case.get("set", []):
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = copy.deepcopy(value)
    for path in case.get("delete", []):
        node = m
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return m


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_shared_fixture(case):
    """The exact set of field paths at fault, the same set the backend's checker reports."""
    found = manifest_schema.errors(build(case))
    assert sorted({p for p, _ in found}) == sorted(case["errors"]), found


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "models", "*", "manifest.json"))),
                         ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_real_model_folders_validate(path):
    with open(path, encoding="utf-8") as f:
        manifest_schema.check(json.load(f), path)


def test_check_names_every_field_at_fault():
    m = build({"base": "tiny-test.json", "set": [[["architecture", "max_loops"], 0]], "delete": [["fim"]]})
    with pytest.raises(manifest_schema.ManifestError, match=r"architecture\.max_loops .*fim is missing"):
        manifest_schema.check(m)


def test_one_definition_of_special_names_and_providers():
    assert list(special_tokens.NAMES) == manifest_schema.special_names()
    assert set(special_tokens.TOKENS) == set(special_tokens.IDS) == set(special_tokens.NAMES)
    assert manifest_schema.providers()[0] == "cpu"


def test_export_refuses_a_manifest_the_schema_refuses(tmp_path):
    """Validated before anything is written: the folder does not appear."""
    from export import ExportError
    from export_fixtures import export_small, small_model
    model = small_model("dense")
    out = tmp_path / "m"
    with pytest.raises(ExportError, match=r"generation\.top_p"):
        export_small(model, str(out), generation={"top_p": 0})
    assert not out.exists() and os.listdir(tmp_path) == []
    m = export_small(model, str(out))
    manifest_schema.check(m)
    with open(out / "manifest.json", encoding="utf-8") as f:
        assert json.load(f) == m
