"""File names from different writers compared by their trailing path components: a COCO ``file_name`` is
relative to its images folder, a results file may hold the path the predictor was given."""

from __future__ import annotations

import os
from pathlib import PurePath

__all__ = ["name_parts", "same_file", "suffix_match"]


def name_parts(name: str | os.PathLike) -> tuple[str, ...]:
    """The path's components, normalised (``./``, ``a/../``, doubled and Windows separators gone)."""
    s = os.path.normpath(str(name).replace("\\", "/"))
    return tuple(p for p in PurePath(s).parts if p not in ("/", "."))


def suffix_match(a: str | os.PathLike, b: str | os.PathLike) -> int:
    """How many trailing components ``a`` and ``b`` share (0: not even the base name)."""
    pa, pb = name_parts(a), name_parts(b)
    n = 0
    while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """One name is the other's tail (``im1.jpg`` ~ ``/data/lspet/im1.jpg``; ``a/im1.jpg`` ≁ ``b/im1.jpg``)."""
    n = suffix_match(a, b)
    return n > 0 and n == min(len(name_parts(a)), len(name_parts(b)))
