"""What labeling costs: per-joint edit accounting of an annotation against the pre-annotation it started from.

An annotator who opens a pre-annotated frame accepts the joints the model got right and moves the rest. Each joint
of a label is, against the pushed pre-annotation (both in image pixels):

* ``accepted``: both placed, within ``tolerance`` × the frame's PCKh normaliser ``l`` of each other;
* ``moved``: both placed, farther apart (the distance is kept, in units of ``l``);
* ``added``: placed in the label, not in the pre-annotation (the model lacks the joint, or no pre-annotation was
  pushed: then every labeled joint is added);
* ``deleted``: placed in the pre-annotation, left unlabeled;
* and, beside the position, ``visibility`` changed: the pre-annotation is pushed visible; a label marked occluded
  changed it.

*Corrections* are the joints an annotator had to touch: moved + added + deleted. The same function counts them for
a real Label Studio annotation (`sync-labels`) and for a simulated one (`iterate simulate`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ACCEPTED",
    "ADDED",
    "DELETED",
    "KINDS",
    "MOVED",
    "NONE",
    "corrections",
    "cost_section",
    "edit_record",
    "joint_edits",
    "summarise_records",
]

NONE, ACCEPTED, MOVED, ADDED, DELETED = 0, 1, 2, 3, 4
KINDS = {ACCEPTED: "accepted", MOVED: "moved", ADDED: "added", DELETED: "deleted"}


def joint_edits(
    pre: np.ndarray | None, label: np.ndarray, norm: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per joint of N frames: (kind (N, K) of NONE/ACCEPTED/MOVED/ADDED/DELETED, distance (N, K) in ``l`` where both
    are placed else NaN, visibility changed (N, K) bool).

    ``pre`` (N, K, 2 or 3) the pushed pre-annotation in pixels, NaN (or v = 0) where a joint was left unplaced;
    None: no pre-annotation at all. ``label`` (N, K, 3) x, y, v (v = 0 not placed, 1 occluded, 2 visible).
    ``norm`` (N,) PCKh ``l`` in pixels; a frame without one (NaN, ≤ 0) counts every joint placed in both as moved
    (no distance can say it was left)."""
    label = np.asarray(label, dtype=np.float64)
    n, k = label.shape[:2]
    lab = label[..., 2] > 0
    if pre is None:
        placed = np.zeros((n, k), bool)
        pxy = np.full((n, k, 2), np.nan)
    else:
        pre = np.asarray(pre, dtype=np.float64)
        pxy = pre[..., :2]
        placed = np.isfinite(pxy).all(-1)
        if pre.shape[-1] > 2:
            placed &= pre[..., 2] > 0
    l = np.asarray(norm, dtype=np.float64).reshape(n)
    l_ok = np.isfinite(l) & (l > 0)
    both = lab & placed
    d = np.linalg.norm(label[..., :2] - np.nan_to_num(pxy), axis=-1) / np.where(l_ok, l, 1.0)[:, None]
    d = np.where(both & l_ok[:, None], d, np.nan)
    kind = np.full((n, k), NONE, np.int8)
    kind[both] = MOVED
    kind[both & (d <= tolerance)] = ACCEPTED
    kind[lab & ~placed] = ADDED
    kind[~lab & placed] = DELETED
    vis_changed = both & (label[..., 2] == 1)
    return kind, d, vis_changed


def corrections(kind: np.ndarray) -> np.ndarray:
    """Joints touched per frame (N,): moved + added + deleted."""
    kind = np.asarray(kind)
    return ((kind == MOVED) | (kind == ADDED) | (kind == DELETED)).sum(-1)


def edit_record(
    names: list[str], kind: np.ndarray, dist: np.ndarray, vis: np.ndarray, tolerance: float, pre_annotated: bool
) -> dict:
    """One frame's accounting as stored with its label version (JSON): joint names per kind, moved distances."""
    out: dict = {"tolerance": tolerance, "pre_annotated": pre_annotated}
    for code, key in KINDS.items():
        out[key] = [names[j] for j in np.flatnonzero(kind == code)]
    out["moved_l"] = {names[j]: round(float(dist[j]), 3) for j in np.flatnonzero(kind == MOVED) if np.isfinite(dist[j])}
    out["visibility"] = [names[j] for j in np.flatnonzero(vis)]
    return out


