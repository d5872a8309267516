"""The round's gap report as Markdown + a JSON twin + PNG plots, from data it is given.

The JSON twin (`round-NN.json`) holds every table; the Markdown is rendered from it, so an older round is
re-rendered exactly. `focus.json` (the newest "next chunk focus") is what `iterate select` reads; `latest.md`
links the newest report. Gathering the data (the ledger, the checkpoint, the pool) is the loop's job
(``iterate.loop.report``); nothing here reads the ledger or a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from iterate.core.errors import IterateError
from iterate.core.images import read_image
from iterate.core.metric_keys import (
    MEAN_SMS,
    MEAN_SMS01,
    PCKH,
    PCKH01,
    PCKH05,
    ci_key,
    is_key,
    metric_key,
    split_key,
    upgrade,
)
from iterate.core.schema import KeypointSpec
from reports.control import MIN_EXPLORED, too_few_random
from reports.cost import cost_section
from reports.metrics import normalisers, pck_hits

# the timeline's columns: each model's val figures from training, its test figures from its report
VAL01, VAL05, VAL_SMS01 = (split_key("val", k) for k in (PCKH01, PCKH05, MEAN_SMS01))
TEST01, TEST05 = (split_key("test", k) for k in (PCKH01, PCKH05))
OVERFIT = split_key("overfit", PCKH01)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plot_timeline(tl: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    x = [t["labels"] for t in tl]
    for key, label, ls in (
        (VAL01, "val PCKh@0.1", "-"),
        (VAL05, "val PCKh@0.5", "-"),
        (VAL_SMS01, "val MeanSmS@0.1", "-"),
        (OVERFIT, "overfit (train − val PCKh@0.1)", "-"),
        (TEST01, "test PCKh@0.1", "--"),
        (TEST05, "test PCKh@0.5", "--"),
    ):
        y = [t.get(key) if t.get(key) is not None else np.nan for t in tl]
        if not np.isnan(y).all():
            ax.plot(x, y, marker="o", ls=ls, label=label)
    ax.set_xlabel("labeled training frames")
    ax.set_ylabel("%")
    ax.set_title("development timeline")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_joints(per_joint: dict, overall: float, path: Path, alpha: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_joint)
    vals = [per_joint[n] if per_joint[n] is not None else 0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=100)
    ax.bar(range(len(names)), vals, color=["#c44" if v < overall else "#4a4" for v in vals])
    ax.axhline(overall, color="k", lw=1, ls="--", label=f"overall {overall:.1f} %")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"PCKh@{alpha} %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw(img: np.ndarray, kps: np.ndarray, vis: np.ndarray, edges: list[tuple[int, int]], color) -> None:
    for a, b in edges:
        if vis[a] and vis[b]:
            cv2.line(img, tuple(int(v) for v in kps[a]), tuple(int(v) for v in kps[b]), color, 1, cv2.LINE_AA)
    for j in range(len(kps)):
        if vis[j]:
            cv2.circle(img, tuple(int(v) for v in kps[j]), 2, color, -1, cv2.LINE_AA)


def contact_sheet(
    spec: KeypointSpec,
    frames: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, str]],
    path: Path,
    what: str = "worst val frames",
) -> str | None:
    """frames: (image path, gt (K,2), vis (K,), pred (K,2), caption) → a grid PNG (labels green, model red).
    → None when written, else why not (no frame could be read, the PNG could not be written)."""
    edges = [(spec.index(a), spec.index(b)) for a, b in spec.skeleton]
    cell, cols = 200, 4
    rows = max(1, (len(frames) + cols - 1) // cols)
    sheet = np.full((rows * (cell + 18), cols * cell, 3), 255, np.uint8)
    drawn = 0
    for i, (p, gt, vis, pred, cap) in enumerate(frames):
        img, _ = read_image(p)
        if img is None:
            continue
        drawn += 1
        pred = np.nan_to_num(pred, nan=-1e4)  # a joint the model does not predict is drawn off the picture
        s = cell / max(img.shape[:2])
        img = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        _draw(img, (gt + 0.5) * s - 0.5, vis > 0, edges, (0, 200, 0))
        _draw(img, (pred + 0.5) * s - 0.5, np.ones(len(pred), bool), edges, (0, 0, 230))
        r, c = divmod(i, cols)
        y0, x0 = r * (cell + 18), c * cell
        sheet[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
        cv2.putText(sheet, cap[:32], (x0 + 2, y0 + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if not drawn:
        return f"none of the {len(frames)} {what} could be read"
    try:
        ok = cv2.imwrite(str(path), sheet)
    except cv2.error as e:
        ok, err = False, str(e).strip().splitlines()[-1]
    else:
        err = "OpenCV could not write it"
    return None if ok else f"{path.name} could not be written ({err})"


def rerender(out_dir: Path, round_no: int) -> Path:
    """Render an older round's Markdown again from its JSON twin."""
    js = out_dir / f"round-{round_no:02d}.json"
    if not js.is_file():
        raise IterateError(
            f"no report for round {round_no} (have: "
            + ", ".join(sorted(p.stem for p in out_dir.glob("round-*.json")))
            + ")"
        )
    md = out_dir / f"round-{round_no:02d}.md"
    _atomic_write(md, render(upgrade(json.loads(js.read_text()))))
    return md


