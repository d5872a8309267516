"""Selection on a real LSPET slice with a small real model (no Label Studio: --no-push)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.retrain import retrain
from iterate.loop.select import select
from iterate.selection import balance, diversity, strategies

from conftest import LSPET, lsp_manifest, lspet_subset


@pytest.fixture(scope="module")
def proj(tmp_path_factory, lspet_coco):
    tmp = tmp_path_factory.mktemp("select")
    srcs = []
    for name, lo, hi, split, labels in (
        ("tr", 7401, 7410, "train", True),
        ("va", 7411, 7430, "val", True),
        ("te", 7431, 7435, "test", True),
        ("pool", 7441, 7520, "pool", False),
    ):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp / f"{name}.json")
        srcs.append(
            {"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels}
        )
    p = lsp_manifest(
        tmp,
        srcs,
        train={"epochs": 1, "batch_size": 8, "warmup_steps": 1},
        selection={"dedup_hamming": 0, "focus_metric": "pckh@0.5", "explore": 0.1},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p


def test_cold_start_without_model(proj):
    m = load_manifest(proj)
    with Ledger(m.workspace_dir) as led:
        sel = select(m, led, 8, push=False)
        assert sel.cold_start and len(sel.frame_ids) == len(set(sel.frame_ids)) == 8
        assert all(led.frame(f).split == "pool" for f in sel.frame_ids)
        assert sel.csv.is_file() and sel.markdown.is_file()
        rows = led.raw("SELECT COUNT(*) FROM round_frames WHERE round_id=?", (sel.round_id,)).fetchone()[0]
        assert rows == 8


def test_select_with_model_excludes_labeled_and_pending_and_caches(proj):
    m = load_manifest(proj)
    with Ledger(m.workspace_dir) as led:
        retrain(m, led)
        pool = led.frames("pool")
        with led.transaction():  # two pool frames labeled, three pending in Label Studio
            for f in pool[:2]:
                led.add_label(f.id, [[1.0, 1.0, 2]] * 14, source="test")
            for i, f in enumerate(pool[2:5]):
                led.add_task(f.id, 99, i + 1)
        excluded = {f.id for f in pool[:5]}
        held = led.selected_frame_ids()  # an earlier test's round keeps its frames
        sel = select(m, led, 10, strategy="diversity", push=False)  # the module's rounds share one pool: keep it
        assert len(sel.frame_ids) == 10 and not excluded & set(sel.frame_ids)
        assert all(led.frame(f).split == "pool" for f in sel.frame_ids)
        assert sel.scored_now == len([f for f in pool if f.id not in excluded | held]) and {
            "confidence",
            "flip",
            "entropy",
            "combined",
        } <= set(sel.table[0])
        again = select(m, led, 10, strategy="uncertainty", push=False)
        assert again.scored_now == 0  # cache hit: the same model scores nothing again (a step count, not a timing)
        top = sorted(again.table, key=lambda r: -r["combined"])
        assert [r["frame_id"] for r in top] == again.frame_ids  # uncertainty = the top combined scores


def test_kcenter_batch_is_more_spread_than_random(proj):
    m = load_manifest(proj)
    d = m.workspace_dir / "cache" / "model-001"
    emb = np.load(d / "emb.npy").astype(np.float32)
    k = 12
    picked = diversity.k_center_greedy(emb, k)
    spread = diversity.min_pairwise_distance(emb[picked])
    rng = np.random.default_rng(0)
    rand = [diversity.min_pairwise_distance(emb[rng.choice(len(emb), k, replace=False)]) for _ in range(20)]
    assert spread > np.median(rand)
    rows = strategies.choose(
        "diversity", k, strategies.Pool(len(emb), rng, combined=np.zeros(len(emb)), emb=emb, explore=0.1)
    ).rows
    assert len(set(rows)) == k


def test_strata_shares_follow_the_focus(proj):
    m = load_manifest(proj)
    focus = {
        "metric": "pckh@0.5",
        "explore": 0.1,
        "pool_frames": 80,
        "items": [
            {"key": "posture", "value": "upright", "budget_share": 0.6, "gap": 5},
            {"key": "posture", "value": "inverted", "budget_share": 0.3, "gap": 2},
        ],
        "weights": {"posture": {"upright": 0.6, "inverted": 0.3, "leaning": 0.0, "horizontal": 0.0, "unknown": 0.0}},
    }
    (m.workspace_dir / "reports").mkdir(exist_ok=True)
    (m.workspace_dir / "reports" / "focus.json").write_text(json.dumps(focus))
    with Ledger(m.workspace_dir) as led:
        sel = select(m, led, 20, strategy="full", push=False)
    whys = [r["why"] for r in sel.table]
    got = {v: whys.count(f"focus posture={v}") for v in ("upright", "inverted")}
    q, n_explore, notes = balance.quotas(
        20, 0.1, focus["weights"]["posture"], {v: 10**6 for v in ("upright", "inverted")}
    )
    if all(got[v] == q[v] for v in got):  # enough frames of each predicted posture: exact quotas
        assert got == {"upright": 12, "inverted": 6} and whys.count("explore (random)") == 2
    else:  # a stratum ran short: the rest went elsewhere, and the summary says so only if none was available
        assert sum(got.values()) + whys.count("explore (random)") + whys.count("fill") == 20
    for v in got:  # every focus pick really is predicted in its stratum
        assert all(r["pred_posture"] == v for r in sel.table if r["why"] == f"focus posture={v}")
    # the val calibration of the strata is cached with the model: the next select reads it instead of predicting val
    cache = m.workspace_dir / "cache" / "model-001" / "strata.json"
    state = json.loads(cache.read_text())
    assert len(state["key"]["val"]) == 20 and 0 < state["state"]["threshold"] < 1
    state["state"]["threshold"] = 2.0  # every joint below it: a calibration only this cache can have given
    cache.write_text(json.dumps(state))
    with Ledger(m.workspace_dir) as led:
        sel = select(m, led, 5, strategy="full", push=False)  # earlier rounds of this module hold most of the pool
    assert {r["pred_occlusion"] for r in sel.table} == {"heavy"}


def test_strata_state_round_trip(tmp_path):
    from iterate.selection.strata import StrataPredictor

    m = load_manifest(
        lsp_manifest(tmp_path, [], strata={"occlusion": ["none", "partial", "heavy"], "scene": ["indoor", "outdoor"]})
    )
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    emb[:, 0] += np.where(emb[:, 0] > 0, 2.0, -2.0)  # two separable scenes
    scores = rng.uniform(size=(40, 14))
    attrs = [{"scene": "indoor" if e[0] > 0 else "outdoor", "occlusion": "partial"} for e in emb]
    sp = StrataPredictor(m.strata, m.keypoints.names).fit(np.zeros((40, 14, 2)), scores, emb, attrs)
    back = StrataPredictor.from_state(m.strata, m.keypoints.names, json.loads(json.dumps(sp.state())))
    assert back.threshold == sp.threshold and "scene" in back.classifiers
    kps = np.zeros((40, 14, 2))
    assert back.predict(kps, scores, emb) == sp.predict(kps, scores, emb)
    assert [p["scene"] for p in back.predict(kps, scores, emb)].count("indoor") == int((emb[:, 0] > 0).sum())


def test_predicted_occlusion_does_not_count_joints_the_model_lacks(tmp_path):
    """A base of another joint set leaves joints unpredicted (NaN, score 0): they are not counted as hidden, so a
    fully seen person stays `none` instead of `heavy`."""
    from iterate.selection.strata import StrataPredictor

    m = load_manifest(lsp_manifest(tmp_path, [], strata={"occlusion": ["none", "partial", "heavy"]}))
    kps = np.zeros((20, 14, 2))
    kps[:, 9:] = np.nan  # five joints the model does not predict
    scores = np.full((20, 14), 0.9)
    scores[:, 9:] = 0.0
    scores[:10, 0] = 0.01  # one hidden joint in half of the frames
    attrs = [{"occlusion": "partial" if i < 10 else "none"} for i in range(20)]
    sp = StrataPredictor(m.strata, m.keypoints.names).fit(kps, scores, np.zeros((20, 0)), attrs)
    got = [p["occlusion"] for p in sp.predict(kps, scores, np.zeros((20, 0)))]
    assert got == [a["occlusion"] for a in attrs]


def test_quotas_redistribute_an_empty_stratum():
    q, ex, notes = balance.quotas(10, 0.1, {"a": 0.45, "b": 0.45}, {"a": 0, "b": 50})
    assert q == {"b": 9} and ex == 1 and "a" in notes[0]
    q, ex, _ = balance.quotas(10, 0.0, {"a": 0.5, "b": 0.5}, {"a": 2, "b": 50})
    assert q == {"a": 2, "b": 8} and ex == 0


def test_bad_budgets_and_stale_cache(proj, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["select", "--budget", "0", "--no-push", "-m", str(proj)])
    assert r.exit_code == 2 and "positive" in r.output
    r = runner.invoke(app, ["select", "--budget", "100000", "--no-push", "-m", str(proj)])
    assert r.exit_code == 2 and "larger than the unlabeled pool" in r.output
    empty = lsp_manifest(tmp_path, [])
    r = runner.invoke(app, ["select", "--budget", "5", "--no-push", "-m", str(empty)])
    assert r.exit_code == 2 and "no frames ingested" in r.output
    m = load_manifest(proj)
    with Ledger(m.workspace_dir) as led:
        path = led.latest_model().path
    moved = path + ".moved"
    import os

    os.rename(path, moved)
    try:
        r = runner.invoke(app, ["select", "--budget", "5", "--no-push", "-m", str(proj)])
        assert r.exit_code == 2 and "is gone" in r.output
    finally:
        os.rename(moved, path)


def test_select_after_a_failed_push_says_so(tmp_path, lspet_coco):
    """A push that failed (nothing answers at the URL) leaves its round recorded: `select` refuses until it is
    pushed, and a `--no-push` select warns that those frames may be picked again."""
    from annotation.client import StudioError

    f = lspet_subset(lspet_coco, list(range(7441, 7461)), tmp_path / "pool.json")
    p = lsp_manifest(
        tmp_path,
        [{"name": "pool", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "pool", "labels": False}],
        selection={"dedup_hamming": 0},
        label_studio={"url": "http://127.0.0.1:9", "token_env": "ITERATE_NO_SUCH_TOKEN_VAR"},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        with pytest.raises((StudioError, IterateError)):
            select(m, led, 4)  # the round is written, then its push fails
        first = led.rounds()[-1].id
        with pytest.raises(IterateError, match=f"round {first} was selected but not fully pushed"):
            select(m, led, 4)
        sel = select(m, led, 4, push=False)
        assert any(f"round {first} was selected but its push did not finish" in n for n in sel.notes)
        assert "its push did not finish" in sel.markdown.read_text()
        # the unpushed round keeps its frames (issue "Hardening, third pass", item 12): no frame in two rounds
        again = select(m, led, 4, push=False)
        rounds = [set(led.round_frame_ids(r.id)) for r in led.rounds()]
        assert len(rounds) == 3 and sum(map(len, rounds)) == len(set().union(*rounds)) == 12
        assert not set(again.frame_ids) & (rounds[0] | rounds[1])


def test_balanced_gives_every_predicted_posture_an_equal_share():
    """The ``balanced`` arm: a pool of 80 predicted upright, 15 inverted and 15 horizontal people and a budget of
    33 → 10 per posture (uncertainty + diversity inside each) and 3 at random, whatever the pool's make-up."""
    rng = np.random.default_rng(0)
    post = ["upright"] * 80 + ["inverted"] * 15 + ["horizontal"] * 15
    n = len(post)
    pool = strategies.Pool(
        n,
        rng,
        combined=rng.random(n),
        emb=rng.normal(size=(n, 8)).astype(np.float32),
        strata=[{"posture": p, "occlusion": "none"} for p in post],
        explore=0.1,
    )
    picked = strategies.choose("balanced", 33, pool)
    assert len(set(picked.rows)) == 33
    by = {}
    for r in picked.rows:
        by.setdefault(picked.why[r], []).append(post[r])
    for v in ("upright", "inverted", "horizontal"):
        assert set(by[f"balance posture={v}"]) == {v} and len(by[f"balance posture={v}"]) == 10
    assert len(by[strategies.EXPLORE_TAG]) == 3
    # without predicted strata it falls back to `full` without a focus (uncertainty + diversity, explore share)
    pool.strata = None
    again = strategies.choose("balanced", 33, pool)
    assert "uncertainty + diversity" in set(again.why.values())


