import json
import shutil
from collections import Counter

import cv2
import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import dhash, ingest

from conftest import LSPET, SHARED, lsp_manifest, lspet_subset

IDS = list(range(7001, 7041))


@pytest.fixture
def lspet_manifest(tmp_path, lspet_coco):
    sub = lspet_subset(lspet_coco, IDS, tmp_path / "slice.coco.json")
    return lsp_manifest(
        tmp_path, [{"name": "slice", "kind": "coco", "path": str(sub), "images": str(LSPET), "split": "train"}]
    )


def test_ingest_lspet_slice_counts_labels_strata(lspet_manifest, lspet_coco):
    m = load_manifest(lspet_manifest)
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
        assert (s.added, s.labels_added, s.unreadable) == (40, 40, [])
        labels = led.current_labels()
        assert len(labels) == 40
        by_file = {f.path.rsplit("/", 1)[1]: lab for f, lab in labels}
        ann = {a["image_id"]: a for a in lspet_coco["annotations"]}
        a = ann[7001]
        got = by_file["im07001.jpg"]
        flat = [c for x, y, v in got.keypoints for c in (x, y, v)]
        assert flat == pytest.approx([float(c) for c in a["keypoints"]])
        want = Counter(ann[i]["attributes"]["posture"] for i in IDS)
        assert Counter(lab.attributes["posture"] for _, lab in labels) == want
        # re-ingest adds nothing
        (s2,) = ingest(m, led)
        assert (s2.added, s2.existing, s2.labels_added) == (0, 40, 0)
        assert len(led.frames()) == 40


