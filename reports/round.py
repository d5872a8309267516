"""A round's "why these frames": ``round-NN.csv`` (every picked frame with its scores and predicted strata),
``round-NN.md`` (what the frames were picked for, their predicted strata, the pool's score distributions against
the picked frames', a contact sheet of the first frames) and its PNGs. Plain data in: `iterate.loop.select` gives
the picked table, the notes and the pool's scores; nothing here reads the ledger or a model."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iterate.core.images import read_image

FIRST_COLUMNS = ("rank", "frame_id", "path", "why")  # the CSV's first columns, in this order; the rest follow


@dataclass
class RoundPicks:
    """What one round picked and why."""

    round_id: int
    strategy: str
    cold_start: bool  # no model yet: diversity over image features
    table: list[dict]  # one row per picked frame in pick order: rank, frame_id, path, why, its scores, pred_<key>
    notes: list[str] = field(default_factory=list)
    scored_by: str | None = None  # the model and its scoring path; None on a cold start or for random
    pool_scores: dict[str, np.ndarray] | None = None  # each plotted score over the whole pool (None: not scored)
    picked_rows: list[int] = field(default_factory=list)  # the picked frames' rows of ``pool_scores``


def write_round(d: Path, picks: RoundPicks) -> tuple[Path, Path]:
    """``d``/round-NN.csv, .md, -scores.png (when scored) and -thumbs.png → (the CSV, the Markdown)."""
    d.mkdir(parents=True, exist_ok=True)
    stem = f"round-{picks.round_id:02d}"
    csv_path = d / f"{stem}.csv"
    _write_csv(csv_path, picks.table)
    L = _why_lines(picks)
    if picks.pool_scores is not None:
        png = d / f"{stem}-scores.png"
        _plot_scores(picks.pool_scores, picks.picked_rows, png)
        L += [f"![score distributions]({png.name})", ""]
    thumbs = d / f"{stem}-thumbs.png"
    _thumbs([r["path"] for r in picks.table[:24]], thumbs)
    L += [f"![first frames]({thumbs.name})", "", f"Every score: `{csv_path.name}`.", ""]
    md = d / f"{stem}.md"
    md.write_text("\n".join(L))
    return csv_path, md


def _write_csv(path: Path, table: list[dict]) -> None:
    cols = sorted(
        {k for r in table for k in r},
        key=lambda k: FIRST_COLUMNS.index(k) if k in FIRST_COLUMNS else 10,
    )
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(table)


def _why_lines(picks: RoundPicks) -> list[str]:
    """The Markdown's head: the strategy, who scored, the notes, and the frames counted by why and by predicted
    stratum."""
    L = [
        f"# Why these frames — round {picks.round_id}",
        "",
        f"{len(picks.table)} frames by strategy **{picks.strategy}**"
        + (" (cold start: no model yet, diversity over image features)" if picks.cold_start else "")
        + ".",
        "",
    ]
    if picks.scored_by is not None:
        L += [f"Scored by {picks.scored_by}.", ""]
    for n in picks.notes:
        L.append(f"> {n}")
    if picks.notes:
        L.append("")
    whys = _count(r["why"] for r in picks.table)
    L += (
        ["| picked because | frames |", "|---|---:|"]
        + [f"| {k} | {v} |" for k, v in sorted(whys.items(), key=lambda kv: -kv[1])]
        + [""]
    )
    pred_keys = sorted({k for r in picks.table for k in r if k.startswith("pred_")})
    for k in pred_keys:
        cnt = _count(r[k] for r in picks.table)
        L += (
            [f"| predicted {k[5:]} | frames |", "|---|---:|"]
            + [f"| {v} | {n} |" for v, n in sorted(cnt.items())]
            + [""]
        )
    return L


def _count(xs) -> dict:
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def _plot_scores(scores: dict[str, np.ndarray], rows: list[int], path: Path) -> None:
    """The pool's distribution of each score (the first three) against the picked frames'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), dpi=100)
    for ax, name in zip(axes, scores):
        v = scores[name]
        ax.hist(v, bins=30, alpha=0.5, label="pool", density=True)
        ax.hist(v[rows], bins=30, alpha=0.6, label="selected", density=True)
        ax.set_title(name, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _thumbs(paths: list[str], out: Path, cell: int = 96, cols: int = 8) -> None:
    """A contact sheet of ``paths`` (an unreadable image leaves its cell white)."""
    import cv2

    if not paths:
        return
    rows = (len(paths) + cols - 1) // cols
    sheet = np.full((rows * cell, cols * cell, 3), 255, np.uint8)
    for i, p in enumerate(paths):
        img, _ = read_image(p)
        if img is None:
            continue
        s = cell / max(img.shape[:2])
        img = cv2.resize(
            img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))), interpolation=cv2.INTER_AREA
        )
        r, c = divmod(i, cols)
        sheet[r * cell : r * cell + img.shape[0], c * cell : c * cell + img.shape[1]] = img
    cv2.imwrite(str(out), sheet)