def write_round(out_dir: Path, data: dict) -> Path:
    """Write the round's JSON twin, its Markdown, ``focus.json`` (when there is a focus) and ``latest.md``."""
    stem = f"round-{data['round']:02d}"
    _atomic_write(out_dir / f"{stem}.json", json.dumps(data, indent=1, default=float))
    md = out_dir / f"{stem}.md"
    _atomic_write(md, render(data))
    if data.get("focus"):
        _atomic_write(
            out_dir / "focus.json",
            json.dumps({"round": data["round"], "model_id": data["model"]["id"], **data["focus"]}, indent=1),
        )
    latest = out_dir / "latest.md"
    tmp = out_dir / ".latest.md.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(md.name)
    os.replace(tmp, latest)
    return md


def summary(data: dict) -> dict:
    """The figures the ledger keeps per report (val, and test when there is one): every metric key, the frames,
    and the report's α."""

    def figures(block: dict) -> dict:
        return {k: v for k, v in block.items() if is_key(k) or k in ("frames", "frames_fallback")}

    out = {"alpha": data.get("alpha", 0.1), **figures(data.get("val") or {})}
    if data.get("test"):
        out["test"] = figures(data["test"])
    return out


def frame_scores(
    spec: KeypointSpec, pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, head_boxes: np.ndarray, alpha: float
) -> np.ndarray:
    """Each frame's share of labeled joints within ``alpha`` × its normaliser (inf where it has none)."""
    norm = normalisers(gt, vis, spec.normalizer, list(spec.names), head_boxes).lengths
    out = np.full(len(gt), np.inf)
    ok = norm > 0
    if ok.any():
        hits = pck_hits(pred[ok], gt[ok], vis[ok], norm[ok], alpha)
        out[ok] = np.nanmean(np.where(np.isnan(hits), np.nan, hits), axis=1)
    return out


def worst_frames(focus: dict, scores: np.ndarray, attrs: list[dict], per_stratum: int = 4) -> list[tuple[int, str]]:
    """The worst-scored frames of the two weakest focus strata: (frame index, caption); empty without such a
    stratum (no strata, none set on val, or no frame of them scored): see :func:`worst_overall`."""
    weak = [i for i in focus["items"] if i["gap"] > 0][:2] or focus["items"][:2]
    chosen = []
    for it in weak:
        idx = [j for j in np.argsort(scores) if attrs[j].get(it["key"]) == it["value"] and np.isfinite(scores[j])]
        chosen += [(int(j), f"{it['key']}={it['value']} {100 * scores[j]:.0f}%") for j in idx[:per_stratum]]
    return chosen


def worst_overall(scores: np.ndarray, n: int = 8) -> list[tuple[int, str]]:
    """The ``n`` worst-scored frames of the split, whatever their strata: (frame index, caption)."""
    idx = [j for j in np.argsort(scores) if np.isfinite(scores[j])]
    return [(int(j), f"{100 * scores[j]:.0f}%") for j in idx[:n]]


# -- Markdown ---------------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def training_time(seconds: float | None, cap_s: float | None = None, epochs: int | None = None) -> str:
    """The wall time a retrain actually took, with its cap (`--minutes`) when it had one: "27 s of training (cap
    3.0 min)". The cap is never shown as the time spent."""
    cap = f"cap {cap_s / 60:.1f} min" if cap_s else None
    if seconds is None:
        return f"{epochs if epochs is not None else '?'} epochs" + (f" ({cap})" if cap else "")
    return f"{duration(seconds)} of training" + (f" ({cap})" if cap else "")