def test_ingest_video_at_a_sampling_rate(tmp_path):
    video = SHARED / "sleap_dance" / "dance.mp4"
    p = lsp_manifest(
        tmp_path, [{"name": "dance", "kind": "video", "path": str(video), "every": 30}], selection={"dedup_hamming": 0}
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
        frames = led.frames(source="dance")
        assert s.added + s.duplicates == 15  # 450 frames, every 30th
        assert len(frames) == s.added >= 10
        assert sorted(f.frame_index for f in frames)[:2] == [0, 30]
        for f in frames:
            img = cv2.imread(f.path)
            assert img is not None and img.shape[:2] == (720, 406) == (f.height, f.width)
        (s2,) = ingest(m, led)
        assert s2.added == 0


def test_near_duplicate_video_frames_are_dropped(tmp_path):
    video = SHARED / "sleap_dance" / "dance.mp4"
    p = lsp_manifest(
        tmp_path, [{"name": "dance", "kind": "video", "path": str(video), "every": 1}], selection={"dedup_hamming": 10}
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
    assert s.added + s.duplicates == 450
    assert s.duplicates > 100  # consecutive frames at 30 fps are near-identical


def test_coco_visibility_0_1_2(tmp_path):
    coco_path = SHARED / "mmpose_samples" / "coco" / "test_coco.json"
    coco = json.loads(coco_path.read_text())
    names = coco["categories"][0]["keypoints"]
    p = lsp_manifest(
        tmp_path,
        [{"kind": "coco", "path": str(coco_path), "split": "train"}],
        keypoints={"names": names, "normalizer": {"kind": "person_box"}},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
        assert s.added == 4
        labeled_anns = [a for a in coco["annotations"] if any(a["keypoints"][2::3])]
        assert s.labels_added == len(labeled_anns)
        vis = Counter(v for _, lab in led.current_labels() for _, _, v in lab.keypoints)
        want = Counter(v for a in labeled_anns for v in a["keypoints"][2::3])
        assert vis == want and set(vis) == {0, 1, 2}


def test_wrong_keypoint_count_names_annotation_and_loses_nothing(tmp_path, lspet_manifest):
    m = load_manifest(lspet_manifest)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    bad = json.loads((SHARED / "mmpose_samples/coco/test_coco.json").read_text())
    bad_path = tmp_path / "bad.coco.json"
    bad_path.write_text(json.dumps(bad))
    import yaml

    d = yaml.safe_load(lspet_manifest.read_text())
    d["sources"].append(
        {"name": "bad", "kind": "coco", "path": str(bad_path), "images": str(SHARED / "mmpose_samples/coco")}
    )
    lspet_manifest.write_text(yaml.safe_dump(d))
    r = CliRunner().invoke(app, ["ingest", "-m", str(lspet_manifest)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "joint names differ" in r.output and "lacks neck, head_top" in r.output  # matched by name, not position
    for c in bad["categories"]:
        c.pop("keypoints", None)  # a file that names no joints: matched by count, which does not fit either
    bad_path.write_text(json.dumps(bad))
    r = CliRunner().invoke(app, ["ingest", "-m", str(lspet_manifest)])
    assert r.exit_code == 2
    assert f"annotation id {sorted(a['id'] for a in bad['annotations'])[0]}: 17 keypoints" in r.output
    assert "schema has 14" in r.output and "Traceback" not in r.output
    with Ledger(m.workspace_dir) as led:
        assert len(led.current_labels()) == 40


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (7001, 7002, 7003):
        shutil.copy(LSPET / "images" / f"im{i:05d}.jpg", folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    p = lsp_manifest(tmp_path, [{"kind": "images", "path": str(folder)}])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    assert "skipped:" in r.output and "broken.jpg" in r.output and "not a decodable image" in r.output
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        assert len(led.frames(split="pool")) == 3


def test_dhash_is_stable_under_resize():
    img = cv2.imread(str(LSPET / "images" / "im07001.jpg"), cv2.IMREAD_GRAYSCALE)
    h1 = dhash(img)
    h2 = dhash(cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2)))
    assert bin(h1 ^ h2).count("1") <= 6


def test_cli_init_ingest_status(tmp_path, lspet_coco):
    sub = lspet_subset(lspet_coco, IDS[:10], tmp_path / "slice.coco.json")
    p = tmp_path / "data_manifest.yaml"
    r = CliRunner().invoke(app, ["init", "-m", str(p), "--project", "p", "--from-coco", str(sub)])
    assert r.exit_code == 0, r.output
    m = load_manifest(p, check_sources=False)
    assert m.keypoints.names[0] == "right_ankle" and ["left_hip", "right_hip"] in [
        list(x) for x in m.keypoints.flip_pairs
    ]
    # the written source path is the COCO file; its images are relative to lspet/
    import yaml

    d = yaml.safe_load(p.read_text())
    d["sources"][0]["images"] = str(LSPET)
    p.write_text(yaml.safe_dump(d))
    assert CliRunner().invoke(app, ["init", "-m", str(p)]).exit_code == 2  # refuses to overwrite
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["status", "-m", str(p)])
    assert r.exit_code == 0, r.output
    assert "chunk plan (D = 1000)" in r.output
    assert "10%" in r.output and "40%" in r.output and "50%" in r.output


def test_ingest_while_busy(tmp_path, lspet_manifest):
    m = load_manifest(lspet_manifest)
    holder = Ledger(m.workspace_dir)
    holder.lock("iterate retrain")
    try:
        r = CliRunner().invoke(app, ["ingest", "-m", str(lspet_manifest)])
        assert r.exit_code == 3 and "busy" in r.output
    finally:
        holder.close()


def test_static_camera_video_keeps_distinct_poses(tmp_path):
    """The SLEAP dance clip (fixed camera): a whole-frame hash called frames 50-120 duplicates of frame 40 and
    kept 18 of 45; judged on the foreground (difference to the video's median background) it keeps ≥ 40."""
    video = SHARED / "sleap_dance" / "dance.mp4"
    p = lsp_manifest(tmp_path, [{"name": "dance", "kind": "video", "path": str(video), "every": 10}])
    m = load_manifest(p)
    assert m.selection.dedup_hamming == 4  # the default threshold
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
    assert s.added + s.duplicates == 45 and s.added >= 40


def test_exact_repeats_in_a_video_are_dropped(tmp_path):
    import numpy as np

    path = tmp_path / "repeats.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 160))
    for i in (7001, 7002, 7003, 7004, 7005):
        img = cv2.resize(cv2.imread(str(LSPET / "images" / f"im{i:05d}.jpg")), (160, 160))
        for _ in range(3):  # each picture three times in a row: intra-only MJPG decodes them identically
            w.write(img)
    w.release()
    p = lsp_manifest(tmp_path, [{"name": "rep", "kind": "video", "path": str(path), "every": 1}])
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
        imgs = [cv2.imread(f.path) for f in led.frames()]
    assert (s.added, s.duplicates) == (5, 10)
    assert len({im.tobytes() for im in imgs}) == 5 and not any(np.array_equal(imgs[0], x) for x in imgs[1:])


def test_image_folder_from_a_fixed_camera_keeps_distinct_pictures_and_drops_the_same(tmp_path):
    """Frames of the dance clip exported as images (the seed's crib camera writes files too): a whole-frame
    hash called most of them duplicates; ingest now drops only the same picture."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(SHARED / "sleap_dance" / "dance.mp4"))
    kept = 0
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % 10 == 0:
            cv2.imwrite(str(folder / f"f{i:04d}.png"), img)
            kept += 1
        i += 1
    cap.release()
    shutil.copy(folder / "f0000.png", folder / "f0000_copy.png")  # the same picture twice
    p = lsp_manifest(tmp_path, [{"name": "cam", "kind": "images", "path": str(folder)}])
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        (s,) = ingest(m, led)
    assert (s.added, s.duplicates) == (kept, 1)


def test_every_source_kind_of_the_manifest_has_one_reader():
    """Source kinds sit behind a registry (iterate/loop/ingest/registry.py): one module per kind, no dispatch chain."""
    from typing import get_args

    from iterate.core.manifest import Source
    from iterate.loop.ingest import READERS

    assert set(READERS) == set(get_args(Source.model_fields["kind"].annotation))
    assert READERS["video"].cut_frames and READERS["sleap"].cut_frames and not READERS["coco"].cut_frames
