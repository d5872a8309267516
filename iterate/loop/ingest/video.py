"""``kind: video`` — every Nth frame (``every``, or ``fps``) of a video within ``start``/``end``, cut into the
workspace as PNG; near-duplicates among one video's frames dropped by their foreground hash."""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2

from iterate.core.images import size_problem
from iterate.core.manifest import Manifest, Source
from iterate.loop.ingest.common import (
    SourceSummary,
    _cut_item,
    _frames_dir,
    _ingest_frames,
    _Item,
    _median_background,
    _video_key,
)
from iterate.loop.ingest.registry import reader


def _step(src: Source, video_fps: float, n: int) -> int:
    """Keep every Nth frame: ``every``, or the video's rate over ``fps`` (a rate the file does not give, or gives
    as nonsense, is taken as 30); at least 1 and at most the video's length (frame 0 is always kept)."""
    if not src.fps:
        return src.every
    vfps = video_fps if math.isfinite(video_fps) and 0 < video_fps < 10_000 else 30.0
    return max(1, min(n, round(min(vfps / src.fps, n))))


def _video_items(m: Manifest, src: Source, s: SourceSummary) -> Iterator[tuple[int, _Item]]:
    path = m.resolve(src.path)
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    if not cap.isOpened() or n <= 0:
        s.unreadable.append(f"{path} (cannot open video)")
        cap.release()
        return
    step = _step(src, cap.get(cv2.CAP_PROP_FPS), n)
    first, stop = src.start or 0, min(n, src.end) if src.end is not None else n  # frames first ≤ i < stop
    if first >= n:
        s.notes.append(f"{src.label}: start {first} lies past the video's last frame ({n} frames): no frame taken")
        cap.release()
        return
    total = (stop - first + step - 1) // step
    background = _median_background(path, n)
    out_dir, key = _frames_dir(m, src), _video_key(path)
    idx, dropped = 0, {}  # why → frames refused by the images' size rule (a side under 16 px, …)
    try:
        while idx < stop:
            ok = cap.grab()
            if not ok:
                if idx < n - 1 or idx == 0:
                    s.unreadable.append(f"{path} (stopped decoding at frame {idx} of {n})")
                break
            if idx >= first and (idx - first) % step == 0:
                ok, img = cap.retrieve()
                if not ok or img is None:
                    s.unreadable.append(f"{path} frame {idx}")
                elif why := size_problem(img.shape[1], img.shape[0]):
                    dropped[why] = dropped.get(why, 0) + 1
                else:
                    yield total, _cut_item(m, path, idx, img, background, out_dir / f"{key}_{idx:06d}.png")
            idx += 1
    finally:
        cap.release()
    s.unreadable.extend(f"{path}: {k} frame(s) dropped ({why})" for why, k in dropped.items())


@reader("video", cut_frames=True)
def read_video(m, ledger, src, s, by_hash, progress) -> None:
    _ingest_frames(m, ledger, src, _video_items(m, src, s), s, by_hash, progress)
