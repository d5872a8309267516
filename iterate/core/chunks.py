"""The chunk plan: the manifest's D and fractions → per-chunk targets, filled in order by labels."""

from __future__ import annotations

from dataclasses import dataclass

from iterate.core.ledger import Ledger, Model
from iterate.core.manifest import Manifest


@dataclass(frozen=True)
class ChunkProgress:
    index: int  # 1-based
    fraction: float
    target: int
    labeled: int
    pending: int

    @property
    def done(self) -> bool:
        return self.labeled >= self.target


def training_frames(m: Manifest, ledger: Ledger) -> tuple[int, int]:
    """(labeled training frames that count toward D, frames of the ``train.replay`` source): the base's own data
    that replay mixes into fine-tunes is not part of the chunk plan."""
    replay = m.train.replay.source if m.train.replay else None
    ids = {f.id: f.source == replay for f, _ in ledger.current_labels(("pool", "train"))}
    n_replay = sum(ids.values())
    return len(ids) - n_replay, n_replay


def model_frames(model: Model) -> tuple[int, int]:
    """(the loop's labels, replayed frames) a recorded model trained on: its ``n_train`` counts both."""
    n_replay = int(model.metrics.get("replay_frames", 0))
    return model.n_train - n_replay, n_replay


def chunk_progress(m: Manifest, ledger: Ledger) -> list[ChunkProgress]:
    """Labeled training frames (pool + train splits, not the replay source) and pending tasks fill the chunks in
    order."""
    labeled = training_frames(m, ledger)[0]
    pending = len(ledger.pending_frame_ids())
    out = []
    for i, (frac, target) in enumerate(zip(m.chunks, m.chunk_targets()), 1):
        lab = min(labeled, target)
        pen = min(pending, target - lab)
        labeled -= lab
        pending -= pen
        out.append(ChunkProgress(i, frac, target, lab, pen))
    if labeled or pending:  # beyond D: shown on the last chunk
        last = out[-1]
        out[-1] = ChunkProgress(last.index, last.fraction, last.target, last.labeled + labeled, last.pending + pending)
    return out


def current_chunk(progress: list[ChunkProgress]) -> ChunkProgress:
    """The first chunk not yet filled by labels and pending tasks (the last one when all are)."""
    for c in progress:
        if c.labeled + c.pending < c.target:
            return c
    return progress[-1]


def labels_per_stratum(m: Manifest, ledger: Ledger) -> dict[str, dict[str, dict[str, int]]]:
    """{attribute: {value: {split: labeled frames}}}, values in manifest order, unknown ones as "other"."""
    labels = ledger.current_labels()
    out: dict = {}
    for key, allowed in m.strata.items():
        rows: dict[str, dict[str, int]] = {}
        for f, lab in labels:
            v = lab.attributes.get(key)
            v = "(not set)" if v is None else (v if not allowed or v in allowed else "other")
            rows.setdefault(v, {}).setdefault(f.split, 0)
            rows[v][f.split] += 1
        out[key] = {v: rows.get(v, {}) for v in [*allowed, *sorted(set(rows) - set(allowed))]}
    return out
