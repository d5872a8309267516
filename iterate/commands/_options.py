"""Option aliases shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from iterate.core.ledger import Ledger
from iterate.core.manifest import DEFAULT_MANIFEST, Manifest, load_manifest
from iterate.loop.distributed import is_writer

console = Console()
notes_console = Console(stderr=True)  # notes about the input: never mixed into a command's --json output

ManifestOpt = Annotated[Path, typer.Option("--manifest", "-m", help="the data manifest", show_default=True)]
DEFAULT = Path(DEFAULT_MANIFEST)


def read_manifest(manifest: Path, *, check_sources: bool = True) -> Manifest:
    """Load the manifest, printing its notes (an older metric name, …) one line each, on stderr."""
    m = load_manifest(manifest, check_sources=check_sources)
    for note in m.notes:
        notes_console.print(f"[yellow]note:[/] {note}", highlight=False)
    return m


def open_project(manifest: Path, *, write: bool = False, command: str = "iterate") -> tuple[Manifest, Ledger]:
    """Load the manifest and open its ledger; with ``write``, take the workspace lock."""
    m = read_manifest(manifest)
    ledger = Ledger(m.workspace_dir, m.ledger)
    if write and is_writer():  # under torchrun only rank 0 writes
        try:
            ledger.lock(command)
        except Exception:
            ledger.close()
            raise
    return m, ledger


def progress_bar(info: bool = False) -> Progress:
    """The one progress bar every long command shows (description, bar, n/N, [info], time left); transient."""
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if info:
        cols.append(TextColumn("{task.fields[info]}"))
    return Progress(*cols, TimeRemainingColumn(), console=console, transient=True)
