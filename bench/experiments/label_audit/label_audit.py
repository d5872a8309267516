"""The label audit (issue 33) on real labels with known errors injected: does `iterate audit` find them?

Real LSPET labels the audit's model never trained on (the shipped base ``model/weights/lspet_w18s_128.pt``
trained on im00001–05900; these are im07001–08000) are ingested as a val split, with, on disjoint frames chosen
by a seeded draw: ``--swap`` of the frames with one limb's left/right labels exchanged (an arm or a leg, every
pair of it labeled), ``--move`` with one labeled joint moved 0.5–2 ``l`` in a random direction (kept inside the
image), ``--remove`` with one labeled joint removed (v = 0). Then :func:`iterate.loop.audit.run_audit` runs as
the command does.

Per error type: precision and recall at the manifest's default thresholds (``swap``: frames with a swap flag vs
the swapped frames; ``moved``: (frame, joint) disagreement or implausible flags vs the moved joints; ``removed``:
missing flags vs the removed joints), average precision over the unthresholded score of that reason, and how many
frames a reviewer opens, most severe first, to catch 90 % of the injected frames. Also the flags on frames with
nothing injected (the real labels' own noise, or false alarms) and a few of them. The fine-tune payoff of issue
33's item 4 (clean vs noisy vs fixed labels) is not measured here.

    python bench/experiments/label_audit/label_audit.py [--first 7001 --last 8000] [--seed 0] [--smoke]
Last lines: label_audit_<type>_precision / _recall / _ap / _chance_ap (a random ranking's AP), label_audit_frames_for_90, label_audit_clean_flagged
Goals (issue 33): swaps recall ≥ 0.95 at precision ≥ 0.9; moved joints recall ≥ 0.8 at precision ≥ 0.8.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.audit import run_audit, thresholds
from iterate.loop.ingest import ingest
from iterate.selection.audit import Thresholds

import _common
from _common import LSPET, REPO, write_result

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"
LIMBS = {
    "arm": (("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist")),
    "leg": (("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle")),
}


def head_l(kp: np.ndarray, names: list[str]) -> float:
    a, b = kp[names.index("neck")], kp[names.index("head_top")]
    return float(np.hypot(*(a[:2] - b[:2]))) if a[2] > 0 and b[2] > 0 else 0.0


def inject(coco: dict, names: list[str], rates: dict[str, float], seed: int) -> dict[int, dict]:
    """Change ``coco``'s annotations in place; → image id → {"type", "joints"} of what was injected."""
    rng = np.random.default_rng(seed)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
    ids = sorted(anns)
    order = list(rng.permutation(ids))
    truth: dict[int, dict] = {}
    for kind in ("swap", "move", "remove"):
        want = int(round(rates[kind] * len(ids)))
        while want and order:
            iid = order.pop()
            kp = np.asarray(anns[iid]["keypoints"], np.float64).reshape(-1, 3)
            lab = [j for j in range(len(names)) if kp[j, 2] > 0]
            if kind == "swap":
                limbs = [n for n, pairs in LIMBS.items() if all(kp[names.index(x), 2] > 0 for p in pairs for x in p)]
                if not limbs:
                    continue
                limb = limbs[rng.integers(len(limbs))]
                for a, b in LIMBS[limb]:
                    ia, ib = names.index(a), names.index(b)
                    kp[[ia, ib]] = kp[[ib, ia]]
                truth[iid] = {"type": "swap", "joints": [x for p in LIMBS[limb] for x in p], "limb": limb}
            elif kind == "move":
                ll = head_l(kp, names)
                if ll <= 0 or not lab:
                    continue
                j = lab[rng.integers(len(lab))]
                w, h = sizes[iid]
                for _ in range(20):
                    r, ang = rng.uniform(0.5, 2.0) * ll, rng.uniform(0, 2 * np.pi)
                    x, y = kp[j, 0] + r * np.cos(ang), kp[j, 1] + r * np.sin(ang)
                    if 0 <= x < w and 0 <= y < h:
                        break
                else:
                    continue
                kp[j, :2] = x, y
                truth[iid] = {"type": "move", "joints": [names[j]], "by_l": round(r / ll, 3)}
            else:
                if not lab:
                    continue
                j = lab[rng.integers(len(lab))]
                kp[j] = 0
                truth[iid] = {"type": "remove", "joints": [names[j]]}
            anns[iid]["keypoints"] = [round(float(v), 2) for v in kp.ravel()]
            anns[iid]["num_keypoints"] = int((kp[:, 2] > 0).sum())
            want -= 1
    return truth


