"""`iterate demo`: the whole loop on the bundled demo data (what the README's first command runs).

Starts the local Label Studio (or uses the manifest's server when one answers), ingests the demo data, then
two rounds of select → push → oracle annotator → sync-labels → retrain → report, and prints each round's
figures. Every run starts from a fresh workspace of its own (``.iterate-demo`` beside the manifest's workspace,
marked as made by the demo); it never deletes a folder it did not create, so running it twice is safe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from iterate.commands._options import DEFAULT, ManifestOpt, console, read_manifest
from iterate.core.manifest import check_workspace
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05


def _figures(r: dict | None, split: str) -> str:
    if not r or r.get(PCKH01) is None:
        return f"{split}: –"
    return (
        f"{split} PCKh@0.5 {r[PCKH05]:.1f} %, PCKh@0.1 {r[PCKH01]:.1f} %, MeanSmS@0.1 {r[MEAN_SMS01]:.1f} % "
        f"({r['frames']} frames)"
    )


LabelsOpt = Annotated[Path, typer.Option(help="ground truth the oracle annotator answers from")]
StepsOpt = Annotated[
    list[int] | None,
    typer.Option(
        help="each round's retrain in optimiser steps (repeat per round; default 500 then 800): the same figures "
        "on every machine; a round says the time it takes here",
        min=1,
    ),
]
MinutesOpt = Annotated[
    list[float] | None,
    typer.Option(help="instead of --steps: a cap on each round's retrain wall time (figures follow the machine)"),
]
KeepServerOpt = Annotated[bool, typer.Option(help="leave the local Label Studio running at the end")]
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        help="the demo's own folder (default: the manifest's workspace name + '-demo'); recreated on every run"
    ),
]


def demo(
    manifest: ManifestOpt = DEFAULT,
    labels: LabelsOpt = Path("demo_data/pool.coco.json"),
    steps: StepsOpt = None,
    minutes: MinutesOpt = None,
    keep_server: KeepServerOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run the loop on the bundled demo data: two rounds of select → Label Studio → sync → retrain → report.

    Example: iterate demo
    """
    from iterate.core.errors import IterateError
    from iterate.loop.demo import demo_workspace, run_demo

    if steps and minutes:
        raise IterateError("--steps and --minutes: give one of them (rounds by steps, or by a wall-time cap)")

    t0 = time.time()
    m = read_manifest(manifest)
    # the demo never touches the manifest's workspace: it works in a folder of its own that it marks as its own
    m.workspace = str((workspace if workspace is not None else demo_workspace(m)).expanduser().resolve())
    check_workspace(m, manifest)
    results = run_demo(
        m,
        labels,
        minutes,
        steps=steps,
        keep_server=keep_server,
        say=_say,
        status=console.status,
        rule=console.rule,
        on_epoch=_on_epoch,
        on_result=_on_result,
    )
    console.rule("demo done")
    for r in results:
        name = "base model" if r.round == 0 else f"round {r.round}: model #{r.model}"
        console.print(f"{name}  {_figures(r.val, 'val')}  |  {_figures(r.test, 'test')}  {r.report}", highlight=False)
    console.print(f"reports: {m.workspace_dir / 'reports'} (latest.md); wall time {time.time() - t0:.0f} s")
    console.print(f"figures: {m.workspace_dir / 'demo-results.json'}", highlight=False)


def _say(s: str) -> None:
    console.print(s, highlight=False)


def _on_epoch(r: dict) -> None:
    if PCKH01 in r:
        _say(
            f"  epoch {r['epoch'] + 1} (step {r['step']}): loss {r['loss']:.3f}, "
            f"val PCKh@0.1 {r[PCKH01]:.1f} %, @0.5 {r[PCKH05]:.1f} %"
        )


def _on_result(r) -> None:
    figs = f"{_figures(r.val or None, 'val')}; {_figures(r.test or None, 'test')}"
    _say(f"base model, before any labels: {figs}" if r.round == 0 else f"round {r.round}: {figs} — report {r.report}")


def register(app) -> None:
    app.command("demo")(demo)
