import json

import numpy as np
import pytest
from typer.testing import CliRunner

from iterate.cli import app
from reports.simulation import COLD, summarise

from conftest import LSPET, REPO, lspet_subset


def _runs(curves: list[list[float]], strata=None, focus=None) -> list[list[dict]]:
    """per-seed rows of one strategy: labels 0/30/150/300 and the given test PCKh@0.5 curve per seed."""
    labels = [0, 30, 150, 300]
    out = []
    for ys in curves:
        rows = []
        for i, (n, y) in enumerate(zip(labels, ys)):
            # rows as older versions recorded them (pckh05, …): summarise reads them under today's names
            r = {"labels": n, "pckh05": y, "pckh01": y / 10, "mean_sms01": y / 10, "strata": {}, "chunk_strata": {}}
            if strata is not None:
                r["strata"] = {"posture": {"inverted": strata[i]}}
                r["chunk_strata"] = {"posture": {"inverted": 20 if focus else 3}}
            if focus and i:
                r["focus"] = {"key": "posture", "value": "inverted", "weights": {"inverted": 0.9}}
            rows.append(r)
        out.append(rows)
    return out


def _sim_args(tmp_path, lspet_coco, n_pool: int, n_val: int, n_test: int) -> list[str]:
    """`iterate simulate` on the demo manifest with the first LSPET frames of the pool, val and test ranges."""
    pool = lspet_subset(lspet_coco, list(range(6001, 6001 + n_pool)), tmp_path / "pool.json")
    val = lspet_subset(lspet_coco, list(range(6901, 6901 + n_val)), tmp_path / "val.json")
    test = lspet_subset(lspet_coco, list(range(7001, 7001 + n_test)), tmp_path / "test.json")
    args = ["simulate", "-m", str(REPO / "data_manifest.yaml"), "--pool", str(pool), "--val", str(val)]
    return [*args, "--test", str(test), "--images", str(LSPET)]


