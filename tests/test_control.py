"""The base model scores the first chunk, and the in-loop control: the model that selected a round scored on the
frames it picked vs the random exploration frames once their labels are synced (real Label Studio)."""

import json

import numpy as np
import pytest
import yaml

from annotation.client import Studio
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.report import build
from iterate.loop.scoring import score
from iterate.loop.select import select
from iterate.loop.settings import keypoint_spec, studio_settings
from iterate.loop.studio import autolabel, sync
from iterate.selection.strategies import EXPLORE_TAG
from model.data import Sample
from model.infer import load_predictor
from reports.control import MIN_EXPLORED, selection_control

from conftest import LSPET, REPO, lspet_subset, studio_manifest

BASE = REPO / "model" / "weights" / "lspet_upright_w18s_128.pt"


def test_base_scores_the_first_chunk_and_sync_scores_picked_vs_random(tmp_path, lspet_coco, studio):
    coco = lspet_subset(lspet_coco, list(range(7301, 7341)), tmp_path / "pool.json")
    model = {**yaml.safe_load((REPO / "data_manifest.yaml").read_text())["model"], "base": str(BASE)}
    src = {"name": "pool", "kind": "coco", "path": str(coco), "images": str(LSPET), "split": "pool", "labels": False}
    p = studio_manifest(
        tmp_path, studio["port"], [src], "control", model=model, selection={"dedup_hamming": 0, "explore": 0.35}
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        sel = select(m, led, 16)
        # no model trained in the loop yet: the base scored the pool (no cold start) and pre-annotated the push
        assert not sel.cold_start and sel.scored_by == "the base model"
        assert led.round(sel.round_id).params["scored_by"] == "base"
        whys = [r["why"] for r in sel.table]
        assert whys.count(EXPLORE_TAG) == 6 and whys.count("uncertainty + diversity") == 10
        st = Studio.from_settings(studio_settings(m))
        tasks = st.tasks(sel.push.project_id)
        assert len(tasks) == 16 and all(t["total_predictions"] == 1 for t in tasks)
        assert st.project(sel.push.project_id)["model_version"] == "iterate-base"

        autolabel(m, led, coco)
        s = sync(m, led)
        assert s.new == 16 and len(s.controls) == 1
        c = s.controls[0]
        a = c["pckh@0.5"]
        assert (a["selected"]["frames"], a["explored"]["frames"]) == (10, 6) and c["model"] == "the base model"
        # both groups pooled back together give the product's PCKh@0.5 of the base on the whole round
        samples = []
        for fid in [r["frame_id"] for r in sel.table]:
            lab = led.current_label(fid)
            samples.append(Sample(led.frame(fid).path, np.asarray(lab.keypoints, float).reshape(-1, 3), fid))
        ref = score(keypoint_spec(m), load_predictor(BASE).predict(samples).keypoints, samples)
        g = (a["selected"], a["explored"])
        pooled = sum(x["pckh@0.5"] * x["joints"] for x in g) / sum(x["joints"] for x in g)
        assert pooled == pytest.approx(ref["pckh@0.5"], abs=0.02)
        assert a["difference"] == pytest.approx(a["selected"]["pckh@0.5"] - a["explored"]["pckh@0.5"], abs=0.02)
        stored = led.get(f"control:round-{sel.round_id}")
        assert stored["labels"] == c["labels"] and len(stored["labels"]) == 16

        again = sync(m, led)  # nothing new: the stored control is returned, not recomputed
        assert again.new == 0 and again.controls[0] == stored

        md = build(m, led).read_text()
        assert "## Did selection work? (in-loop control)" in md
        assert f"Round {sel.round_id}: " in md and "random frames" in md
        rep = json.loads((m.workspace_dir / "reports" / "round-01.json").read_text())
        assert rep["controls"][0]["round"] == sel.round_id


def _frames(n: int, err: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n frames of 14 joints, head segment 20 px (neck 12, head_top 13); predictions off by ``err`` px."""
    gt = rng.uniform(50, 150, size=(n, 14, 2))
    gt[:, 13] = gt[:, 12] + [0, -20]
    vis = np.full((n, 14), 2.0)
    ang = rng.uniform(0, 2 * np.pi, size=(n, 14))
    pred = gt + err * np.stack([np.cos(ang), np.sin(ang)], -1)
    pred[:, 12:14] = gt[:, 12:14]
    return pred, gt, vis


@pytest.mark.parametrize(
    "picked_err, random_err, n_random, word",
    [
        (15.0, 2.0, 20, "selection found the hard ones"),  # picks wrong (>0.5·20 px), random right
        (2.0, 15.0, 20, "did not find the hard ones"),
        (15.0, 2.0, MIN_EXPLORED - 1, "too few to tell"),
    ],
)
def test_control_verdict_on_a_pool_where_the_hard_frames_are_known(picked_err, random_err, n_random, word):
    m = load_manifest(REPO / "data_manifest.yaml", check_sources=False)
    rng = np.random.default_rng(0)
    a, b = _frames(30, picked_err, rng), _frames(n_random, random_err, rng)
    pred, gt, vis = (np.concatenate([x, y]) for x, y in zip(a, b))
    explored = np.r_[np.zeros(30, bool), np.ones(n_random, bool)]
    c = selection_control(keypoint_spec(m), pred, gt, vis, None, explored)
    assert word in c["verdict"]
    if n_random < MIN_EXPLORED:  # no interval and no difference from so few random frames
        assert f"too few random frames to judge (n={n_random})" in c["verdict"]
        for k in ("pckh@0.5", "pckh@0.1"):
            block = c[k]
            assert block["explored"][f"{k}_ci95"] == [None, None] and block["difference_ci95"] == [None, None]
            assert block["difference"] is None and block["selected"][f"{k}_ci95"][0] is not None
        return
    lo, hi = c["pckh@0.5"]["difference_ci95"]
    assert lo <= c["pckh@0.5"]["difference"] <= hi
    if word == "selection found the hard ones":
        assert hi < 0 and c["pckh@0.5"]["selected"]["pckh@0.5"] < 20 and c["pckh@0.5"]["explored"]["pckh@0.5"] == 100
