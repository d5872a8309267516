"""Collect the recipe runs of `bench/experiments/cpu_recipe/learn_cpu.py --name recipe_<x> --set …`
(bench/results/recipe_*.json, plus the default recipe's learn_cpu.json) into one Markdown table:
bench/results/recipe.md. Same steps, same seed, same train/test images; only the overrides differ.

    python bench/experiments/cpu_recipe/recipe_table.py [--smoke]

``--smoke`` (the test suite's check): the same runs read, the table written to recipe_table_smoke.md in the results
folder (`ITERATE_BENCH_RESULTS`, never bench/results) with recipe_table_smoke.json; last line recipe_runs=….
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import PCKH05, upgrade

import _common

RESULTS = _common.REPO / "bench" / "results"  # the committed runs, read even in smoke mode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="write the table into the results folder: the test's check")
    args = ap.parse_args()
    runs = [RESULTS / "learn_cpu.json"] + sorted(RESULTS.glob("recipe_*.json"))
    rows = []
    for p in runs:
        if not p.is_file():
            continue
        r = upgrade(json.loads(p.read_text()))  # runs recorded before the metric keys read under today's
        d, f = r["details"], r["figures"]
        over = d.get("recipe", {}).get("overrides") or []
        if "fg_weight" not in d.get("recipe", {}) and not any(o.startswith("train.fg_weight") for o in over):
            # ran while plain MSE was the default
            over = ["(the default recipe until train.fg_weight)"] if p.stem == "learn_cpu" else list(over)
            over.append("plain MSE (train.fg_weight=0)")
        rows.append(
            (
                p.stem,
                ", ".join(over) or "(default recipe)",
                d["steps"],
                f["cpu_steps_pckh05"],
                f["cpu_steps_pckh01"],
                d.get("no_flip_no_refine", {}).get(PCKH05),
                (d.get("without_box_head") or {}).get(PCKH05),
                f["samples_per_s"],
                r.get("commit", "?")[:7],
            )
        )
    base = rows[0][3] if rows else 0.0
    lines = [
        "# CPU recipe runs (bench/experiments/cpu_recipe/learn_cpu.py)",
        "",
        "4,000 steps at batch 16 on LSPET im00001–02000, seed 0, scored on im07001–08000 through the product's "
        "inference path (flip + refine + DARK). `samples/s` depends on the machine and on what else ran.",
        "",
        "| run | change | steps | PCKh@0.5 | Δ | PCKh@0.1 | PCKh@0.5 no flip/refine | PCKh@0.5 without the box head "
        "| samples/s | commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, over, steps, p05, p01, bare, headless, sps, commit in rows:
        lines.append(
            f"| {name} | {over} | {steps} | {p05:.2f} | {p05 - base:+.2f} | {p01:.2f} | "
            f"{'–' if bare is None else f'{bare:.2f}'} | {'–' if headless is None else f'{headless:.2f}'} | "
            f"{sps} | {commit} |"
        )
    if not args.smoke:
        (RESULTS / "recipe.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    out = _common.smoke() / "recipe_table_smoke.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _common.write_result("recipe_table_smoke", {"recipe_runs": len(rows)}, {"table": str(out)})


if __name__ == "__main__":
    main()
