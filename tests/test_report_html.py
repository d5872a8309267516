"""The report's HTML twin: one page per round (picked frames with their pre-annotations drawn, the worst frames,
the plots), linked to its neighbours, an index and latest; checked in headless Chromium on the drawn pixels."""

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_browser import browser  # noqa: F401  (the one headless-Chromium fixture: it fails when Chromium is missing)
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from reports.html import LABEL_BGR, MODEL_BGR, THUMB, draw_thumb, write_html

from conftest import LSP_NAMES, LSPET, REPO, lsp_manifest, lspet_subset

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"


def _cli(p: Path, *args: str) -> str:
    r = CliRunner().invoke(app, [*args, "-m", str(p)])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def project(tmp_path_factory, lspet_coco):
    """Two rounds on real LSPET frames: round 1 picked and pre-annotated by the shipped base, one pick labeled (as a
    sync would), the base registered as the loop's model #1, report; round 2 picked by model #1, report."""
    tmp = tmp_path_factory.mktemp("html")
    srcs = []
    for name, lo, hi, split, labels in (
        ("va", 7101, 7112, "val", True),
        ("te", 7301, 7310, "test", True),
        ("pool", 7201, 7230, "pool", False),
    ):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp / f"{name}.json")
        srcs.append(
            {"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels}
        )
    model = {"backbone": "hrnet_w18_small", "input_size": 128, "heatmap_size": 64, "sigma": 3.0, "base": str(BASE)}
    p = lsp_manifest(tmp, srcs, model=model, selection={"focus_metric": "pckh@0.5", "dedup_hamming": 0})
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    _cli(p, "select", "--budget", "6", "--no-push")
    by_file = {im["file_name"]: im["id"] for im in lspet_coco["images"]}
    with Ledger(m.workspace_dir) as led:
        fid = led.round_frame_ids(1)[0]
        f = led.frame(fid)
        iid = by_file["images/" + Path(f.path).name]
        ann = next(a for a in lspet_coco["annotations"] if a["image_id"] == iid)
        names = lspet_coco["categories"][0]["keypoints"]
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        label = [kp[names.index(n)].tolist() for n in LSP_NAMES]
        led.add_label(fid, label, source="test", attributes={"posture": "inverted"})
        with led.transaction():
            led.add_model(str(BASE), parent_id=None, n_train=1, config={}, metrics={})
    out1 = _cli(p, "report")
    _cli(p, "select", "--budget", "5", "--no-push")
    _cli(p, "report")
    return {"manifest": p, "m": m, "rdir": m.workspace_dir / "reports", "labeled": fid, "out1": out1}


def _page(rdir: Path, n: int) -> str:
    return (rdir / f"round-{n:02d}.html").read_text(encoding="utf-8")


def test_one_page_per_round_with_links_index_and_latest(project):
    rdir = project["rdir"]
    assert "round-01.html" in project["out1"] and "index.html" in project["out1"]
    p1, p2 = _page(rdir, 1), _page(rdir, 2)
    # round 1's page was written again when round 2 came: it now links forward
    assert 'href="round-02.html" rel="next"' in p1 and "no earlier round" in p1
    assert 'href="round-01.html" rel="prev"' in p2 and "no later round" in p2
    for page in (p1, p2):
        assert 'href="index.html"' in page and 'href="latest.html"' in page
    assert (rdir / "latest.html").read_text(encoding="utf-8") == p2
    index = (rdir / "index.html").read_text(encoding="utf-8")
    assert index.index('href="round-02.html"') < index.index('href="round-01.html"')  # newest first
    # the JSON twin carries the picks and their pre-annotations: the base predicts all 14 LSP joints
    d1, d2 = (json.loads((rdir / f"round-{n:02d}.json").read_text()) for n in (1, 2))
    assert (d1["picked"]["round"], d1["picked"]["frames_total"], d2["picked"]["frames_total"]) == (1, 6, 5)
    assert d1["picked"]["pre_annotated_by"] == "the base model" and d2["picked"]["pre_annotated_by"] == "model #1"
    for f in d1["picked"]["frames"]:
        assert len(f["pred"]) == 14 and all(p is not None and np.isfinite(p).all() for p in f["pred"])
        assert (f["label"] is not None) == (f["frame_id"] == project["labeled"])
        assert (rdir / "round-01-frames" / f"pick-{f['rank']:04d}.png").is_file()
    assert d1["picked"]["unplaced"] == []
    # every picture the page shows is a local file next to it; no script, no external URL: it renders offline
    for page in (p1, p2):
        srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
        assert len(srcs) >= 6 + 3, srcs  # the picks, the worst frames, the per-joint plot, the timeline
        for s in srcs:
            assert (rdir / s).is_file(), s
        assert "<script" not in page and "http://" not in page and "https://" not in page
    assert p1.count("labeled (drawn green)") == 1 and p1.count("not labeled yet") == 5
    assert 'alt="worst val frames"' in p2 and "Per joint" in p2


def test_older_round_rerendered_from_its_json(project):
    rdir = project["rdir"]
    before = _page(rdir, 1)
    (rdir / "round-01.html").write_text("scribbled over")
    shutil.rmtree(rdir / "round-01-frames")
    out = _cli(project["manifest"], "report", "--round", "1")
    assert "round-01.html" in out
    assert _page(rdir, 1) == before
    assert len(list((rdir / "round-01-frames").glob("pick-*.png"))) == 6
    assert (rdir / "latest.html").read_text(encoding="utf-8") == _page(rdir, 2)  # latest stays the newest round


def _count(img: np.ndarray, bgr) -> int:
    """Pixels within 40 of the colour on every channel."""
    return int((np.abs(img.astype(int) - np.array(bgr)).max(axis=2) <= 40).sum())


def _plain(path: str, shape) -> np.ndarray:
    img = cv2.imread(path)
    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _shot(drv, element) -> np.ndarray:
    """The element's pixels in a screenshot of the viewport."""
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    x, y, w, h = drv.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height];", element
    )
    shot = cv2.imdecode(np.frombuffer(drv.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    return shot[round(y) : round(y + h), round(x) : round(x + w)]


def test_page_in_headless_chromium_shows_the_drawn_skeletons(project, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    rdir = project["rdir"]
    d1 = json.loads((rdir / "round-01.json").read_text())
    browser.get((rdir / "round-01.html").as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0);")
    )
    assert browser.title == "test: round 1 report"
    figs = browser.find_elements(By.CSS_SELECTOR, "figure.pick img")
    assert len(figs) == 6
    for el, f in zip(figs, d1["picked"]["frames"]):
        shown = _shot(browser, el)
        assert max(shown.shape[:2]) >= THUMB  # shown at its own size (plus the border), not shrunk
        inner = shown[1:-1, 1:-1]  # inside the 1 px border
        plain = _plain(f["path"], inner.shape)
        # the pre-annotation's red skeleton is on the screen where the frame is shown, not in the frame itself
        assert _count(inner, MODEL_BGR) >= _count(plain, MODEL_BGR) + 30, f["path"]
        labeled = f["frame_id"] == project["labeled"]
        gained = _count(inner, LABEL_BGR) - _count(plain, LABEL_BGR)
        assert (gained >= 30) if labeled else (gained < 10), (f["path"], gained)  # the label green, once synced
    worst = browser.find_elements(By.CSS_SELECTOR, 'img[alt="worst val frames"]')
    assert worst and _count(_shot(browser, worst[0]), LABEL_BGR) > 30  # label vs model on the worst sheet
    # the links lead from round to round
    browser.find_element(By.CSS_SELECTOR, 'nav a[rel="next"]').click()
    WebDriverWait(browser, 30).until(lambda d: d.title == "test: round 2 report")
    browser.find_element(By.LINK_TEXT, "all rounds").click()
    WebDriverWait(browser, 30).until(lambda d: d.title == "test: reports")
    assert len(browser.find_elements(By.CSS_SELECTOR, "table a")) == 2


def test_user_strings_escaped_only_finite_joints_drawn_unreadable_said(tmp_path):
    """Render from a JSON twin made by hand: a project, file and joint names with markup are escaped; a joint the
    model does not place (null) is not drawn; an image that is gone is said on the page, not a traceback."""
    src = LSPET / "images" / "im07201.jpg"
    odd = tmp_path / 'a<b>&"c.jpg'
    shutil.copy(src, odd)
    names = ["<j0>", "j1", "j2"]
    img = cv2.imread(str(src))
    h, w = img.shape[:2]
    pred = [[0.3 * w, 0.3 * h], [0.7 * w, 0.6 * h], None]
    frames = [
        {"rank": 1, "frame_id": "f1", "path": str(odd), "why": "<i>why</i>", "pred": pred, "label": None},
        {"rank": 2, "frame_id": "f2", "path": str(tmp_path / "gone.jpg"), "why": "", "pred": None, "label": None},
    ]
    data = {
        "round": 3,
        "project": "<script>alert(1)</script>",
        "created_at": "now",
        "data": {"current_chunk": 1, "chunks": [{}], "labels_train": 0},
        "model": None,
        "picked": {
            "round": 3,
            "strategy": "full",
            "pre_annotated_by": "the base model",
            "frames_total": 2,
            "joints": names,
            "skeleton": [["<j0>", "j1"], ["j1", "j2"]],
            "unplaced": ["<j0>"],
            "notes": [],
            "frames": frames,
        },
    }
    rdir = tmp_path / "reports"
    rdir.mkdir()
    (rdir / "round-03.json").write_text(json.dumps(data))
    page = write_html(rdir, data).read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&lt;b&gt;&amp;&quot;c.jpg" in page and "&lt;i&gt;why&lt;/i&gt;" in page and "&lt;j0&gt;" in page
    assert page.count("image unreadable") == 1 and not (rdir / "round-03-frames" / "pick-0002.png").exists()
    thumb = cv2.imread(str(rdir / "round-03-frames" / "pick-0001.png"))
    s = thumb.shape[1] / w
    red = np.abs(thumb.astype(int) - np.array(MODEL_BGR)).max(axis=2) <= 40
    ys, xs = np.nonzero(red & ~(np.abs(cv2.resize(img, thumb.shape[1::-1]).astype(int) - MODEL_BGR).max(2) <= 40))
    assert len(xs) > 20  # the one finite edge and its two joints
    # every drawn pixel lies on the segment j0–j1: the null joint j2 (and the edge to it) is not drawn
    a, b = np.array(pred[0]) * s, np.array(pred[1]) * s
    pts = np.stack([xs, ys], 1).astype(float)
    t = np.clip(((pts - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist = np.linalg.norm(pts - (a + t[:, None] * (b - a)), axis=1)
    assert dist.max() < 4, dist.max()
    # a frame drawn with no finite joint is the plain thumbnail
    assert draw_thumb(str(odd), tmp_path / "none.png", [(0, 1)], pred=[None, [np.nan, 3.0], None])
    assert draw_thumb(str(odd), tmp_path / "plain.png", [(0, 1)])
    assert (cv2.imread(str(tmp_path / "none.png")) == cv2.imread(str(tmp_path / "plain.png"))).all()
    assert not draw_thumb(str(tmp_path / "gone.jpg"), tmp_path / "gone.png", [])