def test_a_pool_too_small_for_uncertainty_to_narrow_the_choice_is_said():
    """k-center looks at the budget × POOL_FACTOR most uncertain free frames: where that is every free frame the
    score did not narrow the choice, and the picks say so; in a large pool they are among the most uncertain frames."""
    rng = np.random.default_rng(0)

    def pool(n):
        return strategies.Pool(
            n, rng, combined=rng.random(n), emb=rng.normal(size=(n, 8)).astype(np.float32), explore=0.1
        )

    small = strategies.choose("diversity", 30, pool(100))
    assert any("did not narrow the choice for uncertainty + diversity (30 of 100)" in n for n in small.notes)
    big_pool = pool(1000)
    big = strategies.choose("diversity", 30, big_pool)
    assert not any("narrow" in n for n in big.notes)
    top = set(np.argsort(-big_pool.combined)[: 30 * strategies.POOL_FACTOR].tolist())
    assert set(big.rows) <= top


def test_select_refuses_the_simulation_only_snapshot_score(proj):
    """``snapshot`` is measured as a simulation arm only: `select` says so in one line instead of ignoring it."""
    m = load_manifest(proj)
    weights = {"confidence": 1.0, "snapshot": 1.0}
    m2 = m.model_copy(update={"selection": m.selection.model_copy(update={"weights": weights})})
    with Ledger(m.workspace_dir) as led:
        if led.latest_model() is None:
            retrain(m, led)
        rounds = led.raw("SELECT COUNT(*) FROM rounds").fetchone()[0]
        with pytest.raises(IterateError, match="selection.weights.snapshot: only `iterate simulate`"):
            select(m2, led, 4, push=False)
        assert led.raw("SELECT COUNT(*) FROM rounds").fetchone()[0] == rounds  # nothing recorded


