"""Data commands: `init`, `ingest`, `status`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project, progress_bar
from iterate.core.chunks import chunk_progress, current_chunk, labels_per_stratum, model_frames
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.metric_keys import PCKH01, split_key
from iterate.loop.cost import chunk_hours
from iterate.loop.ingest import ingest, write_dropped
from iterate.loop.ingest.common import SourceSummary
from iterate.loop.init import write_manifest


def init(
    manifest: ManifestOpt = DEFAULT,
    project: Annotated[str, typer.Option(help="project name")] = "my-pose-project",
    from_coco: Annotated[
        Path | None, typer.Option("--from-coco", help="take joints and skeleton from this COCO file")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="keypoint schema: coco17 | mpii16 | lsp14 (names, left/right "
            "pairs, skeleton, height joints, normaliser); default coco17, "
            "or the --from-coco file's joints"
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="overwrite an existing manifest")] = False,
) -> None:
    """Write a commented manifest to edit.

    Example: iterate init --project babies --preset coco17   (or --from-coco labels/coco.json)
    """
    path = write_manifest(manifest, project, from_coco, force, preset)
    console.print(f"wrote {path}: edit sources, strata and target_size, then run [bold]iterate ingest[/]")


ListDroppedOpt = Annotated[
    bool,
    typer.Option(
        "--list-dropped",
        help="print every item dropped (duplicates, near-duplicates, pool frames held out, unreadable files); "
        "they are always listed in <workspace>/ingest-dropped.txt",
    ),
]
_INGEST_COLUMNS = (
    "source",
    "kind",
    "split",
    "added",
    "already there",
    "near-duplicates",
    "held out",
    "unreadable",
    "labels added",
)


def ingest_cmd(manifest: ManifestOpt = DEFAULT, list_dropped: ListDroppedOpt = False) -> None:
    """Register the manifest's images, video frames and COCO labels in the ledger (re-running adds only what is new).

    Example: iterate ingest --manifest data_manifest.yaml
    """
    m, ledger = open_project(manifest, write=True, command="iterate ingest")
    with (
        ledger,
        progress_bar() as bar,
    ):
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"ingest {name}", total=total)
            bar.update(tasks[name], completed=done, total=total)

        summaries = ingest(m, ledger, progress)
        dropped_file, n_dropped = write_dropped(m, summaries)
    console.print(_ingest_table(summaries))
    for s in summaries:
        _print_source_notes(s, list_dropped)
    if dropped_file is not None:
        more = "" if list_dropped else "; `iterate ingest --list-dropped` prints them"
        console.print(
            f"{n_dropped} dropped item(s) (duplicates, pool frames held out, unreadable) listed in "
            f"{escape(str(dropped_file))}{more}",
            highlight=False,
            soft_wrap=True,
        )


def _ingest_table(summaries: list[SourceSummary]) -> Table:
    t = Table(title="ingest")
    for col in _INGEST_COLUMNS:
        t.add_column(col, justify="right" if col not in ("source", "kind", "split") else "left")
    for s in summaries:
        t.add_row(
            s.source,
            s.kind,
            s.split,
            str(s.added),
            str(s.existing),
            str(s.duplicates),
            str(s.held_out),
            str(len(s.unreadable)),
            str(s.labels_added),
        )
    return t


def _print_source_notes(s: SourceSummary, list_dropped: bool) -> None:
    """A source's notes, unreadable files, (``list_dropped``) dropped items, unknown strata values, and frames
    changed or gone since they were ingested."""
    for line in s.notes:
        console.print(f"[yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)
    for p in s.unreadable:
        console.print(f"[yellow]skipped:[/] {escape(p)}", highlight=False, soft_wrap=True)  # a path, whole
    if list_dropped:
        for p in s.dropped:
            console.print(f"[yellow]dropped:[/] {escape(s.source)}: {escape(p)}", highlight=False, soft_wrap=True)
    for k, n in s.unknown_strata.items():
        console.print(
            f"[yellow]{s.source}: stratum value {k} is not in the manifest ({n} labels; reported as 'other')[/]"
        )
    for what, ids in (
        ("changed since it was ingested (its labels describe the old picture)", s.changed),
        ("gone from disk", s.missing),
    ):
        for fid in ids:
            console.print(
                f"[yellow]{s.source}: frame {fid} is {what}[/]; `iterate frames remove {fid}` retires it",
                highlight=False,
            )


def frames_remove(
    ids: Annotated[list[str], typer.Argument(help="frame ids (as `ingest`, `status` and the round CSVs show them)")],
    manifest: ManifestOpt = DEFAULT,
    why: Annotated[str, typer.Option(help="reason kept with the frame")] = "removed by the user",
) -> None:
    """Retire frames: they and their label history stay in the ledger, but no command selects, trains on or
    scores them again; their pending Label Studio tasks are marked retired.

    Example: iterate frames remove 3f2a9c0d1e4b5a6c
    """
    m, ledger = open_project(manifest, write=True, command="iterate frames remove")
    with ledger:
        unknown = [fid for fid in ids if ledger.frame(fid) is None]
        if unknown:
            raise IterateError(f"no frame with id {', '.join(unknown[:5])} in this workspace")
        with ledger.transaction():
            done = ledger.retire_frames(ids, why)
    console.print(
        f"retired {len(done)} frame(s)" + (f"; {len(ids) - len(done)} already retired" if len(done) < len(ids) else "")
    )


def status(manifest: ManifestOpt = DEFAULT) -> None:
    """Show the chunk plan, labels per stratum and the current model.

    Example: iterate status
    """
    m, ledger = open_project(manifest)
    with ledger:
        prog = chunk_progress(m, ledger)
        cur = current_chunk(prog)
        hours = chunk_hours(m, ledger)
        t = Table(title=f"{m.project}: chunk plan (D = {m.target_size})")
        for col in ("chunk", "fraction", "target", "labeled", "pending", "annotator h", ""):
            t.add_column(col, justify="right")
        for c in prog:
            mark = "done" if c.done else ("← current" if c is cur else "")
            h = f"{hours[c.index]:.2f}" if c.index in hours else "–"
            t.add_row(str(c.index), f"{c.fraction:.0%}", str(c.target), str(c.labeled), str(c.pending), h, mark)
        console.print(t)
        if hours:
            console.print(f"annotator hours so far: {sum(hours.values()):.2f} (Label Studio's lead time per label)")
        counts = ledger.count_frames()
        console.print(
            "frames: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none — run `iterate ingest`")
        )
        splits = ("pool", "train", "val", "test")
        for key, rows in labels_per_stratum(m, ledger).items():
            st = Table(title=f"labels per {key}")
            st.add_column(key)
            for sp in splits:
                st.add_column(sp, justify="right")
            for v, r in rows.items():
                st.add_row(v, *(str(r.get(sp, 0)) for sp in splits))
            console.print(st)
        model = ledger.latest_model()
        if model:
            score = model.metrics.get(split_key("val", PCKH01))
            score_s = f"val PCKh@0.1 {score:.1f} %" if isinstance(score, (int, float)) else "not scored"
            n_loop, n_replay = model_frames(model)
            labels = f"{n_loop} train labels" + (f" + {n_replay} replayed" if n_replay else "")
            console.print(f"model #{model.id}: {model.path} ({score_s}, {labels})")
        elif m.model.base:
            base = m.resolve(m.model.base)
            state = "" if base.is_file() else " — [red]the file is missing[/]"
            console.print(
                f"model: the base {escape(str(base))} (`model.base`{state}): it scores and pre-annotates `select` "
                "and is the start of the first `iterate retrain`; none trained yet",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print("model: none yet (run `iterate retrain`)")
        _versions_table(ledger)
        from iterate.loop.retrain import split_warnings  # imports the model code: only here

        for w in split_warnings(ledger):
            console.print(f"[yellow]{escape(w)}[/]", highlight=False, soft_wrap=True)


VERSIONS_SHOWN = 10


def _versions_table(ledger: Ledger) -> None:
    """The dataset versions `iterate export` and `retrain` recorded (the newest ten), and the models trained on
    each."""
    import time

    from iterate.loop.export import version_models

    versions = ledger.dataset_versions()
    if not versions:
        console.print("dataset versions: none yet (`iterate export` and `iterate retrain` record one)")
        return
    used = version_models(ledger)
    t = Table(title=f"dataset versions ({len(versions)}; `iterate export --version N` writes one out)")
    for col in ("version", "recorded", "by", "frames", "labels", "hash", "models trained on it"):
        t.add_column(col, justify="right" if col in ("frames", "labels") else "left")
    for v in versions[-VERSIONS_SHOWN:]:
        t.add_row(
            f"v{v.id}",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)),
            v.made_by,
            str(v.n_frames),
            str(v.n_labels),
            v.content_hash[:12],
            ", ".join(f"#{i}" for i in used.get(v.id, [])),
        )
    console.print(t)
    if len(versions) > VERSIONS_SHOWN:
        console.print(f"(v{versions[0].id}–v{versions[-VERSIONS_SHOWN - 1].id} not shown)")


def ledger_copy(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="the new ledger: postgresql://user@host/db (password from PGPASSWORD or ~/.pgpass) or $VAR, an "
            "environment variable holding the URL; an empty database (iterate creates the tables)",
        ),
    ],
    manifest: ManifestOpt = DEFAULT,
) -> None:
    """Copy this project's ledger, every row and id, into a new database (e.g. PostgreSQL for a team), then check
    the row counts. The source is not changed; point the manifest's `ledger:` at the copy to use it.

    Example: iterate ledger copy --to postgresql://iterate@db.lab/pose
    """
    m, ledger = open_project(manifest, write=True, command="iterate ledger copy")
    with ledger, Ledger(m.workspace_dir, to) as target:
        counts = ledger.copy_to(target)
    console.print(f"copied {escape(ledger.where)} → {escape(target.where)}", highlight=False, soft_wrap=True)
    t = Table()
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in counts.items():
        t.add_row(name, str(n))
    console.print(t)
    console.print(
        f"counts match; to use it, set [bold]ledger: {escape(to)}[/] in {escape(str(manifest))}", soft_wrap=True
    )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("ingest")(ingest_cmd)
    app.command("status")(status)
    frames = typer.Typer(
        help="Frames in the ledger: `iterate frames remove ID…` retires frames, history kept.", no_args_is_help=True
    )
    frames.command("remove")(frames_remove)
    app.add_typer(frames, name="frames")
    led = typer.Typer(
        help="The ledger database: `iterate ledger copy --to URL` moves it to PostgreSQL.", no_args_is_help=True
    )
    led.command("copy")(ledger_copy)
    app.add_typer(led, name="ledger")
