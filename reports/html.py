"""The round's report as an HTML page, from its JSON twin and the frames' image files.

One page per round (``round-NN.html``) beside the Markdown, linked to the previous and next round, ``index.html``
(every round, newest first) and ``latest.html`` (a copy of the newest page). A page shows the round's picked frames
as PNG thumbnails written in ``round-NN-frames/`` with the pre-annotation the round's model pushed drawn on them
(and the submitted label where it is synced), the worst val frames (label vs model), the plots and the key
tables. Everything is local files: no script, no external URL; the page renders offline. Every string a user
controls (project, file names, joint and stratum names) is escaped. Nothing here reads the ledger or a checkpoint:
the loop (``iterate.loop.report``) stores the picks and their keypoints in the JSON twin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html import escape
from pathlib import Path

import cv2
import numpy as np

from iterate.core.images import read_image
from iterate.core.metric_keys import MEAN_SMS, PCKH, PCKH05, ci_key, metric_key, upgrade
from reports.report import _draw

THUMB = 240  # the thumbnails' longer side, px (shown at their own size: one image pixel per screen pixel)
LABEL_BGR = (0, 200, 0)  # the contact sheets' colours: labels green, model red
MODEL_BGR = (0, 0, 230)
_ROUND_JSON = re.compile(r"round-(\d+)\.json")


def _css(bgr: tuple[int, int, int]) -> str:
    b, g, r = bgr
    return f"rgb({r}, {g}, {b})"


def _e(x) -> str:
    return escape(str(x), quote=True)


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _ci(r: dict, key: str) -> str:
    lo, hi = r.get(key) or (None, None)
    return f"[{_pct(lo)}, {_pct(hi)}]"


def page_name(round_no: int) -> str:
    return f"round-{round_no:02d}.html"


def frames_dir(round_no: int) -> str:
    """The folder (in the reports folder) of a round's thumbnails."""
    return f"round-{round_no:02d}-frames"


def thumb_name(round_no: int, rank: int) -> str:
    return f"{frames_dir(round_no)}/pick-{rank:04d}.png"


# -- thumbnails -----------------------------------------------------------------------------------
def _points(rows) -> tuple[np.ndarray, np.ndarray]:
    """JSON keypoints (``[x, y]``, ``[x, y, v]`` or null per joint) → (K, 2) and the drawable mask: finite (and
    labeled, where a visibility is given)."""
    k = np.full((len(rows), 2), np.nan)
    ok = np.zeros(len(rows), bool)
    for j, p in enumerate(rows):
        if p is None or len(p) < 2 or p[0] is None or p[1] is None:
            continue
        k[j] = p[0], p[1]
        ok[j] = bool(np.isfinite(k[j]).all()) and (len(p) < 3 or (p[2] or 0) > 0)
    return np.where(ok[:, None], k, 0.0), ok


def draw_thumb(image: str, out: Path, edges: list[tuple[int, int]], pred=None, label=None, side: int = THUMB) -> bool:
    """One frame scaled to ``side`` px on its longer side with the label (green) and the pre-annotation (red) drawn
    by the contact sheets' drawer; only finite (and labeled) joints are drawn. False when the image is unreadable."""
    img, _ = read_image(image)
    if img is None:
        return False
    s = side / max(img.shape[:2])
    size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
    img = np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR))
    for rows, color in ((label, LABEL_BGR), (pred, MODEL_BGR)):
        if rows:
            k, ok = _points(rows)
            _draw(img, (k + 0.5) * s - 0.5, ok, edges, color)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    if not cv2.imwrite(str(tmp), img):
        return False
    os.replace(tmp, out)
    return True


def _edges(picked: dict) -> list[tuple[int, int]]:
    names = list(picked.get("joints") or [])
    pos = {n: i for i, n in enumerate(names)}
    return [(pos[a], pos[b]) for a, b in picked.get("skeleton") or [] if a in pos and b in pos]


