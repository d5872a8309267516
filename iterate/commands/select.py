"""`iterate select`."""

from __future__ import annotations

from typing import Annotated

import typer

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project, progress_bar
from iterate.commands.studio import _print_push


def select(
    budget: Annotated[int, typer.Option(help="frames to select")],
    manifest: ManifestOpt = DEFAULT,
    strategy: Annotated[
        str, typer.Option(help="a registered strategy: random | uncertainty | diversity | full")
    ] = "full",
    no_push: Annotated[bool, typer.Option("--no-push", help="do not push the frames to Label Studio")] = False,
    seed: Annotated[int | None, typer.Option(help="random seed (default: train.seed)")] = None,
) -> None:
    """Score the unlabeled pool with the current model and pick the next frames to label, then push them.

    Example: iterate select --budget 500
    """
    from iterate.loop.select import select as run

    m, ledger = open_project(manifest, write=True, command="iterate select")
    with (
        ledger,
        progress_bar() as bar,
    ):
        task = bar.add_task("scoring the pool", total=None)
        sel = run(
            m,
            ledger,
            budget,
            strategy=strategy,
            push=not no_push,
            seed=seed,
            progress=lambda d, n: bar.update(task, completed=d, total=n),
        )
    if sel is None:  # another rank of a torchrun: rank 0 reports
        return
    for n in sel.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
    console.print(
        f"round {sel.round_id}: selected {len(sel.frame_ids)} frames ({sel.strategy}"
        f"{', cold start' if sel.cold_start else ''}"
        f"{f'; scored {sel.scored_now} new frames by {sel.scored_by}' if sel.scored_by else ''}); "
        f"why: {sel.markdown}, every score: {sel.csv}"
    )
    if sel.push is not None:
        _print_push(sel.push)


def register(app: typer.Typer) -> None:
    app.command("select")(select)
