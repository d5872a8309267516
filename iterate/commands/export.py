"""`iterate export`: the curated labels out as a versioned snapshot (COCO, MMPose, DeepLabCut), and `--diff`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project
from iterate.core.errors import IterateError

if TYPE_CHECKING:
    from iterate.loop.export import ExportResult, VersionDiff

OutDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="the folder to write (new or empty; an earlier export of this project there is replaced whole)",
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="coco | mmpose | dlc (a DeepLabCut project)")]
SplitsOpt = Annotated[
    str | None,
    typer.Option(
        help="comma-separated: train (the loop's labeled pool frames and the train split), val, test; default all"
    ),
]
ImagesOpt = Annotated[
    str,
    typer.Option(
        help="link (a hard link where the file system allows it, else a symbolic link, else a copy) | copy | none"
    ),
]
IncludeReplayOpt = Annotated[
    bool, typer.Option("--include-replay", help="also export the train.replay source (the base model's own data)")
]
VersionOpt = Annotated[
    int | None,
    typer.Option("--version", help="export this recorded dataset version (vN) instead of the current labels"),
]
ScorerOpt = Annotated[str | None, typer.Option(help="--format dlc: the scorer name in CollectedData_<scorer>.csv")]
DiffOpt = Annotated[
    tuple[int, int] | None,
    typer.Option("--diff", help="list the frames added, removed and labels changed from version A to B"),
]


def export_cmd(
    out: OutDirOpt = None,
    manifest: ManifestOpt = DEFAULT,
    fmt: FormatOpt = "coco",
    splits: SplitsOpt = None,
    images: ImagesOpt = "link",
    include_replay: IncludeReplayOpt = False,
    version: VersionOpt = None,
    scorer: ScorerOpt = None,
    diff: DiffOpt = None,
) -> None:
    """Write the labeled dataset — every labeled frame's newest label version — as a dataset version, with a
    DATASET.md datasheet; every export is recorded as a version in the ledger (`iterate status` lists them).

    Example: iterate export --out dataset/ --format mmpose   ·   iterate export --version 7 --out v7/   ·
    iterate export --diff 5 7
    """
    from iterate.loop.export import diff as version_diff
    from iterate.loop.export import export, parse_splits

    if diff is not None:
        m, ledger = open_project(manifest)
        with ledger:
            d = version_diff(ledger, *diff)
        _print_diff(d)
        return
    if out is None:
        raise IterateError("--out DIR is needed (or --diff A B to compare two versions)")
    # a new version is a write; a recorded one is only read (it can be exported while `retrain` runs)
    m, ledger = open_project(manifest, write=version is None, command="iterate export")
    with ledger:
        res = export(
            m,
            ledger,
            out,
            fmt=fmt,
            splits=parse_splits(splits) if splits is not None else None,
            images=images,
            include_replay=include_replay,
            version=version,
            scorer=scorer,
        )
    _print_export(res, version)


def _print_diff(d: VersionDiff) -> None:
    console.print(
        f"v{d.a} → v{d.b}: {len(d.added)} frame(s) added, {len(d.removed)} removed, {len(d.changed)} label(s) changed",
        highlight=False,
    )
    for mark, rows in (("+", d.added), ("-", d.removed)):
        for fid, path in rows:
            console.print(f"{mark} {fid} {escape(path)}", highlight=False, soft_wrap=True)
    for fid, path, what in d.changed:
        console.print(f"~ {fid} {escape(path)}: {escape(what)}", highlight=False, soft_wrap=True)


def _print_export(res: ExportResult, version: int | None) -> None:
    """The version written (new, as recorded, or unchanged), its files, images, notes and datasheet."""
    v = res.version
    state = "new" if res.new else ("as recorded" if version is not None else "unchanged since it was recorded")
    console.print(
        f"dataset v{v.id} ({state}; hash {v.content_hash[:12]}…): wrote {escape(str(res.out))}",
        highlight=False,
        soft_wrap=True,
    )
    for f, n in res.files.items():
        console.print(f"  {escape(f)}: {n} label(s)", highlight=False)
    if res.images:
        console.print("  images: " + ", ".join(f"{n} {k}" for k, n in sorted(res.images.items())), highlight=False)
    for line in res.notes:
        console.print(f"[yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)
    console.print(f"  datasheet: {escape(str(res.out / 'DATASET.md'))}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
