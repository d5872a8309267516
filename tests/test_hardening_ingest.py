"""Ingest and manifest hardening, third pass (issue 29, items 4, 5, 8, 9, 10, 13, 17 and 19): source names that
would write outside the workspace, Label Studio images outside their folder, COCO sizes that disagree with the
decoded image, two videos of one name, the workspace ingesting itself, 1-frame videos, duplicate YAML keys, fps
that overflows, strata named like the labeling config's own controls, quoting in `init`, booleans as numbers
and video frames under the images' size rule. Real data from ../shared/data."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest

from conftest import SHARED, lsp_manifest

DANCE = SHARED / "sleap_dance" / "dance.mp4"


def _one_line(r, code: int = 2) -> str:
    out = r.output
    assert r.exit_code == code, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return lines[0]


def _ingest(p):
    return CliRunner().invoke(app, ["ingest", "-m", str(p)])


def _files(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- item 4: a source name is a plain folder name -------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["../../../outside", "a/b", "a\\b", "..", ".", ".hidden", "x..y", "CON", "nul.txt", "Com1", "a\x00b", "a\nb", ""],
)
def test_unsafe_source_names_are_refused_at_load(tmp_path, name):
    p = lsp_manifest(tmp_path, [{"name": name, "kind": "video", "path": str(DANCE), "every": 150}])
    line = _one_line(_ingest(p))
    assert "sources[0].name" in line and "plain folder name" in line
    assert not (tmp_path / "ws").exists() and _files(tmp_path.parent / "outside") == []


def test_a_name_taken_from_the_path_is_checked_too(tmp_path):
    (tmp_path / ".slp").write_bytes(b"")
    p = lsp_manifest(tmp_path, [{"kind": "sleap", "path": str(tmp_path / ".slp")}])
    line = _one_line(_ingest(p))
    assert "sources[0]" in line and "give the source a plain `name`" in line


def test_frames_folder_is_checked_to_stay_inside_the_workspace(tmp_path):
    """A planted symlink `frames/dance → outside`: the write is refused, nothing lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "ws" / "frames").mkdir(parents=True)
    os.symlink(outside, tmp_path / "ws" / "frames" / "dance")
    p = lsp_manifest(tmp_path, [{"name": "dance", "kind": "video", "path": str(DANCE), "every": 150}])
    line = _one_line(_ingest(p))
    assert "'dance'" in line and "outside the workspace" in line
    assert _files(outside) == []


def test_a_plain_name_still_works(tmp_path):
    p = lsp_manifest(tmp_path, [{"name": "dance-cam_1.v2", "kind": "video", "path": str(DANCE), "every": 150}])
    r = _ingest(p)
    assert r.exit_code == 0, r.output
    assert len(_files(tmp_path / "ws" / "frames" / "dance-cam_1.v2")) == 3


# -- item 5: a Label Studio export reads only inside its images folder ---------------------------------------
LS = SHARED / "label_studio_ui"


def _ls_export(tmp_path, ref_of_task_1) -> tuple:
    """The real UI export with task 1's image pointing elsewhere; images/ holds the three real frames, and
    outside/secret.png a real picture next to it."""
    import shutil

    images, outside = tmp_path / "images", tmp_path / "outside"
    images.mkdir()
    outside.mkdir()
    for f in ("frame_0000.png", "frame_0001.png", "frame_0002.png"):
        shutil.copy(LS / f, images)
    shutil.copy(LS / "frame_0000.png", outside / "secret.png")
    os.symlink(outside / "secret.png", images / "link.png")
    tasks = json.loads((LS / "export_full_json.json").read_text())
    tasks[0]["data"]["image"] = ref_of_task_1(tmp_path)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    d = dict(
        strata={"posture": ["supine", "prone", "side"]},
        keypoints={"names": ["head_top", "neck", "left_ankle"], "normalizer": {"kind": "person_box"}},
    )
    src = {"name": "ls", "kind": "labelstudio", "path": str(export), "images": str(images), "split": "train"}
    return lsp_manifest(tmp_path, [src], **d), outside