def _length(cfg: dict, metrics: dict | None = None) -> str:
    m = metrics or {}
    ep = m.get("epochs")
    spent = training_time(m.get("seconds"), cfg.get("time_limit_s"), ep if ep is not None else cfg.get("epochs"))
    return spent + (f", {ep} epoch(s), {m['steps']} steps" if ep is not None and m.get("steps") is not None else "")


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _gap(x) -> str:
    return "–" if x is None else f"{x:+.1f}"


def render(d: dict) -> str:
    """The report's Markdown, section by section, from its JSON twin."""
    a = d.get("alpha", 0.1)
    data = d["data"]
    L = [
        f"# {d['project']}: round {d['round']} report",
        "",
        f"Written {d['created_at']}. Chunk {data['current_chunk']} of {len(data['chunks'])} is current; "
        f"{data['labels_train']} labeled training frames so far"
        + (
            f" (and {data['labels_replay']} of the base's own, replayed in fine-tunes)."
            if data.get("labels_replay")
            else "."
        ),
        "",
    ]
    for w in d.get("warnings") or []:
        L += [f"> **Warning:** {w}.", ""]
    model = d.get("model")
    if model is None:
        L += ["**No model yet.** Run `iterate retrain` once labels exist; the data side is shown below.", ""]
    else:
        L += _model_line(model)
        L += _summary_section(d, a)
        L += _base_section(d)
        if d.get("val"):
            L += _val_sections(d, a)
            L += _people_val_section(d, a)
        elif d.get("notes"):
            L += [f"> {note}" for note in d["notes"]] + [""]
    L += _control_section(d)
    L += cost_section(d)
    L += _followup_section(d)
    L += _timeline_section(d)
    L += _focus_section(d)
    L += _worst_section(d)
    L += _audit_section(d)
    L += _data_section(data)
    return "\n".join(L) + "\n"


def _replayed(model: dict) -> str:
    m = model.get("metrics") or {}
    if not m.get("replay_frames"):
        return ""
    return f" ({m['replay_frames']} of them the base's own, drawn as {100 * m.get('replay_fraction', 0):.0f} % of each epoch)"


def _trained_on(model: dict) -> str:
    """The frames a model trained on and the dataset version its retrain recorded: "dataset v7: 412 frames" (a model
    from before dataset versions: "412 frames")."""
    ds = model.get("dataset")
    return f"dataset v{ds['version']}: {model['n_train']} frames" if ds else f"{model['n_train']} frames"


def _version_note(model: dict) -> str:
    ds = model.get("dataset")
    if not ds:
        return ""
    return (
        f" (v{ds['version']}, hash `{ds['hash'][:12]}`, holds the {ds['frames']} labeled frames of every split; "
        f"`iterate export --version {ds['version']}` writes them out)"
    )


def _model_line(model: dict) -> list[str]:
    cfg = model.get("config", {})
    tie = (model.get("metrics") or {}).get("best_pick")
    return [
        f"Model #{model['id']} (`{model['path']}`), trained on {_trained_on(model)}{_replayed(model)}{_version_note(model)}: "
        f"{cfg.get('backbone', '?')} {cfg.get('input_size', '?')}² → {cfg.get('heatmap_size', '?')}² heatmaps, "
        f"{_length(cfg, model.get('metrics'))}, batch {cfg.get('batch_size', '?')}, lr {cfg.get('lr', '?')}, "
        f"freeze {cfg.get('freeze', '?')}, from `{cfg.get('init') or 'scratch'}`.",
        "",
        *([f"> {tie[0].upper()}{tie[1:]}.", ""] if tie else []),
    ] + _tracking_line(model.get("tracking"))


def _tracking_line(t: dict | None) -> list[str]:
    if not t:
        return []
    return [
        f"Tracked as {t.get('backend', 'MLflow')} run `{t['run_id']}` (experiment `{t['experiment']}`, store `{t['store']}`); this report's "
        "figures and files are logged to it.",
        "",
    ]


