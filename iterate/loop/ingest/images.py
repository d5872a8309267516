"""``kind: images`` — every image file under a folder (the workspace and ``.iterate*`` folders skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from iterate.core.images import IMAGE_EXTS, printable
from iterate.core.manifest import Manifest, Source
from iterate.loop.ingest.common import SourceSummary, _ingest_frames, _Item, _rel
from iterate.loop.ingest.registry import reader


def _in_a_workspace(m: Manifest, root: Path, p: Path) -> bool:
    """True for a file of this workspace (its cut frames, plots, models), or under an ``.iterate*`` folder below
    the source's folder (another workspace, the demo's)."""
    r, ws = p.resolve(), m.workspace_dir
    return ws in r.parents or any(part.startswith(".iterate") for part in p.relative_to(root).parts[:-1])


def _image_items(m: Manifest, src: Source, s: SourceSummary) -> Iterator[tuple[int, _Item]]:
    root = m.resolve(src.path)
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    files = [p for p in found if not _in_a_workspace(m, root, p)]
    if len(files) < len(found):
        s.notes.append(
            f"{src.label}: skipped {len(found) - len(files)} image(s) inside the workspace "
            f"({printable(m.workspace_dir)}) or an .iterate* folder: iterate never ingests its own files"
        )
    for p in files:  # decoded lazily, after the "already registered" check
        yield len(files), (_rel(m, p), None, p, None, None, None)


@reader("images", noun="images")
def read_images(m, ledger, src, s, by_hash, progress) -> None:
    _ingest_frames(m, ledger, src, _image_items(m, src, s), s, by_hash, progress)