def test_summary_pairs_seeds_and_gives_intervals():
    """A seeded case where the answer is known: full is random's curve plus 2, then 3 points (random's seed noise
    is shared, so the paired difference has no spread), and reaches random's final figure at 90 labels."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4, size=(5, 1))  # seed effects, the same for both strategies
    rnd = np.array([40.0, 41, 42, 44]) + noise
    full = rnd + np.array([0, 2, 3, 3])
    s = summarise({"random": _runs(rnd.tolist()), "full": _runs(full.tolist())}, [0, 1, 2, 3, 4])
    f = s["strategies"]["full"]
    assert f["pckh@0.5_vs_random"] == pytest.approx([0, 2, 3, 3])
    lo, hi = f["pckh@0.5_vs_random_ci"]
    assert lo[-1] == pytest.approx(3) and hi[-1] == pytest.approx(3)  # paired: seed noise cancels
    # unpaired spread is wide: the mean's interval over seeds is not a point
    assert f["pckh@0.5_ci"][1][-1] - f["pckh@0.5_ci"][0][-1] > 1
    # random ends at 44 + noise; full is at 43 + noise with 30 labels, 45 + noise with 150: 90 labels, 0.3×
    assert f["labels_to_reach_random_final_pckh@0.5"] == pytest.approx(90)
    assert s["full_labels_to_random_ratio"] == pytest.approx(0.3)
    assert s["full_labels_to_random_ratio_ci_high"] == pytest.approx(0.3)
    assert s["strategies"]["random"]["labels_to_random_ratio"] == pytest.approx(1.0)
    assert s["seeds"] == [0, 1, 2, 3, 4]


def test_summary_says_when_full_never_reaches_random():
    rnd = [[40, 41, 42, 44]] * 3
    worse = [[40, 39, 40, 41]] * 3
    s = summarise({"random": _runs(rnd), "full": _runs(worse)}, [0, 1, 2])
    assert s["full_labels_to_random_ratio"] is None
    assert s["full_labels_to_random_ratio_ci_high"] is None  # ∞: not reached in any resample
    assert s["strategies"]["full"]["not_reached_share"] == 1.0


def test_focus_test_compares_the_focused_stratum_under_full_and_random():
    rnd = [[40, 41, 42, 44]] * 4
    # the focused stratum gains 10 points per round under full, 2 under random
    s = summarise(
        {
            "random": _runs(rnd, strata=[10, 12, 14, 16]),
            "full": _runs(rnd, strata=[10, 20, 30, 40], focus=True),
        },
        [0, 1, 2, 3],
    )
    ft = s["focus_test"]
    assert ft["gain_full_minus_random"] == pytest.approx(8)
    assert len(ft["rounds"]) == 12 and {r["stratum"] for r in ft["rounds"]} == {"posture=inverted"}
    assert ft["chunk_share_full"] > ft["chunk_share_random"]


def test_simulate_tiny_slice_end_to_end(tmp_path, lspet_coco):
    """Two seeds from the demo's upright base: paired rounds, a cold-start first chunk, the focus test's rows."""
    out = tmp_path / "sim"
    args = _sim_args(tmp_path, lspet_coco, 40, 15, 15)
    args += ["--budgets", "6,6", "--seeds", "0,1", "--steps", "3"]
    r = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "simulate.json").read_text())
    assert set(s["strategies"]) == {"random", "full", COLD}
    assert s["strategies"]["full"]["labels"] == [0, 6, 12]
    assert s["strategies"][COLD]["labels"] == [0, 6]
    assert len(s["per_seed"]["full"]) == 2 and s["seeds"] == [0, 1]
    base = {json.dumps(run[0], sort_keys=True) for runs in s["per_seed"].values() for run in runs}
    assert len(base) == 1  # every strategy and seed starts from the same base figures
    first = [run[1]["why"] for run in s["per_seed"][COLD]]
    assert all(set(w) == {"diversity (cold start)"} for w in first)
    scored = s["per_seed"]["full"][0][1]["why"]
    assert "diversity (cold start)" not in scored  # the base scored full's first chunk
    assert "first_chunk" in s and "focus_test" in s
    assert s["strategies"]["full"]["pckh@0.5_vs_random_ci"] is not None
    md = (out / "simulate.md").read_text()
    assert "labels to reach random's final PCKh@0.5" in md and "## Verdicts" in md
    assert (out / "simulate.png").stat().st_size > 5000
    # effort: every revealed frame counted by the product's accounting against its hidden labels
    pool = {str(i["id"]): i for i in json.loads((tmp_path / "pool.json").read_text())["images"]}
    assert len(pool) == 40
    for runs in s["per_seed"].values():
        for run in runs:
            for r in run[1:]:
                e = r["effort"]
                assert e["frames"] == 6
                assert e["corrections"] == e["moved"] + e["added"] + e["deleted"]
                assert e["accepted"] + e["moved"] + e["added"] + e["deleted"] <= 6 * 14
    cold = [run[1]["effort"] for run in s["per_seed"][COLD]]
    assert all(e["accepted"] == e["moved"] == e["deleted"] == 0 and e["added"] > 0 for e in cold)  # nothing pushed
    scored = [run[1]["effort"] for run in s["per_seed"]["full"]]
    assert all(e["added"] == 0 and e["moved"] + e["accepted"] > 0 for e in scored)  # the base pre-annotated all 14
    f = s["strategies"]["full"]
    assert f["corrections"][0] == 0 and f["corrections"][2] >= f["corrections"][1] > 0
    assert "corrections_to_random_ratio" in f and "corrections_per_frame_vs_random" in f
    assert set(s["full_effort_at_tolerance"]) == {"0.1", "0.2", "0.5"}
    loose = [run[1]["effort"]["at"]["0.5"]["corrections"] for run in s["per_seed"]["full"]]
    assert all(a <= e["corrections"] for a, e in zip(loose, scored))  # a looser acceptance never costs more
    assert "## In annotator effort" in md and (out / "simulate_effort.png").stat().st_size > 5000


def test_summary_measures_selection_in_corrections():
    """Known answer: full reaches random's final figure at 90 labels (0.3× the labels), but its frames cost twice
    random's corrections each (20 vs 10 a frame): 90 labels are 30 × 20 + 60 × 20 = 1800 corrections against random's
    3000 — 0.6× in effort, and a full frame costs 2.0× a random one."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4, size=(5, 1))
    rnd = np.array([40.0, 41, 42, 44]) + noise
    full = rnd + np.array([0, 2, 3, 3])
    r_runs, f_runs = _runs(rnd.tolist()), _runs(full.tolist())
    for runs, per in ((r_runs, 10), (f_runs, 20)):
        for run in runs:
            for prev, r in zip(run, run[1:]):
                n = r["labels"] - prev["labels"]
                r["effort"] = {"frames": n, "corrections": n * per, "explore_frames": 0, "explore_corrections": 0}
    s = summarise({"random": r_runs, "full": f_runs}, [0, 1, 2, 3, 4])
    f = s["strategies"]["full"]
    assert f["labels_to_random_ratio"] == pytest.approx(0.3)
    assert f["corrections"] == pytest.approx([0, 600, 3000, 6000])
    assert f["corrections_to_reach_random_final_pckh@0.5"] == pytest.approx(1800)
    assert s["full_corrections_to_random_ratio"] == pytest.approx(0.6)
    assert f["corrections_per_frame_vs_random"] == pytest.approx([2.0, 2.0, 2.0])
    assert s["strategies"]["random"]["corrections_to_random_ratio"] == pytest.approx(1.0)


