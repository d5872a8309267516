"""`iterate simulate` on LSPET images the base model never saw: pool im06001–im06900 (labels hidden),
val im06901–im07000 (gap focus), test im07001–im07400; rounds follow the 10/40/50 % chunk plan of D = 300.
Paired over seeds; writes bench/results/simulate/ (simulate.json/.md/.png and result.json with the command).

    python bench/experiments/selection_vs_random/simulate_lspet.py [--seeds 0,1,2,3,4] [--steps 150] [--base CHECKPOINT] [--strategies random,full]
        [--set train.l2sp=0] [--name simulate]    # --merge NAME,NAME --name OUT: runs on disjoint seeds, or
        # the same seeds with other arms (--strategies ARM --rename full=ARM_NAME), as one
Last lines: `full_labels_to_random_ratio`, its interval's upper end, the paired final difference, the focus test.
``--smoke`` (the test suite's check): pool im06001–06008, val im06901–06904, test im07001–07004, seed 0, one round
of 2 labels, 2 steps of 2, no cold-start arm; results in the results folder's simulate_lspet_smoke/ (never
bench/results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import PCKH01, PCKH05

import _common  # noqa: E402
from _common import LSPET, REPO, RESULTS, apply_overrides, write_result  # noqa: E402

VS_RANDOM = f"{PCKH05}_vs_random"  # the summary's paired difference to random, per round


def subset(coco: dict, lo: int, hi: int, path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "images": [i for i in coco["images"] if lo <= i["id"] <= hi],
                "annotations": [a for a in coco["annotations"] if lo <= a["image_id"] <= hi],
                "categories": coco["categories"],
            }
        )
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--budgets", default="30,120,150")
    ap.add_argument("--strategies", default="random,full")
    ap.add_argument("--name", default="simulate", help="results go to bench/results/<name>/")
    ap.add_argument("--set", action="append", default=[], help="manifest override, e.g. train.l2sp=0 (repeatable)")
    ap.add_argument("--no-cold-first-chunk", action="store_true", help="skip the cold-start first-chunk arm")
    ap.add_argument("--no-replay", action="store_true", help="fine-tune without the manifest's train.replay source")
    ap.add_argument(
        "--base", default="", help="checkpoint each round fine-tunes from (default: the manifest's model.base)"
    )
    ap.add_argument(
        "--merge", default="", help="NAME,NAME: merge earlier runs (disjoint seeds, or the same seeds and other arms)"
    )
    ap.add_argument(
        "--rename",
        default="",
        help="OLD=NEW,…: name the arms of this run, e.g. full=full_flip for a variant's settings",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="8 pool frames, 1 seed, 1 round of 2 steps: the test suite's check"
    )
    args = ap.parse_args()
    ranges = ((6001, 6900), (6901, 7000), (7001, 7400))  # pool, val, test
    results = RESULTS
    if args.smoke:
        results = _common.smoke()
        ranges = ((6001, 6008), (6901, 6904), (7001, 7004))
        args.seeds, args.budgets, args.steps, args.no_cold_first_chunk = "0", "2", 2, True
        args.set = ["train.batch_size=2", *args.set]
        args.name, args.merge = "simulate_lspet_smoke", ""
    out = results / args.name
    if args.merge:
        from reports.simulation import merge, write_outputs

        parts = [json.loads((RESULTS / n / "simulate.json").read_text()) for n in args.merge.split(",")]
        write_outputs(merge(parts), out)
        return _figures(out, args)
    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = [subset(coco, *r, d / f"{n}.json") for n, r in zip(("pool", "val", "test"), ranges)]
        cmd = [
            str(Path(sys.executable).with_name("iterate")),
            "simulate",
            "-m",
            str(_manifest(args.set, d)),
            "--pool",
            str(files[0]),
            "--val",
            str(files[1]),
            "--test",
            str(files[2]),
            "--images",
            str(LSPET),
            "--budgets",
            args.budgets,
            "--seeds",
            args.seeds,
            "--steps",
            str(args.steps),
            "--strategies",
            args.strategies,
            "--out",
            str(out),
        ]
        if args.base:
            cmd += ["--base", args.base]
        if args.no_cold_first_chunk:
            cmd += ["--no-cold-first-chunk"]
        if args.no_replay:
            cmd += ["--no-replay"]
        subprocess.run(cmd, check=True)
    if args.rename:
        from reports.simulation import rename_arms, write_outputs

        names = dict(pair.split("=", 1) for pair in args.rename.split(","))
        write_outputs(rename_arms(json.loads((out / "simulate.json").read_text()), names), out)
    _figures(out, args)


def _figures(out: Path, args) -> None:
    s = json.loads((out / "simulate.json").read_text())
    for name, c in s["strategies"].items():
        print(f"{name}: labels {c['labels']} PCKh@0.5 {c[PCKH05]} PCKh@0.1 {c[PCKH01]}")
    full = s["strategies"].get("full", {})
    ft = s.get("focus_test", {})
    fc = s.get("first_chunk", {})
    figures = {
        "seeds": len(s["seeds"]),
        "full_labels_to_random_ratio": s.get("full_labels_to_random_ratio"),
        "full_labels_to_random_ratio_ci_high": s.get("full_labels_to_random_ratio_ci_high"),
        "full_minus_random_final_pckh05": (full.get(VS_RANDOM) or [None])[-1],
        "full_minus_random_final_pckh05_ci": _last(full.get(f"{VS_RANDOM}_ci")),
        "focus_gain_full_minus_random": ft.get("gain_full_minus_random"),
        "focus_gain_full_minus_random_ci": ft.get("gain_full_minus_random_ci"),
        "first_chunk_base_minus_cold": fc.get("base_minus_cold"),
        "first_chunk_base_minus_cold_ci": fc.get("base_minus_cold_ci"),
        "full_corrections_to_random_ratio": s.get("full_corrections_to_random_ratio"),
        "full_corrections_to_random_ratio_ci": s.get("full_corrections_to_random_ratio_ci"),
        "full_corrections_per_frame_vs_random": full.get("corrections_per_frame_vs_random"),
        "simulate_wall_s": s["wall_s"],
    }
    for name, c in s["strategies"].items():  # variant arms: their own paired figures
        if name not in ("random", "full", "cold_start") and c.get(VS_RANDOM):  # cold_start: first_chunk
            figures[f"{name}_minus_random_final_pckh05"] = c[VS_RANDOM][-1]
            figures[f"{name}_minus_random_final_pckh05_ci"] = _last(c.get(f"{VS_RANDOM}_ci"))
            figures[f"{name}_labels_to_random_ratio"] = c.get("labels_to_random_ratio")
    details = {
        "config": s["config"],
        "files": ["simulate.json", "simulate.md", "simulate.png", "simulate_effort.png"],
        "overrides": args.set,
    }
    if args.merge:
        details["merged_from"] = args.merge.split(",")
    write_result(f"{args.name}/result", figures, details)


def _manifest(overrides: list[str], d: Path) -> Path:
    """The repo manifest with ``overrides`` (``a.b=value``, values read as YAML), its base and sources (the replay
    source) as absolute paths."""
    import yaml

    data = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    if data["model"].get("base"):
        data["model"]["base"] = str(REPO / data["model"]["base"])
    for src in data.get("sources", []):
        for key in ("path", "images"):
            if src.get(key):
                src[key] = str(REPO / src[key])
    apply_overrides(data, overrides)
    out = d / "data_manifest.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _last(ci):
    return None if not ci else [ci[0][-1], ci[1][-1]]


if __name__ == "__main__":
    main()