def test_diversity_on_image_features_spreads_over_the_cold_start_features(proj):
    """``selection.diversity_on: image``: the model still scores the pool, but k-center spreads the batch over the
    cold start's image features (no labeled-frame seeds) instead of the model's embeddings."""
    from iterate.loop.models import scoring_model
    from iterate.loop.select import _candidate_pool, candidates, cold_start_features

    m = load_manifest(proj)
    assert m.selection.diversity_on == "image"  # the default (bench/results/simulate-imagekc-5seeds)
    m_img = m.model_copy(update={"selection": m.selection.model_copy(update={"diversity_on": "image"})})
    m_model = m.model_copy(update={"selection": m.selection.model_copy(update={"diversity_on": "model"})})
    with Ledger(m.workspace_dir) as led:
        if led.latest_model() is None:
            retrain(m, led)
        model = scoring_model(m, led)
        cands = candidates(led)[:30]
        rng = np.random.default_rng(0)
        _, by_model, s1 = _candidate_pool(m_model, led, model, cands, "diversity", rng, [], None)
        _, by_image, s2 = _candidate_pool(m_img, led, model, cands, "diversity", rng, [], None)
        np.testing.assert_array_equal(by_model.combined, by_image.combined)  # the same uncertainty
        feats, ok = cold_start_features(m, cands)
        assert len(ok) == len(cands)
        np.testing.assert_allclose(by_image.emb, feats, rtol=1e-5, atol=1e-5)
        assert by_image.seeds is None and by_model.emb.shape[1] != feats.shape[1]


