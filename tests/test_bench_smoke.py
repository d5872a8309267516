"""Benchmarks cannot rot (issue 31, item 6; issue "One loop": `bench/speed/ls_roundtrip.py` failed for months once
the demo manifest gained `train.replay`): every script in bench/ (speed/, release/, experiments/<question>/) has a
smoke mode (``--smoke``: tiny sizes, seconds), and each runs here as a subprocess, its results redirected by
``ITERATE_BENCH_RESULTS`` to a temporary folder. A bench that breaks fails the suite, and so does a new bench without
an entry in ``SMOKES``, a script outside the layout, or an experiment folder without its README.

Each run must exit 0, end its stdout with its figures as ``name=value`` lines (the figures of its results file, in
order), write that results file into the temporary folder, and leave bench/results and model/weights alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO

BENCH = REPO / "bench"


@dataclass(frozen=True)
class Smoke:
    """What one bench's ``--smoke`` run must leave behind."""

    results: str  # its results file (write_result's record), relative to ITERATE_BENCH_RESULTS
    figures: frozenset[str]  # figures its last stdout lines must name
    fixtures: tuple[str, ...] = ()  # pytest fixtures the run needs (a Label Studio server)
    files: tuple[str, ...] = ()  # more files it must write, relative to ITERATE_BENCH_RESULTS
    check: Callable[[dict, Path], None] | None = field(default=None, compare=False)  # (record, results folder)


def _codec_roundtrip(rec: dict, _: Path) -> None:
    assert rec["figures"]["roundtrip_max_error_px"] < 0.01  # analytic points: a wrong matrix is pixels off


def _export_scale(rec: dict, _: Path) -> None:
    runs = rec["details"]["runs"]
    assert [x["frames"] for x in runs] == [1000, 3000]
    assert all(x["export_s"] > 0 and x["read_s"] > 0 and x["peak_rss_mib"] > 0 for x in runs)
    assert all(x["annotations"] == x["frames"] for x in runs)  # every synthetic row exported


def _label_audit(rec: dict, _: Path) -> None:
    assert rec["figures"]["injected"] == {"swap": 6, "move": 6, "remove": 6}
    assert 0 <= rec["figures"]["label_audit_swap_recall"] <= 1


def _audit_payoff(rec: dict, _: Path) -> None:
    f = rec["figures"]
    assert rec["details"]["injected"] == {"swap": 4, "move": 4, "remove": 2}  # 40 frames at twice 5/5/2 %
    assert 0 < f["audit_payoff_injected_frames_fixed"] <= f["audit_payoff_frames_fixed"] <= 40
    for arm in ("base", "clean", "noisy", "fixed"):
        assert 0 <= f[f"audit_payoff_{arm}_pckh05"] <= 100
        lo, hi = rec["details"][f"audit_payoff_{arm}_pckh05_ci95"]
        assert lo <= f[f"audit_payoff_{arm}_pckh05"] <= hi


def _ls_roundtrip(rec: dict, _: Path) -> None:
    assert rec["details"]["tasks_in_project"] == 50 and rec["figures"]["sync_5000_s"] > 0


def _person_box(rec: dict, tmp: Path) -> None:
    run = rec["details"]["box_head_run"]
    assert run["steps"] == 2 and Path(run["checkpoint"]).is_relative_to(tmp)  # the head's run: not in /tmp or the repo
    assert run["first_pass_max_shift_px"] == 0.0  # the pose weights stayed frozen


def _score_scale(rec: dict, _: Path) -> None:
    assert rec["details"]["same_cache_order"] and rec["details"]["max_score_difference"] < 1e-4


def _select_scale(rec: dict, _: Path) -> None:
    assert sum(rec["details"]["picked_by"].values()) == rec["details"]["budget"] == 20


def _ship_box_head(rec: dict, tmp: Path) -> None:
    shipped = json.loads((tmp / "ship_box_head_smoke" / "lspet_w18s_128.json").read_text())
    assert shipped["box_head"]["held_out_pckh05"] == rec["figures"]["shipped_pckh05"]


def _train_base(rec: dict, tmp: Path) -> None:
    shipped = json.loads((tmp / "train_base_smoke" / "lspet_w18s_128.json").read_text())
    assert shipped["held_out_pckh05"] == rec["figures"]["base_pckh05"] and shipped["steps"] > 0


def _small_person(rec: dict, _: Path) -> None:
    assert rec["bare_forward_images_per_s"] > 0 and {"box_head_5", "shipped_5"} <= set(rec["details"])


def _smoke(results: str, *figures: str, **kw) -> Smoke:
    return Smoke(results, frozenset(figures), **kw)


