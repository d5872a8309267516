"""The demo's figures as a results file (what docs/demo.md quotes): runs `iterate demo` (rounds by optimiser steps,
so the figures are the same on every machine; the wall time is this machine's) and records its
``demo-results.json`` in bench/results/demo.json.

    python bench/release/demo_figures.py                       # runs the demo (≈ 12 min on 2 cores), then records it
    python bench/release/demo_figures.py --from .iterate-demo/demo-results.json   # records a demo already run
    python bench/release/demo_figures.py --smoke --from FILE   # records into a temporary folder (tests/test_security.py
                                                       # runs it on its tiny demo's file)
Last lines: each round's test PCKh@0.5 and steps, the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from iterate.core.metric_keys import PCKH05, ci_key

import _common  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="src", default="", help="a demo-results.json to record instead of running")
    ap.add_argument("--smoke", action="store_true", help="record --from into a temporary results folder")
    args = ap.parse_args()
    if args.smoke:
        if not args.src:
            ap.error("--smoke records a demo already run: give --from FILE")
        _common.smoke()
    src = Path(args.src) if args.src else _common.REPO / ".iterate-demo" / "demo-results.json"
    if not args.src:
        exe = str(Path(sys.executable).with_name("iterate"))
        subprocess.run([exe, "demo", "-m", str(_common.REPO / "data_manifest.yaml")], check=True, cwd=_common.REPO)
    d = json.loads(src.read_text())
    figures: dict = {"wall_s": d["wall_s"]}
    for r in d["rounds"]:
        name = "base" if r["round"] == 0 else f"round{r['round']}"
        figures[f"{name}_test_pckh05"] = r["test"].get(PCKH05)
        figures[f"{name}_test_pckh05_ci95"] = r["test"].get(ci_key(PCKH05))
        figures[f"{name}_val_pckh05"] = r["val"].get(PCKH05)
        if r.get("audit"):
            figures[f"{name}_audit_swapped"] = r["audit"]["swapped"]
            figures[f"{name}_audit_caught"] = r["audit"]["caught"]
            figures[f"{name}_audit_caught_as_swap"] = r["audit"].get("caught_as_swap")
            figures[f"{name}_audit_swap_flagged_frames"] = r["audit"].get("swap_flagged")
            figures[f"{name}_audit_flagged_frames"] = r["audit"]["flagged"]
        if r["round"]:
            figures[f"{name}_steps"] = r["steps"]
            figures[f"{name}_train_s"] = r["train_s"]
    _common.write_result("demo", figures, {"plan": d["plan"], "rounds": d["rounds"], "source": str(src)})


if __name__ == "__main__":
    main()