@pytest.mark.parametrize(
    "ref",
    [
        lambda t: "/data/local-files/?d=../outside/secret.png",
        lambda t: "/data/local-files/?d=" + "../" * 12 + str(t / "outside" / "secret.png").lstrip("/"),
        lambda t: "/data/local-files/?d=link.png",  # a symlink inside images/ to a file outside
        lambda t: "/data/local-files/?d=%2E%2E/outside/secret.png",
    ],
    ids=["dotdot", "deep-dotdot-absolute", "symlink", "encoded"],
)
def test_label_studio_task_image_outside_its_folder_is_refused(tmp_path, ref):
    p, outside = _ls_export(tmp_path, ref)
    line = _one_line(_ingest(p))
    assert "task 1" in line and "outside the images folder" in line
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert led.frames() == []  # refused whole: nothing registered, the outside file never read


def test_label_studio_absolute_path_outside_is_not_registered(tmp_path):
    p, outside = _ls_export(tmp_path, lambda t: str(t / "outside" / "secret.png"))
    r = _ingest(p)
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert all(str(outside) not in f.path for f in led.frames()), r.output


# -- item 8: a COCO image's declared size is the decoded picture's -----------------------------------------
def _resaved_lspet(tmp_path, lspet_coco, change) -> tuple:
    """LSPET 7001 and 7002 copied to images/; 7001 re-saved by `change` (a PIL image → saved file)."""
    import shutil

    from PIL import Image

    from conftest import LSPET, lspet_subset

    images = tmp_path / "images"
    (images / "images").mkdir(parents=True)
    for i in (7001, 7002):
        shutil.copy(LSPET / "images" / f"im0{i}.jpg", images / "images")
    with Image.open(LSPET / "images" / "im07001.jpg") as im:
        change(im.copy(), images / "images" / "im07001.jpg")
    sub = lspet_subset(lspet_coco, [7001, 7002], tmp_path / "sub.json")
    src = {"name": "l", "kind": "coco", "path": str(sub), "images": str(images), "split": "train"}
    return lsp_manifest(tmp_path, [src])


def _exif_rotated(im, out):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display; the pixels stay in raw orientation
    im.save(out, exif=exif, quality=95)


@pytest.mark.parametrize(
    "change, decoded",
    [(_exif_rotated, "316×210 (EXIF-rotated?)"), (lambda im, out: im.resize((105, 158)).save(out), "105×158")],
    ids=["exif-orientation", "resized"],
)
def test_coco_declared_size_must_match_the_decoded_image(tmp_path, lspet_coco, change, decoded):
    p = _resaved_lspet(tmp_path, lspet_coco, change)
    r = _ingest(p)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    (line,) = [x for x in r.output.splitlines() if "im07001.jpg" in x]
    assert f"declares 210×316, the image decodes to {decoded}" in line, line
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert [f.path.rsplit("/", 1)[1] for f in led.frames()] == ["im07002.jpg"]  # 7001 and its label refused
        assert led.count_labels() == 1


# -- item 9: two videos of one file name never share frame files ------------------------------------------
def _write_video(out, frames, fps=30.0):
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    return out


def _dance_frames(n=None, every=1):
    import cv2

    cap = cv2.VideoCapture(str(DANCE))
    out, i = [], 0
    while n is None or len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append(img)
        i += 1
    cap.release()
    return out


def test_a_second_video_of_the_same_name_gets_its_own_frames(tmp_path):
    """The dance clip, then a changed dance.mp4 (mirrored, re-encoded) from another folder under the same source
    name: 18 frames, 18 files, each file the picture its frame was registered with."""
    import hashlib

    import cv2

    other = tmp_path / "b" / "dance.mp4"
    other.parent.mkdir()
    _write_video(other, [cv2.flip(f, 1) for f in _dance_frames()])
    for video in (DANCE, other):
        src = {"name": "dance", "kind": "video", "path": str(video), "every": 50}
        r = _ingest(lsp_manifest(tmp_path, [src], selection={"dedup_hamming": 0}))
        assert r.exit_code == 0, r.output
    with Ledger(tmp_path / "ws") as led:
        frames = led.frames(source="dance")
    assert len(frames) == 18 and len({f.path for f in frames}) == 18
    for f in frames:
        assert hashlib.sha1(cv2.imread(f.path).tobytes()).hexdigest() == f.content_hash


