"""Review tasks (issue 33 item 2): `iterate audit --push` sends the flagged labels to a real local Label Studio
(session fixture `studio`) as review tasks; `sync-labels` confirms an unchanged one (the audit does not flag it
again), stores a corrected one as a new version with source `review` (the old stays in the history) and skips the
task of a frame retired since. Real LSPET val labels the shipped base never trained on, with injected errors."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
from typer.testing import CliRunner

from annotation.client import Studio
from annotation.labeling import to_result
from annotation.review import LABEL_VERSION, MODEL_VERSION, review_project_id
from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.settings import labeling, studio_settings

from conftest import LSP_NAMES, LSPET, REPO, lspet_subset, studio_manifest

BASE = str(REPO / "model/weights/lspet_w18s_128.pt")
SWAPPED, MOVED, COINCIDENT = 7010, 7049, 7020


def _cli(p, *args):
    return CliRunner().invoke(app, [*args, "-m", str(p)], env={"COLUMNS": "200"})


def _image(coco: dict, iid: int) -> str:
    return next(i["file_name"] for i in coco["images"] if i["id"] == iid).rsplit("/", 1)[-1]


def test_audit_push_and_sync_close_the_review_loop(tmp_path, lspet_coco, studio):
    coco = copy.deepcopy(lspet_coco)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    clean = {k: list(anns[k]["keypoints"]) for k in (SWAPPED, MOVED, COINCIDENT)}
    kp = np.asarray(anns[SWAPPED]["keypoints"], float).reshape(-1, 3)
    for a, b in (("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist")):
        ia, ib = LSP_NAMES.index(a), LSP_NAMES.index(b)
        kp[[ia, ib]] = kp[[ib, ia]]
    anns[SWAPPED]["keypoints"] = kp.ravel().tolist()
    kp = np.asarray(anns[MOVED]["keypoints"], float).reshape(-1, 3)
    ll = float(np.hypot(*(kp[LSP_NAMES.index("neck"), :2] - kp[LSP_NAMES.index("head_top"), :2])))
    kp[LSP_NAMES.index("right_shoulder"), 1] += 2 * ll
    anns[MOVED]["keypoints"] = kp.ravel().tolist()
    kp = np.asarray(anns[COINCIDENT]["keypoints"], float).reshape(-1, 3)
    kp[LSP_NAMES.index("left_knee"), :2] = kp[LSP_NAMES.index("right_knee"), :2]  # two joints on one spot
    kp[LSP_NAMES.index("left_knee"), 2] = kp[LSP_NAMES.index("right_knee"), 2] = 2
    anns[COINCIDENT]["keypoints"] = kp.ravel().tolist()
    f = lspet_subset(coco, list(range(7001, 7051)), tmp_path / "val.json")
    model = {**load_manifest(REPO / "data_manifest.yaml").model.model_dump(), "base": BASE}
    sources = [{"name": "va", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}]
    p = studio_manifest(tmp_path, studio["port"], sources, "review loop", model=model)
    m = load_manifest(p)
    assert _cli(p, "ingest").exit_code == 0
    with Ledger(m.workspace_dir) as led:
        fid = {k: next(x.id for x in led.frames() if x.path.endswith("/" + _image(coco, k))) for k in clean}

    r = _cli(p, "audit", "--push", "--max-push", "50")
    assert r.exit_code == 0, r.output
    assert "review tasks in Label Studio project" in r.output and "pushed" in r.output, r.output
    st = Studio.from_settings(studio_settings(m))
    with Ledger(m.workspace_dir) as led:
        pid = review_project_id(labeling(m), led)
        rows = led.project_task_rows(pid)
        labels = {k: led.current_label(fid[k]) for k in clean}
    assert all(fid[k] in rows for k in clean), rows  # each injected error went to review
    task = st.task(rows[fid[SWAPPED]][0])
    assert "swap" in task["data"]["reason"] and task["data"]["label_version"] == 1
    assert {pr["model_version"] for pr in task["predictions"]} == {LABEL_VERSION, MODEL_VERSION}
    assert "$reason" in st.project(pid)["label_config"]

    def answer(k, kps):
        lab, fr = labels[k], next(x for x in Ledger(m.workspace_dir).frames() if x.id == fid[k])
        attrs = {a: v for a, v in lab.attributes.items() if v in m.strata.get(a, [])}
        st.create_annotation(rows[fid[k]][0], to_result(labeling(m), kps, fr.width, fr.height, attrs), lead_time=9.0)

    answer(SWAPPED, np.asarray(clean[SWAPPED], float).reshape(-1, 3).tolist())  # the annotator swaps the arms back
    answer(MOVED, labels[MOVED].keypoints)  # left as it is: confirmed
    answer(COINCIDENT, labels[COINCIDENT].keypoints)
    assert _cli(p, "frames", "remove", fid[COINCIDENT], "--why", "blurred").exit_code == 0  # retired before the sync
    r = _cli(p, "sync-labels")
    assert r.exit_code == 0, r.output
    assert "1 labels confirmed, 1 corrected" in r.output and "1 skipped (frame retired)" in r.output, r.output
    assert "audit of the 1 label(s) just pulled:" in r.output, r.output  # the correction, checked out of sample
    with Ledger(m.workspace_dir) as led:
        hist = led.label_history(fid[SWAPPED])
        assert [h.source for h in hist] == ["coco", "review"] and hist[0].keypoints == labels[SWAPPED].keypoints
        assert np.allclose(np.asarray(hist[1].keypoints)[:, :2], np.asarray(clean[SWAPPED]).reshape(-1, 3)[:, :2])
        assert led.current_label(fid[MOVED]).reviewed_at is not None and led.current_label(fid[MOVED]).version == 1
    r = _cli(p, "sync-labels")  # re-running adds nothing
    assert r.exit_code == 0 and "0 labels confirmed, 0 corrected" in r.output, r.output

    r = _cli(p, "audit", "--out", str(tmp_path / "a.json"))
    assert r.exit_code == 0, r.output
    flagged = {x["frame"] for x in json.loads((tmp_path / "a.json").read_text())["flags"]}
    assert fid[MOVED] not in flagged  # confirmed: not flagged again
    assert not any(
        x["frame"] == fid[SWAPPED] and x["reason"] == "swap"
        for x in json.loads((tmp_path / "a.json").read_text())["flags"]
    )
    assert "confirmed by review are not flagged again" in r.output, r.output
    n_tasks = len(st.tasks(pid, fields="task_only"))
    r = _cli(p, "audit", "--push", "--max-push", "50")  # again: frames still under review are not pushed twice
    assert r.exit_code == 0, r.output
    got = re.search(r"(\d+) pushed \((\d+) replacing an earlier review\), (\d+) already under review", r.output)
    assert got, r.output
    pushed, replaced, already = map(int, got.groups())
    assert pushed == replaced and already >= len(rows) - 3, r.output  # only reviewed-and-changed labels go again
    assert len(st.tasks(pid, fields="task_only")) == n_tasks + pushed

    r = _cli(p, "report")  # the round report's "Labels to re-check"
    assert r.exit_code == 0, r.output
    md = (m.workspace_dir / "reports" / "round-00.md").read_text()
    sec = md.split("## Labels to re-check", 1)[1].split("\n## ", 1)[0]
    assert "reviews so far: 1 labels confirmed, 1 corrected" in sec, sec
    assert "![labels to re-check](round-00-recheck.png)" in sec, sec
    assert (m.workspace_dir / "reports" / "round-00-recheck.png").stat().st_size > 5000