def _summary_section(d: dict, a: float) -> list[str]:
    p, sm = metric_key(PCKH, a), metric_key(MEAN_SMS, a)
    v, t = d.get("val"), d.get("test")
    if not (v or t):
        return []
    mt = d["model"].get("metrics", {})
    L = [
        "## Summary",
        "",
        f"| split | PCKh@{a} [95 %] | PCKh@0.5 [95 %] | MeanSmS@{a} | height error (median) | frames "
        "| on fallback normaliser | not scored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("val", v), ("test", t)):
        if r:
            L.append(
                f"| {name} | {_pct(r[p])} % [{_pct(r[ci_key(p)][0])}, {_pct(r[ci_key(p)][1])}] | "
                f"{_pct(r[PCKH05])} % [{_pct(r[ci_key(PCKH05)][0])}, {_pct(r[ci_key(PCKH05)][1])}] | "
                f"{_pct(r[sm])} % | {_pct(r['height_err_pct'])} % | {r['frames']} | "
                f"{r.get('frames_fallback', 0)} | {r.get('frames_unscored', 0)} |"
            )
    nm = (v or t).get("normaliser") or {}
    L += [
        "",
        f"Predictions: the checkpoint's own inference path ({d.get('inference', '?')}), exactly what "
        f"`iterate predict` writes. PCKh normaliser: {nm.get('kind', '?')}"
        + (
            f"; frames without one use the labeled joints' box diagonal × {nm['fallback_ratio']:.3f}"
            if nm.get("fallback_ratio")
            else ""
        )
        + ". MeanSmS = mean of the height joints' per-joint PCKh. Intervals: 95 % bootstrap over frames.",
        "",
    ]
    if t:
        L += [f"> test: {note}" for note in t.get("notes", [])] + [""]
    L += [
        f"Overfit (train − val PCKh@0.1): {_gap(mt.get(OVERFIT))} pts. The val split picks the best "
        "checkpoint and the tables below steer the next chunk, so its figures lean optimistic; the test "
        "split is used for nothing else.",
        "",
    ]
    return L


def _base_section(d: dict) -> list[str]:
    """This model against the manifest's base checkpoint, per stratum (PCKh@0.5): forgetting shows as a loss on the
    strata the base knew."""
    b = d.get("base")
    now = (b.get("now") or d.get(b["split"])) if b else None
    if not b or not now:
        return []
    L = [
        "## Against the base model",
        "",
        f"The base (`{b['path']}`) and this model on the same {b['split']} frames, PCKh@0.5 [95 %]. A fine-tune should "
        "keep what the base knew (no large loss on its strata) while the new strata rise.",
        "",
    ]
    if b.get("joints"):
        L += [
            f"> The base has another joint set: both models are scored here only on the joints it predicts, "
            f"{b['joints']}; the other tables score this model on every joint.",
            "",
        ]
    L += [
        "| stratum | frames | base | this model | Δ |",
        "|---|---:|---:|---:|---:|",
        f"| all | {now['frames']} | {_pct(b[PCKH05])} [{_pct(b[ci_key(PCKH05)][0])}, {_pct(b[ci_key(PCKH05)][1])}] | "
        f"{_pct(now[PCKH05])} [{_pct(now[ci_key(PCKH05)][0])}, {_pct(now[ci_key(PCKH05)][1])}] | "
        f"{_gap(_delta(now[PCKH05], b[PCKH05]))} |",
    ]
    for key, rows in now["strata"].items():
        for v, r in rows.items():
            br = b["strata"].get(key, {}).get(v)
            if br:
                L.append(
                    f"| {key}={v} | {r['frames']} | {_pct(br[PCKH05])} | {_pct(r[PCKH05])} | "
                    f"{_gap(_delta(r[PCKH05], br[PCKH05]))} |"
                )
    return L + [""]


def _delta(a, b):
    return None if a is None or b is None else a - b


def _val_sections(d: dict, a: float) -> list[str]:
    p, sm = metric_key(PCKH, a), metric_key(MEAN_SMS, a)
    v = d["val"]
    L = [f"> val: {note}" for note in v.get("notes", [])] + [""]
    L += [f"## Per joint (PCKh@{a})", "", "| joint | PCKh | gap to overall | labeled |", "|---|---:|---:|---:|"]
    for j, val in v["per_joint"].items():
        g = None if val is None or v[p] is None else val - v[p]
        L.append(f"| {j} | {_pct(val)} | {_gap(g)} | {v['per_joint_count'][j]} |")
    L.append("")
    if d.get("plots", {}).get("joints"):
        L += [f"![per joint]({d['plots']['joints']})", ""]
    for key, rows in v["strata"].items():
        L += [
            f"## Per {key}",
            "",
            f"| {key} | frames | on fallback | PCKh@{a} [95 %] | gap | PCKh@0.5 [95 %] | MeanSmS@{a} | height err | |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for val_name, r in rows.items():
            flag = "too small to judge" if r["small"] else ""
            L.append(
                f"| {val_name} | {r['frames']} | {r.get('frames_fallback', 0)} | "
                f"{_pct(r[p])} [{_pct(r[ci_key(p)][0])}, {_pct(r[ci_key(p)][1])}] | "
                f"{_gap(r['gap'])} | {_pct(r[PCKH05])} [{_pct(r[ci_key(PCKH05)][0])}, {_pct(r[ci_key(PCKH05)][1])}] | "
                f"{_pct(r[sm])} | {_pct(r['height_err_pct'])} | {flag} |"
            )
        L.append("")
    return L


def _people_val_section(d: dict, a: float) -> list[str]:
    """Val figures per people the person boxes found (the most confident person is labeled and scored)."""
    rows = d.get("people_val")
    if not rows:
        return []
    L = [
        "## Per people found (val)",
        "",
        f"| people | frames | PCKh@{a} | PCKh@0.5 [95 %] | |",
        "|---|---:|---:|---:|---|",
    ]
    for v, r in rows.items():
        L.append(
            f"| {v} | {r['frames']} | {_pct(r[metric_key(PCKH, a)])} | {_pct(r[PCKH05])} "
            f"[{_pct(r[ci_key(PCKH05)][0])}, {_pct(r[ci_key(PCKH05)][1])}] | {'too small to judge' if r['small'] else ''} |"
        )
    return L + [""]


def _people_section(people: dict) -> list[str]:
    """Frames by the people their source's person boxes found (the pose pass crops on the most confident one)."""
    if not people:
        return []
    splits = [sp for sp in ("pool", "train", "val", "test") if sp in people]
    L = [
        "| person boxes | " + " | ".join(splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for key, shown in (
        ("one", "one person"),
        ("several", "several people (most confident kept)"),
        ("none found", "none found (whole frame)"),
    ):
        L.append(f"| {shown} | " + " | ".join(str(people[sp].get(key, 0)) for sp in splits) + " |")
    several = sum(people[sp].get("several", 0) for sp in splits)
    if several:
        L += [
            "",
            f"{several} frame(s) show several people: one person per frame is iterate's scope, so their "
            "labels and scores are of the most confident one.",
        ]
    return L + [""]


def _timeline_section(d: dict) -> list[str]:
    tl = d.get("timeline") or []
    if not tl:
        return []
    L = [
        "## Timeline",
        "",
        "| model | labels | annotator h so far | val PCKh@0.1 | val PCKh@0.5 | val MeanSmS@0.1 | overfit | test PCKh@0.1 "
        "| test PCKh@0.5 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tl:
        h = t.get("annotator_hours")
        L.append(
            f"| {t['model']} | {t['labels']} | {'–' if h is None else f'{h:.2f}'} | {_pct(t[VAL01])} | "
            f"{_pct(t[VAL05])} | {_pct(t[VAL_SMS01])} | {_gap(t[OVERFIT])} | {_pct(t.get(TEST01))} | "
            f"{_pct(t.get(TEST05))} |"
        )
    L.append("")
    if d.get("plots", {}).get("timeline"):
        L += [f"![timeline]({d['plots']['timeline']})", ""]
    return L


def _ci(r: dict, k: str) -> str:
    lo, hi = r[k]
    return f"[{_pct(lo)}, {_pct(hi)}]"


def _control_section(d: dict) -> list[str]:
    """The in-loop control: each selecting model on the frames it picked vs the random exploration frames."""
    cs = [c for c in d.get("controls") or [] if c.get(PCKH05)]
    if not cs:
        return []
    L = [
        "## Did selection work? (in-loop control)",
        "",
        "Each round keeps a random share of the pool (`selection.explore`). Once its labels were synced, the model "
        "that selected the round scored them before any retraining, with the path its pre-annotations came from. "
        "Lower on the picked frames than on the random ones = selection found the frames the model gets wrong. "
        "PCKh@0.5 [95 %, bootstrap over frames]:",
        "",
        "| round | selected by | picked frames | on picked | random frames | on random | picked − random | "
        "PCKh@0.1 picked / random |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cs:
        a, a1 = c[PCKH05], c[PCKH01]
        s, e = a["selected"], a["explored"]
        if e["frames"] < MIN_EXPLORED:  # also a control stored before this rule: no figure from so few frames
            few = too_few_random(e["frames"])
            L.append(
                f"| {c['round']} | {c['model']} | {s['frames']} | {_pct(s[PCKH05])} {_ci(s, ci_key(PCKH05))} | {e['frames']} | "
                f"{few} | – | {_pct(a1['selected'][PCKH01])} / – |"
            )
            continue
        diff = "–" if a["difference"] is None else f"{a['difference']:+.1f} {_ci(a, 'difference_ci95')}"
        L.append(
            f"| {c['round']} | {c['model']} | {s['frames']} | {_pct(s[PCKH05])} {_ci(s, ci_key(PCKH05))} | {e['frames']} | "
            f"{_pct(e[PCKH05])} {_ci(e, ci_key(PCKH05)) if e['frames'] else ''} | {diff} | "
            f"{_pct(a1['selected'][PCKH01])} / {_pct(a1['explored'][PCKH01])} |"
        )
    last = cs[-1]
    e = last[PCKH05]["explored"]
    L += ["", f"Round {last['round']}: {last['verdict']}."]
    if e["frames"] >= MIN_EXPLORED:
        L += [
            "",
            f"Estimated from its {e['frames']} random frames, {last['model']} scored {_pct(e[PCKH05])} % "
            f"{_ci(e, ci_key(PCKH05))} PCKh@0.5 on the unlabeled pool it was choosing from.",
        ]
    return L + [""]


def _followup_section(d: dict) -> list[str]:
    f = d.get("focus_followup")
    if not f:
        return []
    b, a = f["before"], f["after"]
    L = [
        "## Did the focus pay off?",
        "",
        f"Round {f['round']} was steered to **{f['stratum']}** by the previous report: {f['labels_in_stratum']} of its "
        f"{f['labels']} labeled frames are {f['stratum']}.",
    ]
    if a and b and a[PCKH05] is not None and b[PCKH05] is not None:
        delta = a[PCKH05] - b[PCKH05]
        (alo, ahi), (blo, bhi) = a[ci_key(PCKH05)], b[ci_key(PCKH05)]
        apart = None not in (alo, ahi, blo, bhi) and (alo > bhi or ahi < blo)
        L.append(
            f"Its {f['split']} PCKh@0.5 went from {_pct(b[PCKH05])} % {_ci(b, ci_key(PCKH05))} "
            f"({f['previous_report']}) to {_pct(a[PCKH05])} % {_ci(a, ci_key(PCKH05))} on {a['frames']} frames "
            f"({delta:+.1f} points; "
            + ("the intervals do not overlap)." if apart else "the intervals overlap: not yet told from noise).")
        )
        L.append(
            "Whether steering beats labeling at random is measured by `iterate simulate` (paired seeds): see "
            'README, "Does selection beat random?".'
        )
    else:
        L.append(f"The {f['split']} split has no {f['stratum']} frame in one of the two reports: no figure to compare.")
    return L + [""]


def _unset_strata(f: dict) -> list[str]:
    """What to do when the val labels carry no stratum (labels imported without attributes)."""
    keys = f.get("unset") or []
    if not keys:
        return []
    names = " and ".join(f"`{k}`" for k in keys)
    head = f'**No val label carries {names}** (every one is "(not set)"), so ' + (
        "no stratum can steer the next chunk: it follows uncertainty and diversity alone."
        if not f["items"]
        else f"{'it' if len(keys) == 1 else 'they'} cannot steer the next chunk."
    )
    return [
        head + " Labels imported from SLEAP, DeepLabCut or a COCO file without `attributes` carry no strata: "
        "declare them derived from the keypoints in the manifest (`strata: {posture: {derive: torso_angle}, "
        "occlusion: {derive: hidden_joints}}`) and run `iterate ingest` again (it fills the labels already stored), "
        "or have the annotators set them in Label Studio.",
        "",
    ]


def _focus_section(d: dict) -> list[str]:
    f = d.get("focus")
    if not f:
        return []
    if not f["items"]:
        why = _unset_strata(f) or [
            "The manifest declares no strata: the next chunk follows uncertainty and diversity alone.",
            "",
        ]
        return ["## Next chunk focus", "", *why]
    L = [
        "## Next chunk focus",
        "",
        *_unset_strata(f),
        f"Ranked by gap × pool share × uncertainty (gap in {f['metric']} to the stratum's upper 95 % bound); "
        f"{f['explore']:.0%} of the budget stays random for exploration. Predicted over {f['pool_frames']} unlabeled "
        "frames.",
        "",
        "| rank | stratum | budget share | gap | pool share | uncertainty | why |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for i, it in enumerate(f["items"], 1):
        L.append(
            f"| {i} | {it['key']}={it['value']} | {it['budget_share']:.0%} | {it['gap']:.1f} | "
            f"{it['pool_share']:.0%} | {it['uncertainty']:.2f} | {it['reason']} |"
        )
    L.append("")
    return L


def _worst_section(d: dict) -> list[str]:
    """The contact sheet of the worst val frames, or why the report has none."""
    if d.get("model") is None:
        return []
    L = ["## Worst val frames", ""]
    if d.get("plots", {}).get("worst"):
        of = "of the weakest strata" if d.get("worst_of") == "strata" else "overall, no stratum to pick them by"
        return L + [
            f"Worst val frames {of} (labels green, model red):",
            "",
            f"![worst frames]({d['plots']['worst']})",
            "",
        ]
    return L + [f"No contact sheet: {d.get('worst_note') or 'it was not drawn'}.", ""]


def _audit_section(d: dict) -> list[str]:
    """ "Labels to re-check": what `iterate audit` flags now, counted, with a sheet of the top suspects."""
    a = d.get("audit")
    if not a:
        return []
    L = ["## Labels to re-check", ""]
    if "note" in a:
        return L + [f"No audit: {a['note']}.", ""]
    reasons = ", ".join(f"{r} {c}" for r, c in a["per_reason"].items() if c) or "none"
    L += [
        f"`iterate audit` flags {a['flags']} labels on {a['flagged_frames']} of {a['frames']} labeled frames "
        f"({reasons}); reviews so far: {a['confirmed']} labels confirmed, {a['corrected']} corrected. "
        "`iterate audit --push` sends the flagged frames to Label Studio for review; `sync-labels` pulls the answers.",
        "",
    ]
    if a["per_joint"]:
        L += ["Flagged frames per joint: " + ", ".join(f"{j} {c}" for j, c in a["per_joint"].items()) + ".", ""]
    if a["per_annotator"]:
        L += [
            "Per annotator (flagged / labeled frames): "
            + ", ".join(f"{who} {r['flagged']}/{r['labels']}" for who, r in a["per_annotator"].items())
            + ".",
            "",
        ]
    if a.get("top"):
        L += ["| frame | joint | reason | score | annotator |", "|---|---|---|---:|---|"]
        for x in a["top"][:10]:
            L.append(
                f"| {x['frame']} | {x['joint']} | {x['reason']} | {x['score']:.2f} | {x.get('annotator') or '–'} |"
            )
        L.append("")
    if a.get("sheet"):
        L += ["The most suspicious frames (label green, model red):", "", f"![labels to re-check]({a['sheet']})", ""]
    elif a.get("sheet_note"):
        L += [f"No contact sheet: {a['sheet_note']}.", ""]
    L += [f"> {n}" for n in a.get("notes") or []] + ([""] if a.get("notes") else [])
    return L


def _data_section(data: dict) -> list[str]:
    L = ["## Data", "", "| chunk | fraction | target | labeled | pending |", "|---:|---:|---:|---:|---:|"]
    for c in data["chunks"]:
        L.append(f"| {c['chunk']} | {c['fraction']:.0%} | {c['target']} | {c['labeled']} | {c['pending']} |")
    L += ["", "Frames: " + ", ".join(f"{k} {v}" for k, v in sorted(data["frames"].items())), ""]
    for key, rows in data["labels_per_stratum"].items():
        L += [f"| labels per {key} | pool | train | val | test |", "|---|---:|---:|---:|---:|"]
        for val_name, r in rows.items():
            L.append(
                f"| {val_name} | {r.get('pool', 0)} | {r.get('train', 0)} | {r.get('val', 0)} | {r.get('test', 0)} |"
            )
        L.append("")
    L += _people_section(data.get("people") or {})
    return L
