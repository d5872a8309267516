"""Paired differences between arms of two simulation runs (e.g. with and without replay), over the seeds both ran.

    python bench/experiments/selection_vs_random/simulate_compare.py --pair simulate-replay:random simulate-final:random [--pair …] --name NAME

Each ``--pair A:ARM B:ARM`` prints and records A's arm minus B's arm, test PCKh@0.5 round by round, with a 95 %
bootstrap interval over the common seeds; figures ``<A>_<ARM>_minus_<B>_<ARM>_final`` (the last budget) and ``_ci``.
Writes bench/results/<name>.json.

``--smoke`` (the test suite's check): by default the pair above, read from the committed runs in bench/results,
written as simulate_compare_smoke.json into the results folder (`ITERATE_BENCH_RESULTS`, never bench/results).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import PCKH05

import _common  # noqa: E402
from _common import REPO, RESULTS, write_result  # noqa: E402

SMOKE_PAIR = ["simulate-replay:random", "simulate-final:random"]


def main() -> None:
    from reports.simulation import paired_difference

    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", nargs=2, action="append", metavar="RUN:ARM", help="runs in bench/results/ (required)")
    ap.add_argument("--name", help="required but in --smoke")
    ap.add_argument(
        "--smoke", action="store_true", help="a committed pair, out in the results folder: the test's check"
    )
    args = ap.parse_args()
    runs = RESULTS
    if args.smoke:
        _common.smoke()
        runs, args.pair, args.name = REPO / "bench" / "results", args.pair or [SMOKE_PAIR], "simulate_compare_smoke"
    elif not args.pair or not args.name:
        ap.error("--pair and --name are required")
    figures, details = {}, {}
    for pair in args.pair:
        (ra, aa), (rb, ab) = (side.rsplit(":", 1) for side in pair)
        a, b = (json.loads((runs / r / "simulate.json").read_text()) for r in (ra, rb))
        d = paired_difference(a, aa, b, ab)
        key = f"{ra}_{aa}_minus_{rb}_{ab}".replace("-", "_")
        figures[f"{key}_final"] = d[f"{PCKH05}_diff"][-1]
        figures[f"{key}_final_ci"] = None if d[f"{PCKH05}_diff_ci"] is None else [c[-1] for c in d[f"{PCKH05}_diff_ci"]]
        details[key] = d
    write_result(args.name, figures, details)


if __name__ == "__main__":
    main()