SMOKES: dict[str, Smoke] = {
    "audit_payoff": _smoke(
        "audit_payoff_smoke.json",
        "audit_payoff_noise_cost_pckh05",
        "audit_payoff_recovered_share_pckh05",
        check=_audit_payoff,
    ),
    "box_fusion": _smoke("box_fusion_smoke.json", "fusion_mean_pckh05", "fusion_best", "fusion_gap_closed"),
    "codec_roundtrip": _smoke(
        "codec_roundtrip_smoke.json",
        "roundtrip_mean_error_px",
        "roundtrip_max_error_px",
        check=_codec_roundtrip,
    ),
    "dark_accuracy": _smoke(
        "dark_accuracy_smoke.json", "dark_speedup", "dark_mean_error_px", "dark_gain_pckh05", "dark_gain_pckh01"
    ),
    "draw_footage": _smoke("draw_footage_smoke.json", "drawn", files=("draw_footage_smoke.png",)),
    "export_scale": _smoke("export_scale_smoke.json", "export_3000_s", "read_3000_s", check=_export_scale),
    "gpu_check": _smoke(  # on the CPU, even where there is a GPU
        "gpu_check_smoke.json", "train_samples_per_s_hm32", "train_ratio_hm32", "predict_ratio_hm32", "pckh05_hm32"
    ),
    "infer_throughput": _smoke("infer_throughput_smoke.json", "infer_default_frames_per_s", "infer_default_ratio"),
    "label_audit": _smoke(
        "label_audit_smoke.json",
        "label_audit_swap_recall",
        "label_audit_move_ap",
        "label_audit_frames_for_90",
        check=_label_audit,
    ),
    "learn_cpu": _smoke("learn_cpu_smoke.json", "cpu_steps_pckh05", "cpu_steps_pckh01", "samples_per_s"),
    "ls_roundtrip": _smoke(
        "ls_roundtrip_smoke.json",
        "push_500_s",
        "sync_5000_s",
        "export_5000_s",
        "sync_over_export",
        fixtures=("studio",),
        check=_ls_roundtrip,
    ),
    "person_box": _smoke(
        "person_box_smoke.json", "box_box_head_mean_pckh05", "box_best", "box_gap_closed", check=_person_box
    ),
    "recipe_table": _smoke("recipe_table_smoke.json", "recipe_runs", files=("recipe_table_smoke.md",)),
    "score_quality": _smoke(
        "score_quality_smoke.json",
        "lspet_w18s_128_best_score",
        "lspet_w18s_128_best_top10_gap",
        "lspet_w18s_128_combined_top10_gap",
        files=("score_quality_smoke.md",),
    ),
    "score_scale": _smoke(
        "score_scale_smoke.json",
        "score_1rank_frames_per_s",
        "score_2rank_frames_per_s",
        "score_2rank_speedup",
        check=_score_scale,
    ),
    "select_scale": _smoke(
        "select_scale_smoke.json", "select_1m_full_s", "select_1m_full_peak_gib", check=_select_scale
    ),
    "ship_box_head": _smoke(  # a release tool: its checkpoint goes into the results folder, never model/weights
        "ship_box_head_smoke.json",
        "shipped_pckh05",
        "shipped_pckh01",
        files=("ship_box_head_smoke/lspet_w18s_128.pt",),
        check=_ship_box_head,
    ),
    "simulate_compare": _smoke(
        "simulate_compare_smoke.json", "simulate_replay_random_minus_simulate_final_random_final"
    ),
    "simulate_lspet": _smoke(
        "simulate_lspet_smoke/result.json",
        "full_labels_to_random_ratio",
        "full_minus_random_final_pckh05",
        "simulate_wall_s",
        files=("simulate_lspet_smoke/simulate.json", "simulate_lspet_smoke/simulate.md"),
    ),
    "small_person": _smoke(
        "small_person_smoke.json",
        "small_shipped_ratio_3",
        "small_bbox_file_ratio_3",
        "small_bbox_file_vs_shipped_5",
        "small_box_head_ratio_5",
        "small_box_head_1_pckh05",
        check=_small_person,
    ),
    "train_base": _smoke(  # a release tool: its checkpoint goes into the results folder, never model/weights
        "train_base_smoke.json",
        "base_pckh05",
        "base_pckh01",
        "base_default_path_pckh05",
        files=("train_base_smoke/lspet_w18s_128.pt",),
        check=_train_base,
    ),
    "train_throughput": _smoke("train_throughput_smoke.json", "train_step_ratio"),
}


LAYOUT = ("speed/*.py", "release/*.py", "experiments/*/*.py")  # the only places a bench script lives
README_SECTIONS = ("## Question", "## Command", "## Verdict", "## Superseded by")  # an experiment's README