def draw_picks(out_dir: Path, data: dict) -> int:
    """Write the round's thumbnails (its old ones removed first); returns how many were drawn."""
    picked = data.get("picked")
    d = out_dir / frames_dir(data["round"])
    shutil.rmtree(d, ignore_errors=True)
    if not picked:
        return 0
    edges = _edges(picked)
    n = 0
    for f in picked["frames"]:
        n += draw_thumb(f["path"], out_dir / thumb_name(data["round"], f["rank"]), edges, f.get("pred"), f.get("label"))
    return n


# -- pages ----------------------------------------------------------------------------------------
_STYLE = f"""
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px 40px; color: #222; }}
nav {{ display: flex; gap: 18px; padding: 10px 0; border-bottom: 1px solid #ddd; position: sticky; top: 0;
  background: #fff; }}
nav .off {{ color: #aaa; }}
h1 {{ font-size: 22px; margin: 18px 0 6px; }}
h2 {{ font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid #eee; }}
table {{ border-collapse: collapse; margin: 6px 0; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child, td.t {{ text-align: left; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, {THUMB + 8}px); gap: 10px; }}
figure {{ margin: 0; width: {THUMB + 8}px; }}
figure img {{ display: block; border: 1px solid #ccc; }}
figcaption {{ font-size: 12px; color: #444; overflow-wrap: anywhere; }}
.missing {{ width: {THUMB}px; height: 80px; display: flex; align-items: center; justify-content: center;
  background: #f4f4f4; color: #900; font-size: 12px; border: 1px solid #ccc; }}
.key {{ display: inline-block; width: 14px; height: 4px; vertical-align: middle; margin: 0 4px 0 10px; }}
.note {{ background: #fff8e0; border-left: 3px solid #e0b000; padding: 4px 8px; }}
img.plot {{ max-width: 100%; border: 1px solid #eee; }}
"""


def _nav(n: int, rounds: list[int]) -> str:
    prev = [r for r in rounds if r < n]
    nxt = [r for r in rounds if r > n]

    def link(target: int | None, text: str) -> str:
        if target is None:
            return f'<span class="off">{text}</span>'
        return f'<a href="{page_name(target)}" rel="{"prev" if target < n else "next"}">{text}</a>'

    return (
        "<nav>"
        + link(prev[-1] if prev else None, f"← round {prev[-1]}" if prev else "← no earlier round")
        + '<a href="index.html">all rounds</a><a href="latest.html">latest</a>'
        + link(nxt[0] if nxt else None, f"round {nxt[0]} →" if nxt else "no later round →")
        + "</nav>"
    )


def _summary(d: dict) -> str:
    a = d.get("alpha", 0.1)
    p, sm = metric_key(PCKH, a), metric_key(MEAN_SMS, a)
    rows = [(name, d.get(name)) for name in ("val", "test") if d.get(name)]
    if not rows:
        return ""
    L = [
        "<h2>Summary</h2><table><tr><th>split</th>"
        f"<th>PCKh@{_e(a)} [95 %]</th><th>PCKh@0.5 [95 %]</th><th>MeanSmS@{_e(a)}</th><th>frames</th></tr>"
    ]
    for name, r in rows:
        L.append(
            f"<tr><td>{name}</td><td>{_pct(r.get(p))} % {_ci(r, ci_key(p))}</td>"
            f"<td>{_pct(r.get(PCKH05))} % {_ci(r, ci_key(PCKH05))}</td><td>{_pct(r.get(sm))} %</td>"
            f"<td>{_e(r.get('frames', '–'))}</td></tr>"
        )
    return "".join(L) + "</table>"


def _key(bgr, text: str) -> str:
    return f'<span class="key" style="background: {_css(bgr)}"></span>{text}'