# -- item 10: an images folder that holds the workspace never ingests the workspace ---------------------------
def test_images_folder_holding_the_workspace_skips_its_files(tmp_path):
    """proj/ holds two pictures, the workspace proj/ws (a plot, a cut frame) and another .iterate-demo folder:
    only the two pictures are ingested, and the skipped ones are counted in the output."""
    import shutil

    from conftest import LSPET

    proj = tmp_path / "proj"
    for sub in ("", "ws/reports", "ws/frames/cam", ".iterate-demo/frames"):
        (proj / sub).mkdir(parents=True, exist_ok=True)
    for i, where in zip(range(7001, 7006), ("", "", "ws/reports", "ws/frames/cam", ".iterate-demo/frames")):
        shutil.copy(LSPET / "images" / f"im0{i}.jpg", proj / where)
    p = lsp_manifest(tmp_path, [{"name": "all", "kind": "images", "path": str(proj)}], workspace=str(proj / "ws"))
    r = _ingest(p)
    assert r.exit_code == 0, r.output
    assert "all: skipped 3 image(s) inside the workspace" in r.output.replace("\n", " ")
    with Ledger(proj / "ws") as led:
        assert sorted(f.path.rsplit("/", 1)[1] for f in led.frames()) == ["im07001.jpg", "im07002.jpg"]


# -- item 13: a 1-frame video gives its frame; a source that adds nothing is said; duplicate YAML keys -------
@pytest.mark.parametrize("sampling", [{"every": 1}, {"every": 30}, {"fps": 1.0}, {"fps": 1000.0}])
def test_a_one_frame_video_gives_its_frame(tmp_path, sampling):
    one = _write_video(tmp_path / "one.mp4", _dance_frames(1))
    p = lsp_manifest(tmp_path, [{"name": "one", "kind": "video", "path": str(one), **sampling}])
    r = _ingest(p)
    assert r.exit_code == 0, r.output
    with Ledger(tmp_path / "ws") as led:
        (f,) = led.frames(source="one")
    assert f.frame_index == 0 and (f.width, f.height) == (406, 720)


def test_a_source_that_adds_nothing_is_said(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    srcs = [
        {"name": "dance", "kind": "video", "path": str(DANCE), "every": 150},
        {"name": "again", "kind": "video", "path": str(DANCE), "every": 150},  # the same pictures: duplicates
        {"name": "nothing", "kind": "images", "path": str(empty)},
    ]
    r = _ingest(lsp_manifest(tmp_path, srcs))
    assert r.exit_code == 0, r.output
    out = r.output.replace("\n", " ")
    assert "again: added no frames (3 duplicate(s) of frames already ingested, 0 skipped)" in out
    assert f"nothing: added no frames (no images found in {empty})" in out
    assert "dance: added no frames" not in out


def test_a_duplicate_key_in_the_manifest_is_refused_with_its_line(tmp_path):
    p = lsp_manifest(tmp_path, [{"name": "dance", "kind": "video", "path": str(DANCE), "every": 150}])
    text = p.read_text() + "sources: []\n"
    p.write_text(text)
    first = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("sources:"))
    line = _one_line(_ingest(p))
    assert f"{p}: line {len(text.splitlines())}: key 'sources' repeats (first on line {first})" in line
    p.write_text(text.replace("sources: []\n", "").replace("  every: 150\n", "  every: 150\n  every: 30\n"))
    assert "key 'every' repeats" in _one_line(_ingest(p))


# -- item 17: fps is a sensible rate ------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [1e-320, 1e-9, 0, -1, float("inf"), float("nan")])
def test_an_fps_that_is_not_a_sensible_rate_is_one_line(tmp_path, fps):
    p = lsp_manifest(tmp_path, [{"name": "dance", "kind": "video", "path": str(DANCE), "fps": fps}])
    assert "sources[0].fps" in _one_line(_ingest(p))


def test_the_smallest_fps_keeps_the_first_frame(tmp_path):
    p = lsp_manifest(tmp_path, [{"name": "dance", "kind": "video", "path": str(DANCE), "fps": 1e-4}])
    assert _ingest(p).exit_code == 0
    with Ledger(tmp_path / "ws") as led:
        assert [f.frame_index for f in led.frames(source="dance")] == [0]


