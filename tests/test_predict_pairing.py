"""`predict` then `evaluate` pair results with labels by file, never by position or base name alone, and
`predict --out` is checked before any prediction (issue "Hardening, third pass", items 7, 17 and 18)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from typer.testing import CliRunner

from iterate.cli import app

from conftest import LSPET, REPO, lsp_manifest, lspet_subset

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"
IDS = list(range(7001, 7021))


def _one_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.fixture(scope="module")
def val(lspet_coco, tmp_path_factory):
    """20 LSPET images in a folder of their own, their labels and the predictions without --coco."""
    tmp = tmp_path_factory.mktemp("pairing")
    gt = lspet_subset(lspet_coco, IDS, tmp / "val.json")
    (tmp / "images").mkdir()
    for im in json.loads(gt.read_text())["images"]:
        shutil.copy(LSPET / im["file_name"], tmp / im["file_name"])
    manifest = lsp_manifest(tmp, [])
    r = CliRunner().invoke(app, ["predict", str(tmp / "images"), "--model", str(BASE), "--out", str(tmp / "p.json")])
    assert r.exit_code == 0, r.output
    return {"dir": tmp, "gt": gt, "manifest": manifest, "pred": tmp / "p.json"}


def _evaluate(val, pred, gt):
    return CliRunner().invoke(
        app, ["evaluate", "-m", str(val["manifest"]), "--pred", str(pred), "--gt", str(gt), "--json"]
    )


def test_results_numbered_by_position_are_refused_against_other_ids(val):
    gt = json.loads(val["gt"].read_text())
    # the same labels renumbered 1..20 in reverse file order: position ids now point at other people
    renum = copy.deepcopy(gt)
    new = {
        im["id"]: len(renum["images"]) - k for k, im in enumerate(sorted(renum["images"], key=lambda i: i["file_name"]))
    }
    for im in renum["images"]:
        im["id"] = new[im["id"]]
    for a in renum["annotations"]:
        a["image_id"] = new[a["image_id"]]
    path = val["dir"] / "reversed.json"
    path.write_text(json.dumps(renum))
    line = _one_line(_evaluate(val, val["pred"], path))
    assert "name another file" in line and "--coco" in line
    # the remedy the line names works: ids from the labels, every result checked by file name
    out = val["dir"] / "p_coco.json"
    r = CliRunner().invoke(
        app, ["predict", str(val["dir"] / "images"), "--model", str(BASE), "--coco", str(path), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    r = _evaluate(val, out, path)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["frames"] == 20
    assert any("paired with the labels by image id and file name" in n for n in res["notes"]), res["notes"]
    assert res["pckh@0.5"] > 20  # the shipped base on its own people, paired right (reversed it scored ~1 %)


def test_coco_ids_follow_the_relative_path_not_the_base_name(val, tmp_path):
    gt = json.loads(val["gt"].read_text())
    a, b = gt["images"][0], gt["images"][1]
    for sub, im in (("a", a), ("b", b)):  # two folders, one file name, two different people
        (tmp_path / sub).mkdir()
        shutil.copy(LSPET / im["file_name"], tmp_path / sub / "same.jpg")
    two = {
        "images": [dict(a, file_name="a/same.jpg"), dict(b, file_name="b/same.jpg")],
        "annotations": [],
        "categories": gt["categories"],
    }
    (tmp_path / "two.json").write_text(json.dumps(two))
    out = tmp_path / "p.json"
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--model",
            str(BASE),
            "--coco",
            str(tmp_path / "two.json"),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    got = {p["file_name"].split("/")[-2]: p["image_id"] for p in json.loads(out.read_text())}
    assert got == {"a": a["id"], "b": b["id"]}
    # the labels name only the base name: both files match it, the pairing is refused by name
    one = {"images": [dict(a, file_name="same.jpg")], "annotations": [], "categories": gt["categories"]}
    (tmp_path / "one.json").write_text(json.dumps(one))
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--model",
            str(BASE),
            "--coco",
            str(tmp_path / "one.json"),
            "--out",
            str(out),
        ],
    )
    assert "matches both" in _one_line(r)
    # a file the labels do not hold is named, not given a made-up id
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(val["dir"] / "images"),
            "--model",
            str(BASE),
            "--coco",
            str(tmp_path / "two.json"),
            "--out",
            str(out),
        ],
    )
    assert "not among its images" in _one_line(r)


def test_predict_out_is_checked_before_predicting(val, tmp_path):
    img = tmp_path / "x.jpg"
    shutil.copy(val["dir"] / "images" / "im07001.jpg", img)
    before = img.read_bytes()
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    cases = [
        (img, "one of the input images"),
        (other, "not a JSON file"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing" / "p.json", "does not exist"),
    ]
    for out, said in cases:
        r = CliRunner().invoke(app, ["predict", str(img), "--model", str(BASE), "--out", str(out)])
        assert said in _one_line(r)
    assert img.read_bytes() == before and other.read_text() == "mine"


def test_predict_writes_a_manifests_joints_by_name(val, tmp_path):
    """`predict -m` with a COCO-17 manifest and the 14-joint LSP base: 17 joints in the manifest's order, each
    shared joint the base's own prediction of that name, the face joints written as not predicted (score 0)."""
    from iterate.core.presets import COCO_JOINTS, LSP_JOINTS, PRESETS

    m = lsp_manifest(
        tmp_path, [], keypoints={k: PRESETS["coco17"][k] for k in ("names", "flip_pairs", "normalizer")}, strata={}
    )
    own, mapped = tmp_path / "own.json", tmp_path / "mapped.json"
    for extra, out in (([], own), (["-m", str(m)], mapped)):
        r = CliRunner().invoke(
            app, ["predict", str(val["dir"] / "images"), "--model", str(BASE), "--out", str(out), *extra]
        )
        assert r.exit_code == 0, r.output
    for a, b in zip(json.loads(own.read_text()), json.loads(mapped.read_text())):
        ka, kb = ([r["keypoints"][i : i + 3] for i in range(0, len(r["keypoints"]), 3)] for r in (a, b))
        assert len(ka) == 14 and len(kb) == 17
        for j, name in enumerate(COCO_JOINTS):
            if name in LSP_JOINTS:
                assert kb[j] == ka[LSP_JOINTS.index(name)]
            else:
                assert kb[j][2] == 0
