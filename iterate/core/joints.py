"""Joints matched by name where a checkpoint meets a manifest: scoring, pre-annotation, the report, `predict` and
fine-tuning. Never by position: a reordered joint list is still matched joint by joint.

Two tables, each documented in ``docs/joints.md``:

- :data:`SAME_JOINT`: names the presets use for one anatomical point. These are used for predictions: a joint of
  the manifest is predicted by a checkpoint joint of the same name or of an alias.
- :data:`INIT_APPROX`: for fine-tuning only, where a manifest joint has no counterpart in the checkpoint, the
  checkpoint joints whose head weights start it (averaged). A joint that is only approximated is never predicted
  by the checkpoint: it is left unplaced (a pre-annotation does not guess it) until a fine-tune learned it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from iterate.core.errors import IterateError

__all__ = ["INIT_APPROX", "SAME_JOINT", "JointMatch", "init_sources", "match_joints", "norm_name"]

# one anatomical point under several names (LSP's `neck` is the point MPII calls `upper_neck`)
SAME_JOINT: tuple[frozenset[str], ...] = (frozenset({"neck", "upper_neck"}),)

# manifest joint → checkpoint joints whose head weights start it when the checkpoint lacks it; the first group
# the checkpoint has wins. Face joints start at the head top (LSP/MPII) and the head top at the nose (COCO); the
# neck, thorax and pelvis at the mean of the two shoulders or hips (their midpoint in the heatmaps).
_FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
INIT_APPROX: dict[str, tuple[tuple[str, ...], ...]] = {
    **{j: (("head_top",), ("neck",), ("upper_neck",)) for j in _FACE},
    "head_top": (("nose",), ("left_eye", "right_eye"), ("left_ear", "right_ear")),
    "neck": (("thorax",), ("left_shoulder", "right_shoulder")),
    "upper_neck": (("thorax",), ("left_shoulder", "right_shoulder")),
    "thorax": (("neck",), ("upper_neck",), ("left_shoulder", "right_shoulder")),
    "pelvis": (("left_hip", "right_hip"),),
}


def norm_name(name: str) -> str:
    """``Left Shoulder``, ``left-shoulder`` and ``left_shoulder`` are one name."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def _aliases(name: str) -> set[str]:
    n = norm_name(name)
    out = {n}
    for group in SAME_JOINT:
        if n in group:
            out |= group
    return out


@dataclass(frozen=True)
class JointMatch:
    """Each target joint's source index (``None``: the source does not predict it)."""

    source: tuple[str, ...]
    target: tuple[str, ...]
    src: tuple[int | None, ...]

    @property
    def identity(self) -> bool:
        return len(self.source) == len(self.target) and all(s == i for i, s in enumerate(self.src))

    @property
    def shared(self) -> list[int]:
        """Target indices the source predicts."""
        return [t for t, s in enumerate(self.src) if s is not None]

    @property
    def missing(self) -> list[str]:
        """Target joints the source does not predict."""
        return [self.target[t] for t, s in enumerate(self.src) if s is None]

    def describe(self) -> str:
        if self.identity:
            return f"all {len(self.target)} joints"
        s = f"{len(self.shared)} of the {len(self.target)} joints"
        if self.missing:
            s += f" (not predicted: {', '.join(self.missing)})"
        return s


def match_joints(
    source: Sequence[str], target: Sequence[str], *, what: str = "the checkpoint", required: bool = True
) -> JointMatch:
    """Match ``target`` joints to ``source`` joints by name (or a :data:`SAME_JOINT` alias). With ``required``, no
    shared joint at all is an error naming both lists: nothing is paired by position."""
    index: dict[str, int] = {}
    for i, name in enumerate(source):
        index.setdefault(norm_name(name), i)
    src: list[int | None] = []
    for name in target:
        hits = [index[a] for a in sorted(_aliases(name)) if a in index]
        exact = index.get(norm_name(name))
        src.append(exact if exact is not None else (hits[0] if hits else None))
    if required and all(s is None for s in src):
        raise IterateError(
            f"{what} predicts joints {', '.join(source)}; the manifest's are {', '.join(target)}: no joint shared "
            "by name (rename keypoints.names, or fine-tune with keypoints.init_from)"
        )
    return JointMatch(tuple(source), tuple(target), tuple(src))


def init_sources(
    source: Sequence[str], target: Sequence[str], init_from: Mapping[str, str | Sequence[str]] | None = None
) -> dict[str, tuple[str, ...]]:
    """For fine-tuning: each target joint the source lacks → the source joints that start it (averaged), from the
    manifest's ``init_from`` first, then :data:`INIT_APPROX`. A joint with none is absent (a new channel).
    An ``init_from`` naming a joint the source does not have is an error naming it and the source's joints."""
    have = {norm_name(n): n for n in source}
    m = match_joints(source, target, required=False)
    out: dict[str, tuple[str, ...]] = {}
    for t, name in enumerate(target):
        if m.src[t] is not None:
            continue
        given = (init_from or {}).get(name)
        if given:
            names = (given,) if isinstance(given, str) else tuple(given)
            unknown = [g for g in names if norm_name(g) not in have]
            if unknown:
                raise IterateError(
                    f"keypoints.init_from.{name}: the checkpoint has no joint {unknown[0]!r} "
                    f"(it has: {', '.join(source)})"
                )
            out[name] = tuple(have[norm_name(g)] for g in names)
            continue
        for group in INIT_APPROX.get(norm_name(name), ()):
            if all(g in have for g in group):
                out[name] = tuple(have[g] for g in group)
                break
    return out