# -- item 19: strata vs the labeling config, quoting in `init`, booleans as numbers, tiny video frames -------
def test_label_config_names_kept_in_the_core_are_the_configs_own(tmp_path):
    """The manifest may not import annotation/: its list must be every control name the config writes."""
    import re

    from annotation.labeling import label_config
    from iterate.core.manifest import LABEL_CONFIG_NAMES
    from iterate.loop.settings import labeling

    m = load_manifest(lsp_manifest(tmp_path, [], strata={"posture": ["up", "down"]}), check_sources=False)
    names = re.findall(r' name="([^"]+)"', label_config(labeling(m)))
    assert sorted(set(names) - {"posture"}) == sorted(LABEL_CONFIG_NAMES)


@pytest.mark.parametrize("name", ["visibility", "kp", "img"])
def test_a_stratum_named_like_a_labeling_control_is_refused(tmp_path, name):
    p = lsp_manifest(tmp_path, [], strata={name: ["a", "b"], "posture": ["up"]})
    line = _one_line(_ingest(p))
    assert "strata" in line and f"'{name}'" in line and "labeling config" in line


NASTY = [
    "a: b",
    "yes",
    "no",
    "null",
    "123",
    "1e3",
    "#hash",
    "- dash",
    "{x}",
    "[y]",
    "'q'",
    '"dq"',
    "a\nb",
    "tab\tx",
    "über ☃ 🙂",
    "*ref",
    "&anchor",
    "!tag",
    "% pct",
    "@at",
    "`tick`",
    " lead",
    "trail ",
    "",
    "a #b",
    "\x1e",
]


@pytest.mark.parametrize("name", NASTY)
def test_init_quotes_the_project_name(tmp_path, name):
    p = tmp_path / "m.yaml"
    r = CliRunner().invoke(app, ["init", "-m", str(p), "--project", name])
    assert r.exit_code == 0, r.output
    m = load_manifest(p, check_sources=False)
    assert m.project == name and m.label_studio.project_title == name


def test_init_quotes_the_coco_path(tmp_path):
    import shutil

    odd = tmp_path / "labels: v2, #1"
    odd.mkdir()
    coco = shutil.copy(SHARED / "mmpose_samples" / "coco" / "test_coco.json", odd / "a, b.json")
    p = tmp_path / "m.yaml"
    assert CliRunner().invoke(app, ["init", "-m", str(p), "--from-coco", str(coco)]).exit_code == 0
    assert load_manifest(p, check_sources=False).sources[0].path == str(coco)


@pytest.mark.parametrize(
    "where, over",
    [
        ("sources[0].every", {"sources": [{"name": "d", "kind": "video", "path": str(DANCE), "every": True}]}),
        ("sources[0].fps", {"sources": [{"name": "d", "kind": "video", "path": str(DANCE), "fps": True}]}),
        ("model.input_size", {"model": {"input_size": True}}),
        ("train.epochs", {"train": {"epochs": False}}),
        ("chunks", {"chunks": [True]}),
        ("selection.weights", {"selection": {"weights": {"flip": True}}}),
        ("keypoints.weights", {"keypoints": {"names": ["a", "b"], "weights": {"a": True}}}),
    ],
)
def test_booleans_are_not_numbers(tmp_path, where, over):
    if "keypoints" in over:
        over["keypoints"]["normalizer"] = {"kind": "person_box"}
    p = lsp_manifest(tmp_path, over.pop("sources", []), **over)
    line = _one_line(_ingest(p))
    assert where in line and "not true/false" in line


@pytest.mark.parametrize("size", [(12, 64), (64, 12)])
def test_video_frames_under_16_px_are_dropped_like_images(tmp_path, size):
    import cv2

    small = _write_video(tmp_path / "small.mp4", [cv2.resize(f, size) for f in _dance_frames(20)])
    p = lsp_manifest(tmp_path, [{"name": "small", "kind": "video", "path": str(small), "every": 5}])
    r = _ingest(p)
    assert r.exit_code == 0, r.output
    w, h = size
    assert f"4 frame(s) dropped ({w}×{h} pixels: a side is under 16 px)" in r.output.replace("\n", " ")
    with Ledger(tmp_path / "ws") as led:
        assert led.frames() == []
    assert _files(tmp_path / "ws" / "frames") == []