def summarise_records(records: list[dict]) -> dict:
    """Counts over stored accounting records: frames, joints per kind, corrections, the share the pre-annotation got
    right (accepted / joints it placed that the label kept or moved)."""
    out = {"frames": len(records), "accepted": 0, "moved": 0, "added": 0, "deleted": 0, "visibility": 0}
    for r in records:
        for key in ("accepted", "moved", "added", "deleted", "visibility"):
            out[key] += len(r.get(key) or [])
    out["corrections"] = out["moved"] + out["added"] + out["deleted"]
    shown = out["accepted"] + out["moved"] + out["deleted"]
    out["pre_annotation_right"] = round(out["accepted"] / shown, 4) if shown else None
    return out


# -- the round report's section ----------------------------------------------------------------------------
def _h(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def _n(x, f: str = ".1f") -> str:
    return "–" if x is None else format(x, f)


def _share(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def _row(name: str, g: dict) -> str:
    return (
        f"| {name} | {g['frames']} | {_h(g['hours'])} | {_n(g['median_s'])} | {_n(g['accepted_per_frame'])} | "
        f"{_n(g['moved_per_frame'])} | {_n(g['added_per_frame'])} | {_n(g['deleted_per_frame'])} | "
        f"{_n(g['corrections_per_frame'])} | {_share(g['pre_annotation_right'])} |"
    )


_HEAD = [
    "| | frames | annotator h | median s / frame | accepted / frame | moved / frame | added / frame | deleted / frame "
    "| corrections / frame | pre-annotation right |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def cost_section(d: dict) -> list[str]:
    """ "What this round cost": the latest round with labels — by annotator, stratum, picked vs random frames — and
    every round so far with cumulative hours. ``d["cost"]`` as `iterate.loop.cost.cost_data` builds it."""
    c = d.get("cost") or {}
    rounds = c.get("rounds") or []
    if not rounds:
        return []
    last = rounds[-1]
    tol = c.get("tolerance")
    name = f"round {last['round']}" if last["round"] is not None else "labels pushed outside a round"
    L = [
        "## What this round cost",
        "",
        f"{name}: {last['frames']} frames labeled in Label Studio, **{_h(last['hours'])} annotator hours** "
        f"({_n(last['median_s'])} s a frame, median; {last['timed']} with a lead time); {_h(c.get('hours'))} hours "
        f"so far. A joint counts *accepted* when the annotator left it within {tol} × l of the pre-annotation, "
        "*moved* beyond that, *added* where none was pushed, *deleted* where the label has none; corrections = "
        "moved + added + deleted.",
        "",
    ]
    if last["counted"] < last["frames"]:
        L += [
            f"> {last['frames'] - last['counted']} of these labels have no accounting (their tasks were pushed "
            "before the ledger kept the pre-annotation, or adopted from the server): they count in hours only.",
            "",
        ]
    L += _round_table(last)
    if "picked_vs_explore_corrections" in last:
        L += _picked_vs_random(last)
    if len(rounds) > 1:
        L += _rounds_table(rounds)
    return L


def _round_table(last: dict) -> list[str]:
    """The round's costs: all its frames, picked and random ones, per annotator and per stratum value."""
    L = _HEAD + [_row("all", last)]
    pc, ec = last.get("picked"), last.get("explore")
    if pc:
        L.append(_row("picked by selection", pc))
    if ec:
        L.append(_row("random (explore share)", ec))
    for who, g in (last.get("annotators") or {}).items():
        L.append(_row(f"annotator {who}", g))
    for key, vals in (last.get("strata") or {}).items():
        for v, g in vals.items():
            L.append(_row(f"{key}={v}", g))
    L.append("")
    return L


def _picked_vs_random(last: dict) -> list[str]:
    r = last["picked_vs_explore_corrections"]
    t = last.get("picked_vs_explore_seconds")
    verdict = (
        "the hard frames cost more; weigh that against what they teach (the control above)"
        if r > 1.05
        else "they cost less than random ones"
        if r < 0.95
        else "about the same: picking hard frames costs no extra corrections here"
    )
    return [
        f"The frames selection picked cost **{r:.2f}×** the corrections of the random ones"
        + (f" and {t:.2f}× their median time" if t else "")
        + f": {verdict}.",
        "",
    ]


def _rounds_table(rounds: list[dict]) -> list[str]:
    L = [
        "| round | frames | annotator h | cumulative h | corrections / frame | pre-annotation right |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        L.append(
            f"| {r['round'] if r['round'] is not None else '–'} | {r['frames']} | {_h(r['hours'])} | "
            f"{_h(r['cumulative_hours'])} | {_n(r['corrections_per_frame'])} | {_share(r['pre_annotation_right'])} |"
        )
    L.append("")
    return L