def audit_project(coco: dict, work: Path, split: str, project: str):
    """``coco``'s labels as one ``split`` source of a project on the demo manifest with the shipped base, ingested
    → its manifest (the workspace under ``work``)."""
    (work / "audit.coco.json").write_text(json.dumps(coco))
    md = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    md["train"].pop("replay", None)
    src = {"name": "audit", "kind": "coco", "path": str(work / "audit.coco.json"), "images": str(LSPET), "split": split}
    md |= {"project": project, "workspace": str(work / "ws"), "sources": [src]}
    md["model"]["base"] = str(BASE)
    (work / "m.yaml").write_text(yaml.safe_dump(md, sort_keys=False))
    m = load_manifest(work / "m.yaml")
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return m


def average_precision(scores: np.ndarray, positive: np.ndarray, n_positive: int) -> float:
    """AP of a ranking by ``scores`` (higher first) whose true items are ``positive``, out of ``n_positive``."""
    if not n_positive:
        return float("nan")
    o = np.argsort(-scores, kind="stable")
    hits = positive[o].astype(float)
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / n_positive)


def default_severity(s, t: Thresholds) -> float:
    """A flag of the run at near-zero thresholds, scored as the defaults would: its score over its default
    threshold (a bone's z over ``implausible_z``; a coincidence's severity needs no threshold)."""
    default = {"disagreement": t.disagreement, "swap": t.swap, "missing": t.missing_conf}
    if s.reason in default:
        return s.score / default[s.reason]
    bone = s.severity > s.score  # a bone flag: its z over the near-zero threshold; a coincidence: severity = score
    return s.score / t.implausible_z if bone else s.severity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", type=int, default=7001)
    ap.add_argument("--last", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--swap", type=float, default=0.05)
    ap.add_argument("--move", type=float, default=0.05)
    ap.add_argument("--remove", type=float, default=0.02)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (its prediction cache) for a rerun")
    ap.add_argument("--smoke", action="store_true", help="60 frames, 10 %% of each error: a test runs it")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.last, args.swap, args.move, args.remove = args.first + 59, 0.1, 0.1, 0.1
    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    keep = set(range(args.first, args.last + 1))
    coco = {
        "images": [i for i in coco["images"] if i["id"] in keep],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        "categories": coco["categories"],
    }
    names = [c for c in coco["categories"][0]["keypoints"]]
    truth = inject(coco, names, {"swap": args.swap, "move": args.move, "remove": args.remove}, args.seed)
    with tempfile.TemporaryDirectory() as td:
        tmp = args.keep or Path(td)
        tmp.mkdir(parents=True, exist_ok=True)
        m = audit_project(coco, tmp, "val", "label-audit-bench")
        with Ledger(m.workspace_dir) as led:
            res = run_audit(m, led)
            low = Thresholds(1e-9, 1e-9, 1e-9, m.audit.coincident, 1e-9, m.audit.min_bodies)
            every = run_audit(m, led, t=low)
    t = thresholds(m)
    image_id = {f"{i['id']}": i["id"] for i in coco["images"]}
    by_file = {Path(i["file_name"]).name: i["id"] for i in coco["images"]}

    def iid(s) -> int:
        return by_file.get(Path(s.frame.path).name, image_id.get(s.frame.id, -1))

    frames = res.frames
    fig: dict = {
        "frames": frames,
        "injected": {k: sum(v["type"] == k for v in truth.values()) for k in ("swap", "move", "remove")},
    }
    details: dict = {"thresholds": t.__dict__, "truth": {str(k): v for k, v in truth.items()}}
    # per type at the defaults
    reason_of = {"swap": ("swap",), "move": ("disagreement", "implausible"), "remove": ("missing",)}
    for kind, reasons in reason_of.items():
        pos = {(i, j) for i, v in truth.items() if v["type"] == kind for j in v["joints"]}
        pos_frames: set = set()
        if kind == "swap":
            pos_frames = {i for i, v in truth.items() if v["type"] == "swap"}
            got = {iid(s) for s in res.suspects if s.reason == "swap"}
            tp = len(got & pos_frames)
            prec = tp / len(got) if got else float("nan")
            rec = tp / len(pos_frames) if pos_frames else float("nan")
            best: dict[int, float] = {}
            for s in every.suspects:
                if s.reason == "swap":
                    best[iid(s)] = max(best.get(iid(s), 0), s.score)
            items = list(best)
            apv = average_precision(
                np.array([best[i] for i in items]), np.array([i in pos_frames for i in items]), len(pos_frames)
            )
        else:
            got = {(iid(s), j) for s in res.suspects if s.reason in reasons for j in s.joints}
            tp = len(got & pos)
            prec = tp / len(got) if got else float("nan")
            rec = tp / len(pos) if pos else float("nan")
            best = {}
            for s in every.suspects:
                if s.reason == reasons[0]:
                    for j in s.joints:
                        best[(iid(s), j)] = max(best.get((iid(s), j), 0), s.score)
            items = list(best)
            apv = average_precision(np.array([best[i] for i in items]), np.array([i in pos for i in items]), len(pos))
            allv = np.array([best[i] for i in items])
            details[f"{kind}_scores"] = {
                "injected": sorted(round(best.get(i, 0.0), 3) for i in pos),
                "all_percentiles_50_90_99": np.percentile(allv, [50, 90, 99]).round(3).tolist() if len(allv) else [],
            }
        fig[f"label_audit_{kind}_precision"] = round(prec, 3)
        fig[f"label_audit_{kind}_recall"] = round(rec, 3)
        fig[f"label_audit_{kind}_ap"] = round(apv, 3)
        fig[f"label_audit_{kind}_chance_ap"] = round(
            sum(i in (pos_frames if kind == "swap" else pos) for i in items) / max(len(items), 1), 4
        )
    # frames to open, most severe first (every score over its default threshold), to catch 90 % of the injected
    sev: dict[int, float] = {}
    for s in every.suspects:
        sev[iid(s)] = max(sev.get(iid(s), 0), default_severity(s, t))
    order = sorted(sev, key=lambda i: -sev[i])
    need = int(np.ceil(0.9 * len(truth)))
    caught, opened = 0, None
    for n_open, i in enumerate(order, 1):
        caught += i in truth
        if caught >= need:
            opened = n_open
            break
    fig["label_audit_frames_for_90"] = opened
    fig["label_audit_frames_flagged"] = len({iid(s) for s in res.suspects})
    clean = [s for s in res.suspects if iid(s) not in truth]
    fig["label_audit_clean_flagged"] = len({iid(s) for s in clean})
    fig["label_audit_clean_flags_by_reason"] = {
        r: sum(s.reason == r for s in clean) for r in reason_of["move"] + ("swap", "missing")
    }
    details["clean_examples"] = [s.to_json() for s in clean[:10]]
    details["missed"] = [{"image": i, **v} for i, v in truth.items() if i not in {iid(s) for s in res.suspects}][:30]
    name = "label_audit_smoke" if args.smoke else "label_audit"
    write_result(name, fig, details)


if __name__ == "__main__":
    main()
