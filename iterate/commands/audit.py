"""`iterate audit`: the labels that are probably wrong, ranked, with a reason (issue 33)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project, progress_bar

if TYPE_CHECKING:
    from iterate.loop.audit import AuditResult

AuditOutOpt = Annotated[Path | None, typer.Option("--out", help="write every flag and the rates as JSON here")]
TopOpt = Annotated[int, typer.Option(help="rows of the table (the JSON holds all)", min=0)]
PushOpt = Annotated[
    bool, typer.Option("--push", help="send the flagged frames to Label Studio as review tasks (a review project)")
]
MaxPushOpt = Annotated[int, typer.Option(help="with --push: at most this many frames, most suspicious first", min=1)]
FoldsOpt = Annotated[
    int,
    typer.Option(
        help="frames no model is out of sample for (the base's own training data; a project with no base): "
        "train this many models from scratch, each leaving a fold out (0: only their bodies are checked)"
    ),
]
FoldStepsOpt = Annotated[int, typer.Option(help="with --folds: training steps of each fold's model")]


def audit(
    manifest: ManifestOpt = DEFAULT,
    out: AuditOutOpt = None,
    top: TopOpt = 30,
    push: PushOpt = False,
    max_push: MaxPushOpt = 50,
    folds: FoldsOpt = 0,
    fold_steps: FoldStepsOpt = 200,
) -> None:
    """Score every labeled frame (pool, train, val, test) against a model that never trained on it and flag the
    labels that are probably wrong, per joint: disagreement, left/right swap, implausible body, missing joint.
    Thresholds: the manifest's `audit:` section.

    With --push, the flagged frames go to Label Studio as review tasks (the current label to correct, the model's
    keypoints beside it, the reason shown); `iterate sync-labels` then confirms or corrects each label.

    Example: iterate audit --out audit.json
    """
    from iterate.core.errors import IterateError
    from iterate.loop.audit import push_review, run_audit, write_json

    if out is not None and (out.is_dir() or out.suffix.lower() != ".json"):
        raise IterateError(f"--out: {out} must be a .json file")
    m, ledger = open_project(manifest, write=push, command="iterate audit --push")
    with ledger:
        with progress_bar() as bar:
            task = bar.add_task("predicting labeled frames", total=None)
            res = run_audit(
                m,
                ledger,
                progress=lambda done, n: bar.update(task, completed=done, total=n),
                folds=folds,
                fold_steps=fold_steps,
            )
        pushed = push_review(m, ledger, res, max_push) if push and res.suspects else None
    _print_audit(res, top)
    if out is not None:
        write_json(res, out)
        console.print(f"wrote {out}", highlight=False)
    if push and pushed is None:
        console.print("nothing flagged: no review task pushed", highlight=False)
    elif pushed is not None:
        _print_pushed(*pushed)


def _print_audit(res: AuditResult, top: int) -> None:
    """The summary line, the ``top`` most suspicious labels, the flag rate per annotator, the notes."""
    flagged = len({s.frame.id for s in res.suspects})
    used = ", ".join(f"{k}: {v}" for k, v in res.models.items()) or "none"
    console.print(
        f"audited [bold]{res.frames}[/] labeled frames (predicted by {used}): {len(res.suspects)} flags on "
        f"{flagged} frames — " + ", ".join(f"{r} {c}" for r, c in res.per_reason.items()),
        highlight=False,
    )
    if res.suspects and top:
        console.print(_suspects_table(res, top))
    rates = [(a, r) for a, r in res.per_annotator.items() if r["flagged"]]
    if rates:
        console.print(
            "flagged frames per annotator: " + ", ".join(f"{a} {r['flagged']}/{r['labels']}" for a, r in rates),
            highlight=False,
        )
    for n in res.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)


def _suspects_table(res: AuditResult, top: int) -> Table:
    t = Table(title="labels to re-check (most suspicious first)")
    for c in ("#", "frame", "joint", "reason", "score", "label x, y, v", "model x, y, conf", "ver", "annotator"):
        t.add_column(c, justify="right" if c in ("#", "score", "ver") else "left")
    for i, s in enumerate(res.suspects[:top], 1):
        j = s.to_json()
        t.add_row(
            str(i),
            s.frame.id,
            j["joint"],
            s.reason,
            f"{s.score:.2f}",
            "; ".join(" ".join(f"{v:.0f}" for v in xyv) for xyv in s.label_xyv),
            "; ".join("–" if p is None else f"{p[0]:.0f} {p[1]:.0f} {p[2]:.2f}" for p in s.model_xyc),
            str(s.label.version),
            s.label.annotator or "–",
        )
    return t


def _print_pushed(ps, n: int) -> None:
    """What `--push` sent to Label Studio, of ``n`` flagged frames."""
    console.print(
        f"review tasks in Label Studio project {ps.project_id}: {ps.pushed} pushed ({ps.replaced} replacing an "
        f"earlier review), {ps.already} already under review, of {n} flagged frames; `iterate sync-labels` "
        "pulls the answers",
        highlight=False,
    )
    for line in ps.refused:
        console.print(f"[yellow]refused:[/] {line}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
