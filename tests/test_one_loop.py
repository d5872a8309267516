"""`iterate select` and `iterate simulate` are one loop: on the same pool, model and seed, a simulated round picks
exactly the frames `select` picks (real LSPET frames, the shipped base, a real ledger; no Label Studio: --no-push).
The simulation differs from the product only in where the labels come from."""

import json

import numpy as np
import pytest
import yaml

from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.core.score_kinds import PASS_SCORES, SCORES, SELECT_SCORES
from iterate.loop.ingest import ingest
from iterate.loop.select import candidates, select
from iterate.loop.simulate import SimConfig, run
from iterate.selection import strategies
from model.data import Sample

from conftest import LSPET, REPO, lsp_manifest, lspet_subset

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"
BUDGET = 8


def _project(tmp, lspet_coco):
    srcs = []
    for name, lo, hi, split, labels in (
        ("va", 7411, 7430, "val", True),
        ("te", 7431, 7435, "test", True),
        ("pool", 7441, 7480, "pool", False),
    ):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp / f"{name}.json")
        srcs.append(
            {"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels}
        )
    model = {**yaml.safe_load((REPO / "data_manifest.yaml").read_text())["model"], "base": str(BASE)}
    p = lsp_manifest(tmp, srcs, model=model, selection={"dedup_hamming": 0, "explore": 0.25})
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return m


def _simulated_first_round(m, led, lspet_coco, strategy: str, tmp) -> dict:
    """One simulated round on the ledger's own candidates (in `select`'s order), their hidden labels revealed
    from the COCO file; val and test from the ledger's labels."""
    by_file = {i["file_name"]: i["id"] for i in lspet_coco["images"]}
    kp = {a["image_id"]: a["keypoints"] for a in lspet_coco["annotations"]}

    def hidden(f):
        return np.asarray(kp[by_file[str(f.path).split(str(LSPET) + "/")[-1]]], float).reshape(-1, 3)

    pool = [Sample(f.path, hidden(f), f.id, {}) for f in candidates(led)]

    def labeled(split):
        rows = [(f, lab) for f, lab in led.current_labels((split,)) if lab.instance == 0]
        return [
            Sample(f.path, np.asarray(lab.keypoints, float).reshape(-1, 3), f.id, lab.attributes) for f, lab in rows
        ]

    cfg = SimConfig(
        [BUDGET], (strategy,), (0,), steps_per_round=1, base=str(BASE), cold_first_chunk=False, replay=False
    )
    s = run(m, pool, labeled("val"), labeled("test"), cfg, tmp / f"sim-{strategy}", log=lambda _: None)
    return s["per_seed"][strategy][0][1]


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "diversity", "full"])
def test_select_and_a_simulated_round_pick_the_same_frames(tmp_path, lspet_coco, strategy):
    m = _project(tmp_path, lspet_coco)
    with Ledger(m.workspace_dir) as led:
        sim = _simulated_first_round(m, led, lspet_coco, strategy, tmp_path)
        if strategy == "full":
            # the focus a report would have written: the one the simulated round computed from val
            f = sim["focus"]
            assert f is not None, "LSPET's val frames carry posture: the simulation finds a gap to steer by"
            (m.workspace_dir / "reports").mkdir(parents=True, exist_ok=True)
            (m.workspace_dir / "reports" / "focus.json").write_text(
                json.dumps({"items": [{"key": f["key"], "budget_share": 1.0}], "weights": {f["key"]: f["weights"]}})
            )
        sel = select(m, led, BUDGET, strategy=strategy, push=False, seed=0)
    assert len(sim["picked"]) == BUDGET
    assert sel.frame_ids == sim["picked"]  # the same frames, in the same order
    assert sum(sim["why"].values()) == BUDGET
    assert sorted(sim["why"].items()) == sorted(
        {w: sum(1 for r in sel.table if r["why"] == w) for w in {r["why"] for r in sel.table}}.items()
    )
    if strategy == "full":
        assert any(w.startswith("focus ") for w in sim["why"])  # the focus steered both


def test_a_changed_seed_changes_the_pick(tmp_path, lspet_coco):
    """The test above is not vacuous: another seed picks other frames where the strategy draws at random."""
    m = _project(tmp_path, lspet_coco)
    with Ledger(m.workspace_dir) as led:
        a = select(m, led, BUDGET, strategy="random", push=False, seed=0).frame_ids
        b = select(m, led, BUDGET, strategy="random", push=False, seed=1).frame_ids
    assert a != b


def test_the_score_registry_is_what_select_simulate_and_the_manifest_read():
    """One registry: the cache's columns, the manifest's accepted weights, the strategies' declared needs."""
    from iterate.core.manifest import UNCERTAINTY_SCORES
    from iterate.selection import scores as sc

    assert sc.NAMES == PASS_SCORES and set(UNCERTAINTY_SCORES) == set(SCORES)
    assert "snapshot" in SCORES and "snapshot" not in SELECT_SCORES
    assert strategies.NEEDS["random"] == frozenset()
    assert strategies.NEEDS["full"] >= {"scores", "focus"} and "strata" in strategies.NEEDS["balanced"]
    with pytest.raises(ValueError, match="unknown needs"):
        strategies.strategy("bad", needs=("labels",))
