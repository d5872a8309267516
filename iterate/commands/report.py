"""Report commands: `evaluate`, `report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project, read_manifest
from iterate.core import metric_keys


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="COCO results JSON (image_id, keypoints, score)")],
    gt: Annotated[Path, typer.Option("--gt", help="COCO keypoint labels")],
    manifest: ManifestOpt = DEFAULT,
    alpha: Annotated[float, typer.Option(help="PCKh threshold α")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
) -> None:
    """Score any COCO results file against COCO keypoint labels with the manifest's schema and strata.

    Example: iterate evaluate --pred preds.json --gt demo_data/test.coco.json --json
    """
    from iterate.loop.report import evaluate_files

    m = read_manifest(manifest, check_sources=False)
    res = evaluate_files(m, pred, gt, alpha)
    if as_json:
        typer.echo(json.dumps(res))
        return
    p, sm = metric_keys.metric_key(metric_keys.PCKH, alpha), metric_keys.metric_key(metric_keys.MEAN_SMS, alpha)
    ci = res[metric_keys.ci_key(p)]
    console.print(
        f"PCKh@{alpha}: [bold]{_pct(res[p])} %[/] [{_pct(ci[0])}, {_pct(ci[1])}]  "
        f"PCKh@0.5: {_pct(res[metric_keys.PCKH05])} %  MeanSmS@{alpha}: {_pct(res[sm])} %  "
        f"height error (median): {_pct(res['height_err_pct'])} %  ({res['frames']} people)"
    )
    t = Table(title="per joint")
    t.add_column("joint")
    t.add_column(f"PCKh@{alpha}", justify="right")
    t.add_column("labeled", justify="right")
    for j, v in res["per_joint"].items():
        t.add_row(j, _pct(v), str(res["per_joint_count"][j]))
    console.print(t)
    for key, rows in res["strata"].items():
        st = Table(title=f"per {key}")
        for c in (key, "frames", f"PCKh@{alpha}", "95 %", "gap", ""):
            st.add_column(c, justify="left" if c in (key, "") else "right")
        for v, r in rows.items():
            st.add_row(
                v,
                str(r["frames"]),
                _pct(r[p]),
                f"{_pct(r[metric_keys.ci_key(p)][0])}–{_pct(r[metric_keys.ci_key(p)][1])}",
                _pct(r["gap"]),
                "too small to judge" if r["small"] else "",
            )
        console.print(st)
    for n in res["notes"]:
        console.print(f"[yellow]note:[/] {n}", highlight=False)


def report(
    manifest: ManifestOpt = DEFAULT,
    round_: Annotated[int | None, typer.Option("--round", help="re-render this older round")] = None,
    alpha: Annotated[float, typer.Option(help="PCKh threshold α")] = 0.1,
) -> None:
    """Write the round's gap report (Markdown + JSON + PNGs, and its HTML page: the picked frames with their
    pre-annotations drawn, the worst frames, the plots) and the next chunk focus that `select` reads.

    Example: iterate report && less .iterate/reports/latest.md  (or open .iterate/reports/latest.html)
    """
    from iterate.loop.report import build

    m, ledger = open_project(manifest, write=True, command="iterate report")
    with ledger:
        with console.status("scoring val and the pool with the current model…"):
            path = build(m, ledger, round_no=round_, alpha=alpha)
    console.print(f"wrote {path} and {path.with_suffix('.html')} (every round: {path.parent / 'index.html'})")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("report")(report)