def test_simulate_refuses_bad_seeds(tmp_path, lspet_coco):
    pool = lspet_subset(lspet_coco, [6001, 6002], tmp_path / "pool.json")
    args = ["simulate", "-m", str(REPO / "data_manifest.yaml"), "--pool", str(pool), "--val", str(pool)]
    r = CliRunner().invoke(app, [*args, "--test", str(pool), "--images", str(LSPET), "--seeds", "0,x"])
    assert r.exit_code != 0 and "--seeds" in r.output and "Traceback" not in r.output


def test_merge_runs_on_disjoint_seeds_equals_one_run():
    from reports.simulation import merge

    rnd = [[40, 41, 42, 44], [39, 41, 43, 45], [41, 42, 42, 43], [40, 40, 41, 44]]
    full = [[40, 43, 44, 45], [39, 42, 45, 46], [41, 44, 44, 45], [40, 42, 43, 46]]
    whole = summarise({"random": _runs(rnd), "full": _runs(full)}, [0, 1, 2, 3])
    cfg = {"budgets": [30, 120, 150], "seeds": None, "steps_per_round": 300}
    parts = []
    for lo, hi in ((0, 2), (2, 4)):
        p = summarise({"random": _runs(rnd[lo:hi]), "full": _runs(full[lo:hi])}, list(range(lo, hi)))
        parts.append(p | {"wall_s": 10.0, "config": cfg | {"seeds": list(range(lo, hi))}})
    m = merge(parts)
    assert m["seeds"] == [0, 1, 2, 3] and m["config"]["seeds"] == [0, 1, 2, 3] and m["wall_s"] == 20.0
    assert m["strategies"] == whole["strategies"]
    with pytest.raises(ValueError, match="share seeds"):
        merge([parts[0], parts[0] | {"per_seed": {"random": parts[0]["per_seed"]["random"]}}])
    with pytest.raises(ValueError, match="differ"):
        merge([parts[0], parts[1] | {"config": cfg | {"steps_per_round": 150}}])


def test_merge_arms_on_the_same_seeds_equals_one_run():
    """A variant arm run alone (renamed) and merged with an earlier run's random and full: the same summary as one
    run of all three arms."""
    from reports.simulation import merge, rename_arms

    rnd = [[40, 41, 42, 44], [39, 41, 43, 45], [41, 42, 42, 43]]
    full = [[40, 43, 44, 45], [39, 42, 45, 46], [41, 44, 44, 45]]
    var = [[40, 42, 43, 44], [39, 41, 44, 44], [41, 43, 43, 46]]
    whole = summarise({"random": _runs(rnd), "full": _runs(full), "full_flip": _runs(var)}, [0, 1, 2])
    cfg = {"budgets": [30, 120, 150], "seeds": [0, 1, 2], "steps_per_round": 300, "base": "/a/base.pt"}
    first = summarise({"random": _runs(rnd), "full": _runs(full)}, [0, 1, 2]) | {"wall_s": 5.0, "config": cfg}
    alone = summarise({"full": _runs(var)}, [0, 1, 2]) | {"wall_s": 3.0, "config": cfg | {"base": "/b/base.pt"}}
    renamed = rename_arms(alone, {"full": "full_flip"})
    assert set(renamed["strategies"]) == {"full_flip"}
    m = merge([first, renamed])
    assert m["strategies"] == whole["strategies"] and m["wall_s"] == 8.0
    assert m["strategies"]["full_flip"]["pckh@0.5_vs_random"] == whole["strategies"]["full_flip"]["pckh@0.5_vs_random"]
    with pytest.raises(ValueError, match="arms"):
        merge([first, renamed | {"config": cfg | {"steps_per_round": 150}}])