def bench_scripts() -> dict[str, Path]:
    """The bench scripts by name (their file's stem): bench/**/*.py but helper modules (a leading underscore, like
    ``bench/_common.py``)."""
    paths = [p for p in BENCH.rglob("*.py") if not p.name.startswith("_") and "results" not in p.parts]
    by_name = {p.stem: p for p in paths}
    assert len(by_name) == len(paths), f"two bench scripts share a name: {sorted(str(p) for p in paths)}"
    return dict(sorted(by_name.items()))


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    }


# benches whose smoke needs what another test has just built, and which that test runs
SMOKED_ELSEWHERE = {
    "demo_figures": "tests/test_security.py::test_demo_files_and_output_never_hold_the_token records its tiny demo",
}


def test_every_bench_has_a_smoke_entry():
    """A new bench without a smoke mode and an entry in SMOKES fails here (and an entry whose bench is gone)."""
    scripts = [s for s in bench_scripts() if s not in SMOKED_ELSEWHERE]
    missing = sorted(set(scripts) - set(SMOKES))
    assert not missing, (
        f"bench scripts without a smoke entry in tests/test_bench_smoke.py SMOKES: {missing} — give each a --smoke "
        "mode (tiny sizes, a few seconds, results via bench/_common.py where ITERATE_BENCH_RESULTS points) and an entry"
    )
    assert not sorted(set(SMOKES) - set(scripts)), "SMOKES names scripts that are not in bench/"
    paths = bench_scripts()
    lacking = [s for s in scripts if '"--smoke"' not in paths[s].read_text()]
    assert not lacking, f"bench scripts without a --smoke option: {lacking}"


def test_bench_layout():
    """bench/ holds speed benchmarks (speed/), release tools (release/: what writes model/weights and the docs'
    figures of it) and experiments, one folder per question with a README (question, command, verdict, superseded
    by); one helper module, bench/_common.py; results in bench/results/<name>.json (or a folder for a simulation)."""
    placed = {p for pattern in LAYOUT for p in BENCH.glob(pattern)}
    stray = sorted(str(p.relative_to(BENCH)) for p in bench_scripts().values() if p not in placed)
    assert not stray, f"bench scripts outside speed/, release/ and experiments/<question>/: {stray}"
    assert sorted(p.name for p in BENCH.glob("*.py")) == ["_common.py"], "bench/ itself holds only _common.py"
    folders = sorted(p for p in (BENCH / "experiments").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders
    for folder in folders:
        readme = folder / "README.md"
        assert readme.is_file(), f"{folder.relative_to(REPO)}: an experiment without README.md"
        text = readme.read_text()
        missing = [s for s in README_SECTIONS if s not in text]
        assert not missing, f"{readme.relative_to(REPO)} lacks {missing}"
        assert list(folder.glob("*.py")), f"{folder.relative_to(REPO)}: an experiment folder without its script"


@pytest.mark.parametrize("bench", sorted(SMOKES))
def test_bench_smoke(bench, tmp_path, request):
    smoke = SMOKES[bench]
    for name in smoke.fixtures:
        request.getfixturevalue(name)
    weights = _listing(REPO / "model" / "weights")
    results = REPO / "bench" / "results"
    smoke_files = {p for p in results.rglob("*smoke*")}
    # this checkout's packages first: an editable install may point at another checkout of the repo
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "ITERATE_BENCH_RESULTS": str(tmp_path), "PYTHONPATH": path}
    r = subprocess.run(
        [sys.executable, str(bench_scripts()[bench]), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    path = tmp_path / smoke.results
    assert path.is_file(), f"{bench} --smoke wrote no {smoke.results}: {sorted(_listing(tmp_path))}"
    rec = json.loads(path.read_text())
    # the last stdout lines: the record's figures as name=value, in order
    lines = r.stdout.strip().splitlines()
    n = len(rec["figures"])
    assert n and len(lines) >= n
    last = lines[-n:]
    assert all("=" in line for line in last), last
    assert [line.split("=", 1)[0] for line in last] == list(rec["figures"])
    assert smoke.figures <= set(rec["figures"]), smoke.figures - set(rec["figures"])
    assert rec["commit"] and rec["bare_forward_images_per_s"] > 0
    for f in smoke.files:
        assert (tmp_path / f).is_file() and (tmp_path / f).stat().st_size > 0, f
    if smoke.check:
        smoke.check(rec, tmp_path)
    # nothing written where the real figures and the shipped weights live
    assert _listing(REPO / "model" / "weights") == weights
    assert {p for p in results.rglob("*smoke*")} == smoke_files