def _figure(out_dir: Path, n: int, f: dict) -> str:
    name = Path(f["path"]).name
    thumb = thumb_name(n, f["rank"])
    if (out_dir / thumb).is_file():
        pic = f'<a href="{_e(Path(f["path"]).absolute().as_uri())}"><img src="{_e(thumb)}" alt="{_e(name)}"></a>'
    else:
        pic = '<div class="missing">image unreadable</div>'
    cap = [f'<b>#{_e(f["rank"])}</b> <span title="{_e(f["path"])}">{_e(name)}</span>']
    if f.get("why"):
        cap.append(_e(f["why"]))
    strata = f.get("pred_strata") or {}
    if strata:
        cap.append("predicted " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in strata.items()))
    cap.append("labeled (drawn green)" if f.get("label") else "not labeled yet")
    return f'<figure class="pick">{pic}<figcaption>{"<br>".join(cap)}</figcaption></figure>'


def _picks(out_dir: Path, d: dict) -> str:
    p = d.get("picked")
    if not p:
        return "<h2>Picked frames</h2><p>No selection round yet: run <code>iterate select</code>.</p>"
    by = p.get("pre_annotated_by")
    L = [
        f'<h2 id="picked">Round {_e(p["round"])}: the {p["frames_total"]} picked frames</h2>',
        f"<p>Strategy <b>{_e(p.get('strategy', '?'))}</b>"
        + (f", scored and pre-annotated by {_e(by)}" if by else "")
        + (f"; the first {len(p['frames'])} by rank are shown" if len(p["frames"]) < p["frames_total"] else "")
        + ". "
        + _key(MODEL_BGR, "pre-annotation (the model's keypoints pushed to Label Studio)")
        + _key(LABEL_BGR, "label as submitted, once synced")
        + "</p>",
    ]
    for note in p.get("notes") or []:
        L.append(f'<p class="note">{_e(note)}</p>')
    if p.get("unplaced"):
        L.append(
            '<p class="note">Not pre-annotated (the model does not predict them; left for the annotator): '
            + ", ".join(_e(j) for j in p["unplaced"])
            + "</p>"
        )
    links = [(p.get("why_md"), "why these frames"), (p.get("table_csv"), "every score")]
    links = [f'<a href="{_e(h)}">{t}</a>' for h, t in links if h]
    if links:
        L.append("<p>" + " · ".join(links) + "</p>")
    L.append('<div class="grid">' + "".join(_figure(out_dir, d["round"], f) for f in p["frames"]) + "</div>")
    if p.get("scores_plot"):
        L.append(f'<p><img class="plot" src="{_e(p["scores_plot"])}" alt="score distributions"></p>')
    return "".join(L)


def _plots(d: dict) -> str:
    plots = d.get("plots") or {}
    L = []
    if plots.get("worst"):
        L.append(
            '<h2 id="worst">Worst val frames of the weakest strata</h2><p>'
            + _key(LABEL_BGR, "label")
            + _key(MODEL_BGR, "this round's model")
            + f'</p><img class="plot" src="{_e(plots["worst"])}" alt="worst val frames">'
        )
    elif d.get("model") and d.get("val"):
        L.append('<h2 id="worst">Worst val frames</h2><p>No frame of the weakest strata to show.</p>')
    titles = {"joints": f"Per joint (PCKh@{d.get('alpha', 0.1)})", "timeline": "Timeline"}
    for key, title in titles.items():
        if plots.get(key):
            L.append(f'<h2>{_e(title)}</h2><img class="plot" src="{_e(plots[key])}" alt="{_e(key)}">')
    return "".join(L)


def _focus(d: dict) -> str:
    f = d.get("focus")
    if not f or not f.get("items"):
        return ""
    L = [
        "<h2>Next chunk focus</h2><table><tr><th>stratum</th><th>budget share</th><th>gap</th><th>pool share</th>"
        "<th>why</th></tr>"
    ]
    for it in f["items"]:
        L.append(
            f"<tr><td>{_e(it['key'])}={_e(it['value'])}</td><td>{it['budget_share']:.0%}</td>"
            f"<td>{it['gap']:.1f}</td><td>{it['pool_share']:.0%}</td><td class='t'>{_e(it.get('reason', ''))}</td></tr>"
        )
    return "".join(L) + "</table>"