def test_a_seed_reruns_to_the_same_figures(tmp_path, lspet_coco):
    """What merging arms across runs rests on: the same seed and settings give the same rounds, figure for figure."""
    args = _sim_args(tmp_path, lspet_coco, 20, 10, 10)
    args += ["--budgets", "4,4", "--seeds", "3", "--steps", "3"]
    args += ["--strategies", "random,full", "--no-cold-first-chunk"]
    got = []
    for i in range(2):
        r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / f"sim{i}")])
        assert r.exit_code == 0, r.output
        got.append(json.loads((tmp_path / f"sim{i}" / "simulate.json").read_text())["per_seed"])
    assert got[0] == got[1]
    assert got[0]["random"][0][1]["pckh@0.5"] != got[0]["random"][0][0]["pckh@0.5"]  # the rounds did train

    # the first-chunk arm alone, merged with that run: the base-scored vs cold first chunk, paired by seed
    from reports.simulation import merge

    args[args.index("random,full")] = COLD
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "cold")])
    assert r.exit_code == 0, r.output
    cold = json.loads((tmp_path / "cold" / "simulate.json").read_text())
    assert set(cold["per_seed"]) == {COLD} and len(cold["per_seed"][COLD][0]) == 2  # the base and one chunk
    both = merge([json.loads((tmp_path / "sim0" / "simulate.json").read_text()), cold])
    fc = both["first_chunk"]
    assert fc["cold_start_pckh@0.5"] == cold["per_seed"][COLD][0][1]["pckh@0.5"]
    assert fc["base_scored_pckh@0.5"] == got[0]["full"][0][1]["pckh@0.5"]
    r = CliRunner().invoke(app, [*args, "--base", "none", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "give a base" in r.output and "Traceback" not in r.output


def test_snapshot_score_ranks_the_frames_whose_prediction_moved_since_the_last_round():
    """The ``snapshot`` arm's score: the distance between this round's and the last round's predictions, divided by
    the person's size; frames no earlier model scored (round 1) score 0 rather than NaN."""
    from iterate.core.manifest import load_manifest
    from iterate.loop.pool import snapshot_scores as _snapshot
    from iterate.loop.settings import keypoint_spec

    spec = keypoint_spec(load_manifest(REPO / "data_manifest.yaml"))
    rng = np.random.default_rng(0)
    now = rng.uniform(50, 150, (4, spec.num_joints, 2))
    before = now.copy()
    before[1] += 3.0  # moved a little
    before[2] += 12.0  # moved a lot
    before[3] = np.nan  # never scored before
    s = _snapshot(spec, now, before)
    assert s[0] == 0 and s[3] == 0
    assert 0 < s[1] < s[2]
    big = now * 4  # the same shift on a person four times the size counts a quarter as much
    s_big = _snapshot(spec, big, big + (before - now))
    assert s_big[2] == pytest.approx(s[2] / 4, rel=1e-6)


def test_simulate_fine_tunes_with_the_manifests_replay_source(tmp_path, lspet_coco):
    """The demo manifest names `base_replay` (251 of the base's training frames): simulate mixes it into every
    fine-tune as retrain does, says so in its Markdown, and --no-replay turns it off (a different fine-tune)."""
    args = _sim_args(tmp_path, lspet_coco, 12, 5, 10)
    args += ["--budgets", "4", "--seeds", "0", "--steps", "4"]
    args += ["--strategies", "random", "--no-cold-first-chunk"]
    got = {}
    for flag in ("--replay", "--no-replay"):
        out = tmp_path / flag
        r = CliRunner().invoke(app, [*args, flag, "--out", str(out)])
        assert r.exit_code == 0, r.output
        got[flag] = json.loads((out / "simulate.json").read_text())
        got[flag]["md"] = (out / "simulate.md").read_text()
    assert got["--replay"]["config"]["replay_frames"] == 251 and got["--replay"]["config"]["replay_fraction"] == 0.5
    assert "drawn from 251 replayed frames" in got["--replay"]["md"]
    assert got["--no-replay"]["config"]["replay_frames"] == 0 and "no replay" in got["--no-replay"]["md"]
    after = [got[f]["per_seed"]["random"][0][1] for f in ("--replay", "--no-replay")]
    assert after[0]["pckh@0.5"] != after[1]["pckh@0.5"] or after[0]["pckh@0.1"] != after[1]["pckh@0.1"]


def test_simulate_refuses_a_replay_source_it_cannot_read(tmp_path, lspet_coco):
    import yaml

    data = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    data["model"]["base"] = str(REPO / data["model"]["base"])
    for src in data["sources"]:
        src["path"] = str(REPO / src["path"])
    data["sources"].append({"name": "old_video", "kind": "video", "path": str(tmp_path / "v.mp4"), "split": "train"})
    data["train"]["replay"] = {"source": "old_video", "fraction": 0.5}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    pool = lspet_subset(lspet_coco, [6001, 6002, 6003], tmp_path / "pool.json")
    args = ["simulate", "-m", str(tmp_path / "m.yaml"), "--pool", str(pool), "--val", str(pool), "--test", str(pool)]
    r = CliRunner().invoke(app, [*args, "--images", str(LSPET), "--budgets", "2", "--seeds", "0", "--steps", "1"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "train.replay.source" in r.output and "old_video" in r.output and "--no-replay" in r.output


def test_summary_says_where_the_points_go_per_stratum():
    """Upright falls under full and inverted rises: the per-stratum curves are the seeds' means, the final difference
    is paired with random, and the Markdown shows both."""
    from reports.simulation import markdown as _markdown

    def runs(upright, inverted):
        out = _runs([[40, 41, 42, 43]] * len(upright))
        for run, up, inv in zip(out, upright, inverted):
            for r, u, i in zip(run, up, inv):
                r["strata"] = {"posture": {"upright": u, "inverted": i}}
        return out

    rnd = runs(
        [[55, 50, 52, 53], [55, 49, 51, 52], [55, 51, 52, 54]], [[8, 15, 18, 20], [8, 14, 19, 21], [8, 16, 17, 19]]
    )
    full = runs(
        [[55, 47, 49, 50], [55, 46, 50, 50], [55, 48, 48, 51]], [[8, 17, 21, 23], [8, 16, 22, 24], [8, 18, 20, 22]]
    )
    s = summarise({"random": rnd, "full": full}, [0, 1, 2])
    f = s["strategies"]["full"]
    assert f["strata_pckh@0.5"]["posture"]["upright"] == [55.0, 47.0, 49.0, 50.333]
    d = f["strata_pckh@0.5_vs_random_final"]["posture"]
    assert d["upright"]["mean"] == -2.667 and d["upright"]["ci"][1] < 0
    assert d["inverted"]["mean"] == 3.0 and d["inverted"]["ci"][0] > 0
    assert "strata_pckh@0.5_vs_random_final" not in s["strategies"]["random"]
    md = _markdown(
        s
        | {
            "wall_s": 1.0,
            "config": {
                "pool": 9,
                "val": 3,
                "test": 5,
                "budgets": [30, 120, 150],
                "seeds": [0, 1, 2],
                "steps_per_round": 3,
                "batch_size": 16,
                "base": None,
            },
        }
    )
    assert "| posture=upright | 55.0 / 50.0 / 51.7 / 53.0 | 55.0 / 47.0 / 49.0 / 50.3 | -2.67 [" in md


def test_paired_difference_between_two_runs_uses_the_common_seeds():
    """The same arm of two runs (e.g. with and without replay), paired seed by seed over the seeds both ran."""
    from reports.simulation import paired_difference

    a = summarise({"random": _runs([[40, 41, 42, 44], [39, 41, 43, 45], [41, 42, 42, 43]])}, [0, 1, 2])
    b = summarise({"random": _runs([[40, 40, 41, 42], [39, 40, 42, 44]])}, [1, 0])
    d = paired_difference(a, "random", b, "random")
    assert d["seeds"] == [0, 1] and d["labels"] == [0, 30, 150, 300]
    # seed 0: a 40 41 42 44 − b 39 40 42 44 = 1 1 0 0; seed 1: a 39 41 43 45 − b 40 40 41 42 = −1 1 2 3
    assert d["pckh@0.5_diff"] == [0.0, 1.0, 1.0, 1.5]
    lo, hi = d["pckh@0.5_diff_ci"]
    assert lo[-1] == 0.0 and hi[-1] == 3.0  # two seeds: the resamples' means span the two differences
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference(a, "random", summarise({"random": _runs([[1, 2, 3, 4]])}, [7]), "random")
