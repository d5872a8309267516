"""Property-based: generated COCO files, prediction files and manifests fed to `ingest`, `evaluate` and
`status` never give a traceback and never leave a half-written ledger (issue "Hardening")."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest

from conftest import LSPET, REPO, demo_manifest_dict, lsp_manifest

IDS = [7001, 7002, 7003]
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# JSON-able junk: what a hand-edited or foreign file may hold where a number, list or object belongs
junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _base(coco: dict) -> dict:
    return copy.deepcopy(
        {
            "images": [i for i in coco["images"] if i["id"] in IDS],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in IDS],
            "categories": coco["categories"],
        }
    )


@st.composite
def mutated_coco(draw, base: dict):
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["image", "annotation", "keypoint", "top", "category"]))
        if where == "top":
            d[draw(st.sampled_from(["images", "annotations", "categories"]))] = draw(junk)
        elif where == "image" and isinstance(d.get("images"), list) and d["images"]:
            im = d["images"][draw(st.integers(0, len(d["images"]) - 1))]
            if isinstance(im, dict):
                im[draw(st.sampled_from(["id", "file_name", "width", "height"]))] = draw(junk)
        elif where == "annotation" and isinstance(d.get("annotations"), list) and d["annotations"]:
            a = d["annotations"][draw(st.integers(0, len(d["annotations"]) - 1))]
            if isinstance(a, dict):
                a[draw(st.sampled_from(["id", "image_id", "bbox", "attributes", "bbox_head", "keypoints"]))] = draw(
                    junk
                )
        elif where == "keypoint" and isinstance(d.get("annotations"), list) and d["annotations"]:
            a = d["annotations"][0]
            if isinstance(a, dict) and isinstance(a.get("keypoints"), list) and a["keypoints"]:
                a["keypoints"][draw(st.integers(0, len(a["keypoints"]) - 1))] = draw(junk)
        elif where == "category" and isinstance(d.get("categories"), list) and d["categories"]:
            c = d["categories"][0]
            if isinstance(c, dict):
                c["keypoints"] = draw(junk)
    return d


def _no_traceback(r) -> None:
    assert r.exit_code in (0, 2), (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert len([line for line in r.output.splitlines() if line.strip()]) == 1, r.output


def test_generated_coco_files_never_traceback_nor_half_write(lspet_coco):
    base = _base(lspet_coco)

    @_SETTINGS
    @given(mutated_coco(base))
    def check(coco):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            f = d / "labels.json"
            f.write_text(json.dumps(coco, allow_nan=True))
            p = lsp_manifest(d, [{"name": "l", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}])
            r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
            _no_traceback(r)
            with Ledger(load_manifest(p).workspace_dir) as led:
                n_frames, n_labels = len(led.frames()), led.count_labels()
            if r.exit_code == 2:
                assert (n_frames, n_labels) == (0, 0)  # refused whole: nothing written
            else:
                assert n_labels <= n_frames <= len(IDS)
                # what was stored is finite and in {0, 1, 2}
                with Ledger(load_manifest(p).workspace_dir) as led:
                    for _, lab in led.current_labels():
                        assert all(
                            math.isfinite(x) and math.isfinite(y) and v in (0, 1, 2) for x, y, v in lab.keypoints
                        )
            pr = d / "preds.json"
            pr.write_text(json.dumps([{"image_id": i, "keypoints": [1.0] * 42, "score": 1} for i in IDS]))
            _no_traceback(CliRunner().invoke(app, ["evaluate", "-m", str(p), "--pred", str(pr), "--gt", str(f)]))

    check()


def test_generated_prediction_files_never_traceback(lspet_coco, tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_base(lspet_coco)))
    man = str(REPO / "data_manifest.yaml")
    preds = (
        st.lists(
            st.fixed_dictionaries(
                {
                    "image_id": st.sampled_from(IDS) | junk,
                    "keypoints": st.lists(st.floats(allow_nan=True) | junk, min_size=0, max_size=45),
                    "score": junk,
                }
            ),
            max_size=4,
        )
        | junk
    )

    @_SETTINGS
    @given(preds)
    def check(p):
        f = tmp_path / "p.json"
        f.write_text(json.dumps(p, allow_nan=True))
        _no_traceback(CliRunner().invoke(app, ["evaluate", "-m", man, "--pred", str(f), "--gt", str(gt), "--json"]))

    check()


def test_generated_manifests_never_traceback(tmp_path):
    good = demo_manifest_dict()
    good["sources"] = []
    keys = [
        ("target_size",),
        ("chunks",),
        ("keypoints", "names"),
        ("keypoints", "flip_pairs"),
        ("keypoints", "normalizer"),
        ("train", "lr"),
        ("train", "epochs"),
        ("selection", "explore"),
        ("model", "input_size"),
        ("strata",),
        ("label_studio", "token_env"),
        ("sources",),
    ]

    @_SETTINGS
    @given(st.lists(st.tuples(st.sampled_from(keys), junk), min_size=1, max_size=3))
    def check(changes):
        d = copy.deepcopy(good)
        for path, value in changes:
            node = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        p = tmp_path / "m.yaml"
        try:
            p.write_text(yaml.safe_dump(d, allow_unicode=True))
        except yaml.YAMLError:
            return
        _no_traceback(CliRunner().invoke(app, ["status", "-m", str(p)]))

    check()


def test_a_control_character_in_a_field_name_stays_on_one_line(tmp_path):
    """Found by the generated-manifests test: a key holding U+001E (a line break to str.splitlines) split the error
    in two. Control characters in an error are written as escapes."""
    d = demo_manifest_dict()
    d["sources"] = []
    d["keypoints"]["normalizer"] = {"\x1e": None, "a\nb": 1}
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d, allow_unicode=True))
    r = CliRunner().invoke(app, ["status", "-m", str(p)])
    _no_traceback(r)
    assert r.exit_code == 2 and "keypoints.normalizer" in r.output and "\\x1e" in r.output