def test_plausibility_scores_a_stretched_bone_above_a_labeled_like_pose(lspet_coco):
    """The ``plausibility`` arm's score on real labeled LSPET bodies: a pose from the reference set scores low; the
    same pose with the right shin stretched 6× scores higher; an edge never labeled counts nothing."""
    from iterate.core.manifest import load_manifest
    from iterate.loop.pool import person_size
    from iterate.loop.settings import keypoint_spec
    from iterate.selection import scores as sc

    from conftest import REPO

    spec = keypoint_spec(load_manifest(REPO / "data_manifest.yaml"))
    names = list(spec.names)
    edges = [(names.index(a), names.index(b)) for a, b in spec.skeleton]
    kp = np.array([a["keypoints"] for a in lspet_coco["annotations"] if 7001 <= a["image_id"] <= 7200], float).reshape(
        -1, 14, 3
    )
    full = kp[(kp[:, :, 2] > 0).all(1)]
    assert len(full) >= 20
    gt = full[:, :, :2]
    seen = np.ones((len(full), len(edges)), bool)
    ref = sc.bone_logs(gt, edges, person_size(spec, gt))
    pose = gt[:1].copy()
    stretched = pose.copy()
    knee, ankle = names.index("right_knee"), names.index("right_ankle")
    stretched[0, ankle] = pose[0, knee] + 6 * (pose[0, ankle] - pose[0, knee])
    both = np.concatenate([pose, stretched])
    s = sc.plausibility(sc.bone_logs(both, edges, person_size(spec, both)), ref, seen)
    assert s[1] > s[0] + 0.05, s
    seen[:, :] = False  # no edge labeled: nothing to compare with
    assert (sc.plausibility(sc.bone_logs(both, edges, person_size(spec, both)), ref, seen) == 0).all()


def test_select_scores_plausibility_against_the_labeled_bodies(tmp_path, lspet_coco):
    """``selection.weights.plausibility`` in `select`: the shipped base scores a real pool and each candidate's
    predicted bones are compared with the ledger's labeled (non-test) bodies; the score shows in the round's table
    beside the others and differs between frames."""
    from conftest import REPO

    srcs = []
    for name, lo, hi, split, labels in (("va", 7411, 7430, "val", True), ("pool", 7441, 7460, "pool", False)):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp_path / f"{name}.json")
        srcs.append(
            {"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels}
        )
    p = lsp_manifest(
        tmp_path, srcs, selection={"weights": {"confidence": 1.0, "plausibility": 1.0}, "dedup_hamming": 0}
    )
    m = load_manifest(p)
    m = m.model_copy(
        update={"model": m.model.model_copy(update={"base": str(REPO / "model/weights/lspet_upright_w18s_128.pt")})}
    )
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        sel = select(m, led, 6, strategy="uncertainty", push=False)
        vals = [r["plausibility"] for r in sel.table]
        assert len(vals) == 6 and all(0 <= v < 50 for v in vals) and len(set(vals)) == 6
