"""What labeling costs, as the loop sees it: the accounting `sync-labels` stores with each label version, and the
figures the round report, the timeline and `iterate status` show (annotator hours, corrections, what the
pre-annotations got right — per round, annotator, stratum, and picked vs random frames)."""

from __future__ import annotations

from statistics import median

import numpy as np

from annotation.sync import Account
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
from iterate.loop.settings import keypoint_spec
from iterate.selection.strategies import EXPLORE_TAG
from reports import cost
from reports.metrics import normalisers, person_box_diagonal

__all__ = ["accounting", "chunk_hours", "cost_data", "hours_by_time"]


def accounting(m: Manifest, ledger: Ledger) -> Account:
    """The per-joint accounting `sync-labels` stores with a label (reports/cost.py), in units of the frame's PCKh
    ``l``: measured on the label itself; a label without one (e.g. no head segment) uses its joints' box diagonal ×
    the ratio ``l`` / diagonal over the ledger's labels (measured once, when first needed)."""
    spec, names, tol = keypoint_spec(m), list(m.keypoints.names), m.cost.accept_tolerance
    ratio: list[float] = []

    def fallback() -> float:
        if not ratio:
            labs = [lab for _, lab in ledger.current_labels()]
            kp = np.array([lab.keypoints for lab in labs], np.float64).reshape(-1, len(names), 3)
            hb = np.array([lab.head_box or (np.nan,) * 4 for lab in labs], np.float64).reshape(-1, 4)
            own = normalisers(kp[..., :2], kp[..., 2], spec.normalizer, names, head_boxes=hb).lengths
            diag = person_box_diagonal(kp[..., :2], kp[..., 2])
            ok = np.isfinite(own) & (own > 0) & (diag > 0)
            ratio.append(float(np.median(own[ok] / diag[ok])) if ok.any() else np.nan)
        return ratio[0]

    def account(frame, keypoints: list, pre: list) -> dict | None:
        lab = np.asarray(keypoints, np.float64).reshape(1, len(names), 3)
        p = np.asarray(pre, np.float64).reshape(1, len(names), 3) if pre else None
        l = normalisers(lab[..., :2], lab[..., 2], spec.normalizer, names).lengths
        if not (np.isfinite(l[0]) and l[0] > 0):
            l = person_box_diagonal(lab[..., :2], lab[..., 2]) * fallback()
        kind, dist, vis = cost.joint_edits(p, lab, l, tol)
        return cost.edit_record(names, kind[0], dist[0], vis[0], tol, pre_annotated=p is not None)

    return account


def _times(rows) -> dict:
    secs = [lab.lead_time for _, lab, _ in rows if lab.lead_time is not None]
    return {
        "hours": round(sum(secs) / 3600, 3) if secs else None,
        "median_s": round(median(secs), 1) if secs else None,
        "timed": len(secs),
    }


def _group(rows) -> dict:
    """Figures of a group of label versions: frames, annotator time, joints per kind and per frame."""
    rec = [lab.edits for _, lab, _ in rows if lab.edits is not None]
    counts = cost.summarise_records(rec)
    counts["counted"] = counts.pop("frames")  # label versions with an accounting (pushed since ledger v5)
    out = {"frames": len(rows), **_times(rows), **counts}
    n = max(1, len(rec))
    for key in ("accepted", "moved", "added", "deleted", "corrections"):
        out[f"{key}_per_frame"] = round(out[key] / n, 2) if rec else None
    return out


def cost_data(m: Manifest, ledger: Ledger) -> dict:
    """Every Label Studio label version counted, round by round: for the report's "What this round cost"."""
    rows = ledger.effort_rows()
    rounds = {r.id: r for r in ledger.rounds()}
    by_round: dict = {}
    for row in rows:
        by_round.setdefault(row[2], []).append(row)
    out_rounds, cum = [], 0.0
    for rid in sorted(by_round, key=lambda r: (r is None, r or 0)):
        rs = by_round[rid]
        g = _group(rs)
        cum += g["hours"] or 0.0
        why = {fid: info.get("why", "") for fid, info in ledger.round_frames(rid)} if rid in rounds else {}
        explore = [r for r in rs if why.get(r[0].id) == EXPLORE_TAG]
        picked = [r for r in rs if why.get(r[0].id) not in (None, EXPLORE_TAG)]
        annot: dict = {}
        for r in rs:
            annot.setdefault(r[1].annotator or "(unknown)", []).append(r)
        strata: dict = {}
        for key in m.strata:
            groups: dict = {}
            for r in rs:
                groups.setdefault(str(r[1].attributes.get(key, "(not set)")), []).append(r)
            strata[key] = {v: _group(x) for v, x in sorted(groups.items())}
        item = {
            "round": rid,
            "chunk": rounds[rid].chunk if rid in rounds else None,
            **g,
            "cumulative_hours": round(cum, 3),
            "annotators": {a: _group(x) for a, x in sorted(annot.items())},
            "strata": strata,
            "picked": _group(picked) if picked else None,
            "explore": _group(explore) if explore else None,
        }
        pc, ec = item["picked"], item["explore"]
        if pc and ec and pc["corrections_per_frame"] is not None and ec["corrections_per_frame"]:
            item["picked_vs_explore_corrections"] = round(pc["corrections_per_frame"] / ec["corrections_per_frame"], 2)
        if pc and ec and pc["median_s"] and ec["median_s"]:
            item["picked_vs_explore_seconds"] = round(pc["median_s"] / ec["median_s"], 2)
        out_rounds.append(item)
    return {"tolerance": m.cost.accept_tolerance, "rounds": out_rounds, "hours": round(cum, 3)}


def hours_by_time(ledger: Ledger) -> list[tuple[float, float]]:
    """(created_at, cumulative annotator hours) after each timed label version: the timeline's hours."""
    out, cum = [], 0.0
    for _, lab, _ in ledger.effort_rows():
        if lab.lead_time is not None:
            cum += lab.lead_time / 3600
            out.append((lab.created_at, round(cum, 3)))
    return out


def chunk_hours(m: Manifest, ledger: Ledger) -> dict[int | None, float]:
    """Annotator hours so far per chunk (a label counts in the chunk its selection round was picked for; None: labels
    of tasks pushed outside a selection round)."""
    out: dict[int | None, float] = {}
    for r in cost_data(m, ledger)["rounds"]:
        if r["hours"] is not None:
            out[r["chunk"]] = round(out.get(r["chunk"], 0.0) + r["hours"], 3)
    return out