def render_page(out_dir: Path, d: dict, rounds: list[int]) -> str:
    """The round's page from its JSON twin; ``rounds``: the rounds that have a page (for the links)."""
    n = d["round"]
    title = f"{d['project']}: round {n} report"
    data = d.get("data") or {}
    model = d.get("model")
    intro = f"Written {_e(d.get('created_at', '?'))}."
    if data:
        intro += (
            f" Chunk {_e(data.get('current_chunk'))} of {len(data.get('chunks') or [])} is current; "
            f"{_e(data.get('labels_train', 0))} labeled training frames so far."
        )
    intro += (
        f" Model #{_e(model['id'])} (<code>{_e(model['path'])}</code>), trained on "
        + (f"dataset v{_e(model['dataset']['version'])}: " if model.get("dataset") else "")
        + f"{_e(model.get('n_train'))} frames."
        if model
        else " <b>No model yet</b>: run <code>iterate retrain</code> once labels exist."
    )
    body = [
        _nav(n, rounds),
        f"<h1>{_e(title)}</h1><p>{intro}</p>",
        _summary(d),
        _picks(out_dir, d),
        _plots(d),
        _focus(d),
        f'<p style="margin-top:30px">Every table: <a href="round-{n:02d}.md">round-{n:02d}.md</a> · the data: '
        f'<a href="round-{n:02d}.json">round-{n:02d}.json</a></p>',
    ]
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )


def render_index(reports: list[dict]) -> str:
    """Every round's page, newest first, with its headline figures."""
    project = reports[-1]["project"] if reports else "iterate"
    L = [
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(project)}: reports</title>'
        f'<style>{_STYLE}</style></head>\n<body>\n<nav><a href="latest.html">latest</a></nav>'
        f"<h1>{_e(project)}: every round</h1><table><tr><th>round</th><th>written</th><th>model</th>"
        "<th>labeled training frames</th><th>val PCKh@0.5</th><th>test PCKh@0.5</th><th>picked frames</th></tr>"
    ]
    for d in reversed(reports):
        model = d.get("model")
        picked = d.get("picked")
        L.append(
            f'<tr><td><a href="{page_name(d["round"])}">round {d["round"]}</a></td><td>{_e(d.get("created_at", ""))}</td>'
            f"<td>{'#' + _e(model['id']) if model else '–'}</td><td>{_e((d.get('data') or {}).get('labels_train', '–'))}</td>"
            f"<td>{_pct((d.get('val') or {}).get(PCKH05))}</td><td>{_pct((d.get('test') or {}).get(PCKH05))}</td>"
            f"<td>{picked['frames_total'] if picked else '–'}</td></tr>"
        )
    return "".join(L) + "</table>\n</body></html>\n"


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_pages(out_dir: Path) -> list[Path]:
    """(Re)write every round's page from its JSON twin (so each links to its neighbours), ``index.html`` and
    ``latest.html``; returns the pages in round order. Thumbnails are drawn by :func:`draw_picks`."""
    reports = []
    for p in out_dir.glob("round-*.json"):
        if _ROUND_JSON.fullmatch(p.name):
            reports.append(upgrade(json.loads(p.read_text())))
    reports.sort(key=lambda d: d["round"])
    rounds = [d["round"] for d in reports]
    pages = []
    for d in reports:
        page = out_dir / page_name(d["round"])
        _atomic(page, render_page(out_dir, d, rounds))
        pages.append(page)
    _atomic(out_dir / "index.html", render_index(reports))
    if pages:
        _atomic(out_dir / "latest.html", pages[-1].read_text(encoding="utf-8"))
    return pages


def write_html(out_dir: Path, data: dict) -> Path:
    """The round's thumbnails and page (and every other page, index and latest): the HTML twin of the Markdown."""
    draw_picks(out_dir, data)
    write_pages(out_dir)
    return out_dir / page_name(data["round"])
