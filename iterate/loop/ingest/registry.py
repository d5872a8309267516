"""The source readers, one module per ``kind`` (``images``, ``video``, ``coco``, ``labelstudio``, ``dlc``,
``sleap``), registered by name. A new format (a CVAT export, say) is one module in this package with a function
decorated ``@reader("cvat")``, its import in ``__init__``, and its name in the manifest's ``sources[].kind`` list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Read = Callable[..., None]  # (manifest, ledger, source, summary, frame ids by content hash, progress) -> None


@dataclass(frozen=True)
class SourceReader:
    kind: str
    read: Read
    cut_frames: bool = False  # frames are cut into the workspace from a video (re-read on each ingest)
    noun: str = "frames"  # what the source holds, in messages ("no images found in …")


READERS: dict[str, SourceReader] = {}


def reader(kind: str, *, cut_frames: bool = False, noun: str = "frames") -> Callable[[Read], Read]:
    """Register ``fn`` as the reader of sources of ``kind``."""

    def add(fn: Read) -> Read:
        READERS[kind] = SourceReader(kind, fn, cut_frames, noun)
        return fn

    return add
