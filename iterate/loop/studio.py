"""Label Studio steps of the loop: the local server, the oracle annotator and `sync-labels`, each with the
manifest turned into :class:`annotation.settings.LabelingSetup` at the edge."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from annotation import server
from annotation.client import Studio
from annotation.oracle import OracleSummary
from annotation.oracle import autolabel as _autolabel
from annotation.push import frames_of_round, project_id
from annotation.review import review_project_id
from annotation.sync import SyncSummary, sync_labels
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
from iterate.loop.control import update_controls
from iterate.loop.cost import accounting
from iterate.loop.settings import label_attributes, labeling, studio_settings


def studio(m: Manifest) -> Studio:
    """A client for the manifest's Label Studio (token from the environment variable it names)."""
    return Studio.from_settings(studio_settings(m))


def start_server(m: Manifest, **kw) -> server.ServerState:
    return server.start(studio_settings(m), **kw)


def stop_server(m: Manifest) -> str:
    """``"stopped"``, ``"stale"`` (a pid file naming no server of this workspace, removed) or ``"none"``."""
    return server.stop(studio_settings(m))


def server_status(m: Manifest) -> server.ServerState:
    return server.status(studio_settings(m))


@dataclass
class SyncResult(SyncSummary):
    controls: list[dict] = field(default_factory=list)  # the in-loop control of each round a model selected
    review: SyncSummary | None = None  # the review project's tasks (`iterate audit --push`), when there is one
    audit: dict | None = None  # the audit of the labels this sync stored (`iterate audit` on just them), or None


def sync(m: Manifest, ledger: Ledger, *, full: bool = False, progress=None) -> SyncResult:
    """`iterate sync-labels`: finished annotations → validated label versions in the ledger; then the model that
    selected each round scores the round's new labels, picked vs random frames (:mod:`iterate.loop.control`). Labels
    without the strata the manifest derives from the keypoints get them as they are stored; each label version keeps
    the annotator's time and its per-joint accounting against the pushed pre-annotation (:mod:`iterate.loop.cost`)."""
    ledger.set_label_attributes(label_attributes(m))
    lab, st, acc = labeling(m), studio(m), accounting(m, ledger)
    review = None
    if review_project_id(lab, ledger) is not None:
        review = sync_labels(lab, ledger, st, full=full, progress=progress, account=acc, review=True)
        if project_id(lab, ledger) is None:  # reviews of imported labels only: no labeling project yet
            return SyncResult(review=review, audit=_audit_new(m, ledger, review.stored))
    s = sync_labels(lab, ledger, st, full=full, progress=progress, account=acc)
    stored = s.stored + (review.stored if review else [])
    return SyncResult(
        **asdict(s), controls=update_controls(m, ledger), review=review, audit=_audit_new(m, ledger, stored)
    )


def _audit_new(m: Manifest, ledger: Ledger, frame_ids: list[str]) -> dict | None:
    """The free out-of-sample check: the labels just pulled, audited by a model that never trained on them (the
    model that selected their round among them). None when nothing was stored or no model can audit."""
    from iterate.core.errors import IterateError
    from iterate.loop.audit import run_audit

    if not frame_ids:
        return None
    try:
        res = run_audit(m, ledger, only=set(frame_ids))
    except IterateError:
        return None
    flagged = len({sp.frame.id for sp in res.suspects})
    ids = sorted({sp.frame.id for sp in res.suspects})
    swaps = sorted({sp.frame.id for sp in res.suspects if sp.reason == "swap"})
    out = {"labels": res.frames, "flagged_frames": flagged, "per_reason": res.per_reason, "flagged": ids}
    return out | {"swap_flagged": swaps}


def autolabel(
    m: Manifest, ledger: Ledger, labels: Path, *, limit: int | None = None, seed: int = 0, corrupt: float = 0.0
) -> OracleSummary:
    """The oracle annotator: answer pending tasks from COCO labels, as the UI would, with a modelled lead time."""
    acc = accounting(m, ledger)
    return _autolabel(labeling(m), ledger, studio(m), labels, seed=seed, limit=limit, account=acc, corrupt=corrupt)


def round_frames(ledger: Ledger, round_id: int) -> list[str]:
    return frames_of_round(ledger, round_id)
