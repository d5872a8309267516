"""What labeling costs (issue 34): per-joint edit accounting against the pushed pre-annotation and the annotator's
lead time, stored by `sync-labels` from a real local Label Studio (session fixture `studio`) on real LSPET frames,
and shown by the round report and `iterate status`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_hardening_sync import _cli, _project, _tasks

from annotation.labeling import to_result
from annotation.push import push
from iterate.core.ledger import Ledger
from iterate.loop.cost import accounting, cost_data
from iterate.loop.settings import labeling
from reports import cost


def test_joint_edits_counts_each_kind():
    """Four joints: left in place, moved 0.2 l, added (no prediction), deleted (label has none); one re-marked."""
    pre = np.array([[[10, 10], [20, 20], [np.nan, np.nan], [40, 40]]], float)
    lab = np.array([[[10.2, 10, 2], [30, 20, 1], [50, 50, 2], [0, 0, 0]]], float)
    kind, d, vis = cost.joint_edits(pre, lab, np.array([50.0]), 0.05)
    assert kind.tolist() == [[cost.ACCEPTED, cost.MOVED, cost.ADDED, cost.DELETED]]
    assert d[0, 1] == pytest.approx(0.2) and np.isnan(d[0, 2])
    assert vis.tolist() == [[False, True, False, False]]
    assert cost.corrections(kind).tolist() == [3]
    # no pre-annotation pushed: every labeled joint is added
    kind, _, _ = cost.joint_edits(None, lab, np.array([50.0]), 0.05)
    assert kind.tolist() == [[cost.ADDED, cost.ADDED, cost.ADDED, cost.NONE]]
    # the tolerance decides: 0.25 l accepts the moved joint
    kind, _, _ = cost.joint_edits(pre, lab, np.array([50.0]), 0.25)
    assert kind[0, 1] == cost.ACCEPTED


def test_sync_stores_lead_time_and_the_edits_against_the_pushed_pre_annotation(tmp_path, lspet_coco, studio):
    """A task pre-annotated with neck and head top only, answered with the neck left, the head top moved 0.2 l and
    the right ankle added, is counted exactly so; a task pushed without one counts every joint added; the report
    and status show their cost."""
    p, m, led, st = _project(tmp_path, lspet_coco, studio, "cost accounting", range(1, 4))
    names = list(m.keypoints.names)
    frames = sorted(led.frames("pool"), key=lambda f: f.id)
    f0, f1 = frames[0], frames[1]
    neck, top, ankle = names.index("neck"), names.index("head_top"), names.index("right_ankle")
    L = 0.3 * f0.height  # the label's head segment: l
    nx, ny = 0.5 * f0.width, 0.6 * f0.height
    kp = np.full((14, 2), np.nan)
    kp[neck], kp[top] = (nx, ny), (nx, ny - 0.8 * L)  # the head top pushed 0.2 l below where it is labeled
    with led:
        s = push(labeling(m), led, st, [f0.id, f1.id], predictions={f0.id: (kp, np.full(14, 0.9))})
        assert s.pushed == 2
        by_frame = {fid: tid for tid, fid in _tasks(led).items()}
        stored = led.task_prediction(s.project_id, by_frame[f0.id])
        assert stored[neck] == [nx, ny, 2] and stored[ankle][2] == 0
        assert led.task_prediction(s.project_id, by_frame[f1.id]) == []  # pushed without a pre-annotation
    answer = [[0.0, 0.0, 0]] * 14
    answer[neck], answer[top], answer[ankle] = [nx, ny, 2], [nx, ny - L, 2], [0.6 * f0.width, 0.9 * f0.height, 1]
    st.create_annotation(by_frame[f0.id], to_result(labeling(m), answer, f0.width, f0.height), lead_time=42.5)
    other = [[x * f1.width / f0.width, y * f1.height / f0.height, v] for x, y, v in answer]
    st.create_annotation(by_frame[f1.id], to_result(labeling(m), other, f1.width, f1.height), lead_time=17.5)
    r = _cli(p, "sync-labels")
    assert r.exit_code == 0, r.output
    with Ledger(m.workspace_dir) as led:
        lab = led.current_label(f0.id)
        assert lab is not None, r.output
        assert lab.lead_time == pytest.approx(42.5)
        e = lab.edits
        assert e["accepted"] == ["neck"] and e["moved"] == ["head_top"] and e["added"] == ["right_ankle"]
        assert e["deleted"] == [] and e["visibility"] == [] and e["pre_annotated"] is True
        assert e["moved_l"]["head_top"] == pytest.approx(0.2, abs=1e-3)
        e1 = led.current_label(f1.id).edits
        assert sorted(e1["added"]) == ["head_top", "neck", "right_ankle"] and e1["pre_annotated"] is False
        c = cost_data(m, led)
    (rnd,) = c["rounds"]
    assert rnd["frames"] == 2 and rnd["hours"] == pytest.approx(60 / 3600, abs=1e-3)
    assert rnd["median_s"] == pytest.approx(30.0)
    assert rnd["accepted"] == 1 and rnd["moved"] == 1 and rnd["added"] == 4 and rnd["corrections"] == 5
    assert rnd["pre_annotation_right"] == pytest.approx(0.5)  # neck right, head top not
    r = _cli(p, "status")
    assert r.exit_code == 0 and "annotator h" in r.output and "annotator hours so far: 0.02" in r.output, r.output
    r = _cli(p, "report")
    assert r.exit_code == 0, r.output
    md = (m.workspace_dir / "reports" / "round-00.md").read_text()
    assert "## What this round cost" in md and "0.02 annotator hours" in md, md
    assert "| all | 2 | 0.02 | 30.0 | 0.5 | 0.5 | 2.0 | 0.0 | 2.5 | 50% |" in md, md
    data = json.loads((m.workspace_dir / "reports" / "round-00.json").read_text())
    assert data["cost"]["rounds"][0]["corrections"] == 5


def test_a_label_without_its_own_normaliser_uses_the_ledgers_ratio(tmp_path, lspet_coco, studio):
    """No head segment in the label (head top left out): l falls back to the joints' box diagonal × the ratio over
    the ledger's labels, so a joint left where it was pushed still counts accepted."""
    p, m, led, _ = _project(tmp_path, lspet_coco, studio, "cost fallback", range(1, 3), fixed=range(10, 40))
    names = list(m.keypoints.names)
    with led:
        acc = accounting(m, led)
        f = led.frames("pool")[0]
        label = [[0.0, 0.0, 0]] * 14
        pre = [[0.0, 0.0, 0]] * 14
        for j, (x, y) in {"right_ankle": (50, 200), "left_ankle": (80, 200), "neck": (65, 60)}.items():
            label[names.index(j)] = [float(x), float(y), 2]
            pre[names.index(j)] = [float(x) + 0.5, float(y), 2]
        e = acc(f, label, pre)
    assert sorted(e["accepted"]) == ["left_ankle", "neck", "right_ankle"] and e["moved"] == []
