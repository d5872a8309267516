"""Label Studio round trip against a real local server (session fixture `studio`)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from annotation import server
from annotation import sync as sync_mod
from annotation.client import Studio, StudioError
from annotation.labeling import BadAnnotation, label_config, parse_result, to_result
from annotation.oracle import autolabel
from annotation.push import push
from annotation.sync import sync_labels
from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.settings import labeling, studio_settings

from conftest import LSPET, SHARED, STUDIO_TOKEN, STUDIO_TOKEN_ENV, demo_manifest_dict, lspet_subset, studio_manifest

UI = SHARED / "label_studio_ui"


def _project(tmp_path, lspet_coco, studio, title, ids=range(7301, 7311)):
    coco = lspet_subset(lspet_coco, list(ids), tmp_path / "pool.json")
    p = studio_manifest(
        tmp_path,
        studio["port"],
        [{"name": "pool", "kind": "coco", "path": str(coco), "images": str(LSPET), "split": "pool", "labels": False}],
        title,
        selection={"dedup_hamming": 0},
    )
    m = load_manifest(p)
    led = Ledger(m.workspace_dir)
    ingest(m, led)
    return m, led, coco


def _gt(coco_path):
    d = json.loads(Path(coco_path).read_text())
    ims = {i["id"]: Path(i["file_name"]).name for i in d["images"]}
    return {ims[a["image_id"]]: a for a in d["annotations"]}


# -- the JSON the UI writes (recorded fixtures; no server needed) ------------------------------------
def _ui_manifest(tmp_path):
    d = demo_manifest_dict()
    d.update(
        keypoints={
            "names": ["head_top", "neck", "left_ankle"],
            "normalizer": {"kind": "head_segment", "joints": ["neck", "head_top"]},
        },
        strata={"posture": ["supine", "prone", "side"]},
        sources=[],
    )
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return load_manifest(p)


def test_parse_real_ui_export(tmp_path):
    m = _ui_manifest(tmp_path)
    tasks = {t["id"]: t for t in json.loads((UI / "export_full_json.json").read_text())}
    ann = tasks[1]["annotations"][0]
    kps, attrs = parse_result(labeling(m), ann["result"])
    assert kps[1][:2] == pytest.approx([212.987, 137.013], abs=1e-3) and kps[1][2] == 2  # neck, visible
    assert kps[0][2] == 1  # head_top marked occluded in the UI
    assert kps[0][:2] == pytest.approx([101, 47], abs=1.0)
    assert kps[2] == [0.0, 0.0, 0]  # left_ankle not placed = not labeled
    assert attrs == {"posture": "side"}
    for tid in (3, 7):  # skipped in the queue: only a cancelled annotation with an empty result
        assert all(a["was_cancelled"] for a in tasks[tid]["annotations"])


def test_oracle_writes_the_shape_the_ui_writes(tmp_path):
    m = _ui_manifest(tmp_path)
    ui = json.loads((UI / "export_full_json.json").read_text())[0]["annotations"][0]["result"]
    mine = to_result(labeling(m), [[101, 47, 1], [213, 137, 2], [0, 0, 0]], 400, 300, {"posture": "side"})

    def shape(items):
        return sorted((i["type"], i["from_name"], tuple(sorted(i)), tuple(sorted(i["value"]))) for i in items)

    assert shape(mine) == shape(ui)
    back, attrs = parse_result(labeling(m), mine)
    assert np.allclose(back, [[101, 47, 1], [213, 137, 2], [0, 0, 0]]) and attrs == {"posture": "side"}


@pytest.mark.parametrize(
    "bad, reason",
    [
        (lambda r: r[0]["value"].update(keypointlabels=["left_toe"]), "unknown joint 'left_toe'"),
        (lambda r: r[0]["value"].update(x=150.0), "outside the image"),
        (lambda r: r.append(json.loads(json.dumps(r[0]))), "placed twice"),
    ],
)
def test_bad_annotations_are_named(tmp_path, bad, reason):
    m = _ui_manifest(tmp_path)
    r = to_result(labeling(m), [[101, 47, 2], [213, 137, 2], [0, 0, 0]], 400, 300)
    bad(r)
    with pytest.raises(BadAnnotation, match=reason):
        parse_result(labeling(m), r)


def test_label_config_is_valid_for_the_sdk(tmp_path):
    from label_studio_sdk.label_interface import LabelInterface

    m = load_manifest(Path(__file__).parents[1] / "data_manifest.yaml")
    iface = LabelInterface(label_config(labeling(m)))
    pred = {
        "model_version": "t",
        "score": 0.5,
        "result": to_result(labeling(m), [[10, 10, 2]] * 14, 100, 100, {"posture": "upright"}, origin="prediction"),
    }
    assert iface.validate_prediction(pred, return_errors=True) == []
    pred["result"][0]["value"]["keypointlabels"] = ["left_toe"]
    assert iface.validate_prediction(pred, return_errors=True)


# -- against the real server ---------------------------------------------------------------------------
def test_push_autolabel_sync_round_trip(tmp_path, lspet_coco, studio):
    m, led, coco = _project(tmp_path, lspet_coco, studio, "roundtrip")
    st = Studio.from_settings(studio_settings(m))
    frames = led.frames("pool")
    preds = {f.id: (np.full((14, 2), 20.0), np.full(14, 0.5)) for f in frames}
    s = push(labeling(m), led, st, [f.id for f in frames], predictions=preds, model_version="m-test")
    assert (s.pushed, s.batches, s.refused) == (10, 3, [])  # batch_size 4
    assert push(labeling(m), led, st, [f.id for f in frames], predictions=preds).pushed == 0  # re-push: nothing new
    tasks = st.tasks(s.project_id)
    assert len(tasks) == 10 and all(t["total_predictions"] == 1 for t in tasks)
    assert st.project(s.project_id)["model_version"] == "m-test"
    assert autolabel(labeling(m), led, st, coco).answered == 10
    r = sync_labels(labeling(m), led, st)
    assert (r.new, r.invalid) == (10, [])
    gt = _gt(coco)
    for f, lab in led.current_labels(("pool",)):
        a = gt[Path(f.path).name]
        want = np.asarray(a["keypoints"], float).reshape(-1, 3)
        got = np.asarray(lab.keypoints, float)
        np.testing.assert_allclose(got[:, :2], want[:, :2], atol=1e-6)  # exact pixels back
        assert (got[:, 2] > 0).tolist() == (want[:, 2] > 0).tolist()
        assert lab.attributes == a["attributes"] and lab.source == "labelstudio" and lab.ls_task_id
    again = sync_labels(labeling(m), led, st)
    assert (again.new, again.updated) == (0, 0)
    assert len(led.raw("SELECT * FROM labels").fetchall()) == 10  # nothing duplicated
    # an edited annotation becomes a new version; the old one stays in the history
    f0, lab0 = led.current_labels(("pool",))[0]
    res = to_result(
        labeling(m), [[x + 3.0, y, 1 if v else 0] for x, y, v in lab0.keypoints], f0.width, f0.height, lab0.attributes
    )
    st.update_annotation(lab0.ls_annotation_id, res)
    r = sync_labels(labeling(m), led, st)
    assert r.updated == 1
    hist = led.label_history(f0.id)
    assert [h.version for h in hist] == [1, 2]
    assert (
        hist[1].keypoints[0][0] == pytest.approx(hist[0].keypoints[0][0] + 3.0, abs=1e-6)
        or hist[0].keypoints[0][2] == 0
    )
    assert all(v in (0, 1) for _, _, v in hist[1].keypoints)  # the occluded flag came back per joint
    led.close()


def test_bad_and_skipped_tasks_are_reported_not_ingested(tmp_path, lspet_coco, studio):
    m, led, coco = _project(tmp_path, lspet_coco, studio, "badtasks", ids=range(7311, 7314))
    st = Studio.from_settings(studio_settings(m))
    frames = led.frames("pool")
    push(labeling(m), led, st, [f.id for f in frames])
    tids = sorted(r[0] for r in led.raw("SELECT task_id FROM tasks"))
    f = led.frame(led.raw("SELECT frame_id FROM tasks WHERE task_id=?", (tids[0],)).fetchone()[0])
    good = to_result(labeling(m), [[10, 10, 2]] * 14, f.width, f.height)
    bad = json.loads(json.dumps(good))
    bad[0]["value"]["keypointlabels"] = ["left_toe"]
    st.create_annotation(tids[0], bad)
    st.create_annotation(tids[1], [], was_cancelled=True)
    r = sync_labels(labeling(m), led, st)
    assert r.new == 0 and r.skipped == 1 and r.pending == 1
    assert len(r.invalid) == 1 and f"task {tids[0]}" in r.invalid[0] and "left_toe" in r.invalid[0]
    assert led.current_labels() == []
    status = dict(led.raw("SELECT task_id, status FROM tasks").fetchall())
    assert (status[tids[0]], status[tids[1]], status[tids[2]]) == ("invalid", "skipped", "pending")
    led.close()


def test_server_stopped_mid_sync_then_restarted_loses_nothing(tmp_path, lspet_coco, studio, monkeypatch):
    m, led, coco = _project(tmp_path, lspet_coco, studio, "midsync", ids=range(7321, 7330))
    st = Studio.from_settings(studio_settings(m))
    push(labeling(m), led, st, [f.id for f in led.frames("pool")])
    assert autolabel(labeling(m), led, st, coco).answered == 9
    monkeypatch.setattr(sync_mod, "_BATCH", 3)
    sm = studio["manifest"]
    calls = []

    def stop_after_first_batch(done, total):
        calls.append(done)
        if len(calls) == 1:
            server.stop(studio_settings(sm))

    st_fast = Studio(m.label_studio.url, STUDIO_TOKEN_ENV, retries=1, backoff=0.1)
    with pytest.raises(StudioError, match="not reachable"):
        sync_labels(labeling(m), led, st_fast, progress=stop_after_first_batch)
    assert len(led.current_labels()) == 3  # the committed batch is kept
    server.start(studio_settings(sm))
    r = sync_labels(labeling(m), led, Studio.from_settings(studio_settings(m)))
    assert len(led.current_labels()) == 9
    assert led.raw("SELECT COUNT(*) FROM labels").fetchone()[0] == 9  # no duplicates
    # a full re-sync through one whole-project export (the path for many updated tasks) changes nothing
    monkeypatch.setattr(sync_mod, "_WHOLE_MIN", 1)
    r = sync_labels(labeling(m), led, Studio.from_settings(studio_settings(m)), full=True)
    assert (r.tasks, r.new, r.unchanged) == (9, 0, 9)
    assert led.raw("SELECT COUNT(*) FROM labels").fetchone()[0] == 9
    led.close()


def test_wrong_token_and_paths_outside_the_data_root(tmp_path, lspet_coco, studio, monkeypatch):
    m, led, coco = _project(tmp_path, lspet_coco, studio, "security", ids=range(7331, 7333))
    monkeypatch.setenv(STUDIO_TOKEN_ENV, "not-the-token-123")
    with pytest.raises(StudioError) as e:
        Studio.from_settings(studio_settings(m)).projects()
    assert "token rejected" in str(e.value) and STUDIO_TOKEN_ENV in str(e.value)
    assert "not-the-token-123" not in str(e.value)
    monkeypatch.setenv(STUDIO_TOKEN_ENV, STUDIO_TOKEN)
    m.label_studio.data_root = str(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    s = push(labeling(m), led, Studio.from_settings(studio_settings(m)), [f.id for f in led.frames("pool")])
    assert s.pushed == 0 and len(s.refused) == 2 and "outside the data root" in s.refused[0]
    led.close()


def test_cli_studio_push_sync(tmp_path, lspet_coco, studio):
    m, led, coco = _project(tmp_path, lspet_coco, studio, "cli", ids=range(7341, 7345))
    mp = str(tmp_path / "data_manifest.yaml")
    led.close()
    r = CliRunner().invoke(app, ["studio", "status", "-m", mp])
    assert r.exit_code == 0 and ": up" in r.output
    r = CliRunner().invoke(app, ["select", "--budget", "3", "--strategy", "random", "-m", mp])
    assert r.exit_code == 0, r.output
    assert "pushed 3 task(s)" in r.output
    r = CliRunner().invoke(app, ["push", "--round", "1", "-m", mp])
    assert r.exit_code == 0 and "pushed 0 task(s)" in r.output and "3 already there" in r.output
    r = CliRunner().invoke(app, ["studio", "autolabel", "--from", str(coco), "-m", mp])
    assert r.exit_code == 0 and "answered 3 task(s)" in r.output
    r = CliRunner().invoke(app, ["sync-labels", "-m", mp])
    assert r.exit_code == 0, r.output
    with Ledger(m.workspace_dir) as led:
        assert len(led.current_labels()) == 3
