"""``kind: sleap`` — a SLEAP ``.slp`` file's labeled frames, cut from its video."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2

from iterate.core.errors import IterateError
from iterate.core.files import write_bytes_atomic
from iterate.core.images import printable, size_problem
from iterate.core.ledger import Frame
from iterate.loop.ingest.common import _add_imported_label, _frame_id, _frames_dir, _rel, _video_key, dhash
from iterate.loop.ingest.registry import reader


def _sleap_read(path: Path, want: list[str]) -> tuple[str, dict[int, list[list[list[float]]]]]:
    """A SLEAP ``.slp`` → (the video's file name, frame index → user-labeled instances as [[x, y, v]] in schema
    order). Points are stored in the skeleton's node order (not the file's global node list); a node marked not
    visible with coordinates is occluded (1), one without coordinates is not labeled (0). Predicted instances
    are left out."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - a dependency of the project
        raise IterateError("reading SLEAP files needs h5py: pip install h5py") from None
    try:
        with h5py.File(path, "r") as f:
            md = json.loads(f["metadata"].attrs["json"])
            frames, instances, points = f["frames"][:], f["instances"][:], f["points"][:]
            videos = [json.loads(v) for v in f["videos_json"][:]] if "videos_json" in f else md.get("videos", [])
    except (OSError, KeyError, ValueError) as e:
        raise IterateError(f"{path}: not a readable SLEAP labels file ({type(e).__name__}: {e})") from None
    names = [n["name"] for n in md["nodes"]]
    skels = md.get("skeletons") or []
    if len(skels) != 1:
        raise IterateError(f"{path}: {len(skels)} skeletons; iterate reads one")
    order = [names[n["id"]] for n in skels[0]["nodes"]]
    if sorted(order) != sorted(want):
        missing = [n for n in want if n not in order]
        extra = [n for n in order if n not in want]
        raise IterateError(
            f"{path}: skeleton nodes differ from the manifest's keypoints.names (matched by name): the "
            f"file lacks {', '.join(missing) or 'none'}; it has {', '.join(extra) or 'none'}"
        )
    if len(videos) != 1:
        raise IterateError(f"{path}: {len(videos)} videos; give one SLEAP file per video")
    video = Path(str((videos[0].get("backend") or {}).get("filename") or videos[0].get("filename") or "")).name
    by_frame: dict[int, list] = {}
    for fr in frames:
        for inst in instances[int(fr["instance_id_start"]) : int(fr["instance_id_end"])]:
            if int(inst["instance_type"]) != 0:  # 1 = predicted: not a label
                continue
            pts = points[int(inst["point_id_start"]) : int(inst["point_id_end"])]
            kp = {}
            for node, p in zip(order, pts):
                x, y = float(p["x"]), float(p["y"])
                if math.isfinite(x) and math.isfinite(y):
                    kp[node] = [x, y, 2 if bool(p["visible"]) else 1]
            row = [kp.get(n, [0.0, 0.0, 0]) for n in want]
            if any(v > 0 for _, _, v in row):
                by_frame.setdefault(int(fr["frame_idx"]), []).append(row)
    return video, by_frame


def _ingest_sleap(m, ledger, src, s, by_hash, progress) -> None:
    """A SLEAP project (``.slp``): the user-labeled frames of its video, cut into the workspace as PNG, each
    person an instance (nodes matched by name). The video is ``video:`` or the referenced file next to the .slp."""
    path = m.resolve(src.path)
    video_name, by_frame = _sleap_read(path, list(m.keypoints.names))
    video = m.resolve(src.video) if src.video else path.parent / video_name
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise IterateError(f"{path}: its video {video} cannot be opened (set `video:` on the source)")
    out_dir, key = _frames_dir(m, src), _video_key(video)
    cut = []
    try:
        for idx in sorted(by_frame):
            cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
            ok, img = cap.read()
            if not ok or img is None:
                s.unreadable.append(f"{printable(video)} frame {idx}")
                continue
            if why := size_problem(img.shape[1], img.shape[0]):  # the images' rule, for cut frames too
                s.unreadable.append(f"{printable(video)} frame {idx} dropped ({why})")
                continue
            png = out_dir / f"{key}_{idx:06d}.png"
            if not png.exists():
                write_bytes_atomic(png, cv2.imencode(".png", img)[1].tobytes(), "frame")
            cut.append((idx, png, img))
    finally:
        cap.release()
    with ledger.transaction():
        for n, (idx, png, img) in enumerate(cut, 1):
            if progress:
                progress(src.label, n, len(cut))
            fid = _frame_id(src.label, _rel(m, video), idx)
            if ledger.frame(fid) is None:
                ledger.add_frame(
                    Frame(
                        id=fid,
                        path=str(png.resolve()),
                        source=src.label,
                        video=str(video),
                        frame_index=idx,
                        width=img.shape[1],
                        height=img.shape[0],
                        content_hash=hashlib.sha1(img.tobytes()).hexdigest(),
                        phash=dhash(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)),
                        split=src.split,
                    )
                )
                s.added += 1
            else:
                s.existing += 1
            for inst, kps in enumerate(by_frame[idx]):
                _add_imported_label(m, ledger, s, fid, kps, {}, path.name, source="sleap", instance=inst)


reader("sleap", cut_frames=True)(_ingest_sleap)
