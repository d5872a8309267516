"""Register frames (image folders, sampled video frames, COCO-keypoints files) and existing labels.

Re-running adds only what is new: a frame's id is a hash of its source, relative path and frame index;
labels equal to the current version are not added again. The same picture (equal bytes, or equal pixels for
video frames) is dropped and counted; among one video's frames, near-duplicates too (difference hash of the
frame's difference to the video's median background within ``selection.dedup_hamming`` bits). Distinct
pictures in image folders are all kept: with a fixed camera the background would make them look alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from annotation.labeling import BadAnnotation, parse_result
from iterate.core.coco import (
    ann_key,
    coco_head_box,
    coco_keypoints,
    declared_size,
    image_size,
    read_coco,
    read_json,
    size_mismatch,
)
from iterate.core.errors import IterateError
from iterate.core.files import write_bytes_atomic
from iterate.core.images import IMAGE_EXTS, decode, nameable, printable, read_bytes, size_problem
from iterate.core.ledger import Frame, Ledger
from iterate.core.manifest import Manifest, Source
from iterate.core.strata import has_torso
from iterate.loop.settings import label_attributes, labeling

_BATCH = 256

Progress = Callable[[str, int, int | None], None]  # (source, done, total)


@dataclass
class SourceSummary:
    source: str
    kind: str
    split: str
    added: int = 0
    existing: int = 0
    duplicates: int = 0
    unreadable: list[str] = field(default_factory=list)
    labels_added: int = 0
    labels_skipped: int = 0
    held_out: int = 0  # pool frames dropped: the same picture as a val/test/train frame (never selectable)
    unknown_strata: dict[str, int] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # frame ids whose file differs from what was ingested
    missing: list[str] = field(default_factory=list)  # frame ids whose file is gone
    dropped: list[str] = field(default_factory=list)  # "what (why)": duplicates and pool frames held out
    notes: list[str] = field(default_factory=list)  # lines for the user: what was skipped and why


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash of a grey image (robust to resizing and small intensity changes)."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def foreground_hash(gray: np.ndarray, background: np.ndarray) -> int:
    """dHash of where the picture differs from the video's median background: with a fixed camera the
    background decides a whole-frame hash, and distinct poses of one person would look alike."""
    diff = cv2.absdiff(gray, background)
    return dhash(cv2.GaussianBlur(diff, (5, 5), 0))


def _median_background(video: Path, n: int, samples: int = 25) -> np.ndarray | None:
    """The median of up to ``samples`` frames spread over the video, read with a capture of its own (seeking
    back to the start after the last frame fails in some files: a 1-frame video then gave no frame)."""
    if n < 3:
        return None
    cap, frames = cv2.VideoCapture(str(video)), []
    try:
        for i in np.linspace(0, n - 1, min(samples, n)).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            ok, img = cap.read()
            if ok and img is not None:
                frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    finally:
        cap.release()
    if len(frames) < 3 or len({f.shape for f in frames}) != 1:
        return None
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


class _NearDuplicates:
    """Hamming-distance index over 64-bit hashes; vectorised, grows as frames are added."""

    def __init__(self, hashes: Iterable[int], max_distance: int):
        self.max_distance = max_distance
        self._h = np.array(list(hashes), dtype=np.uint64)
        self._n = len(self._h)

    def is_duplicate(self, h: int) -> bool:
        if self._n == 0:
            return False
        x = np.bitwise_xor(self._h[: self._n], np.uint64(h))
        d = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        return bool(d.min() <= self.max_distance)

    def add(self, h: int) -> None:
        if self._n == len(self._h):
            self._h = np.concatenate([self._h, np.zeros(max(64, self._n), dtype=np.uint64)])
        self._h[self._n] = np.uint64(h)
        self._n += 1


def _frames_dir(m: Manifest, src: Source) -> Path:
    """``<workspace>/frames/<source name>``, created; refused unless it resolves to a folder inside the workspace
    (a name is checked when the manifest loads; this guards the write itself, e.g. against a planted symlink)."""
    ws = m.workspace_dir
    d = (ws / "frames" / src.label).resolve()
    if ws not in d.parents:
        raise IterateError(f"sources: {src.label!r}: its frames folder {printable(d)} lies outside the workspace {ws}")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _video_key(video: Path) -> str:
    """``<stem>_<content hash>``: the prefix of the frames cut from this video. Two different videos (one file
    name in two folders, or a file changed in place) never share a frame file."""
    h = hashlib.sha1()
    with open(video, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"{video.stem}_{h.hexdigest()[:12]}"


def _where(path: Path | None, fidx: int | None) -> str:
    """A dropped item as a user finds it: the file, or the video frame (its index)."""
    return printable(path) if fidx is None else f"frame {fidx} ({printable(path)})"


def _frame_id(source: str, rel: str, index: int | None) -> str:
    return hashlib.sha1(f"{source}\0{rel}\0{index}".encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _rel(m: Manifest, p: Path) -> str:
    try:
        return str(p.resolve().relative_to(m.root))
    except ValueError:
        return str(p.resolve())


def _decode(path: Path) -> tuple[bytes, np.ndarray] | str:
    """→ (bytes, image), or why the file is skipped (it is named, never a traceback)."""
    if not nameable(path):
        return "the file name is not valid UTF-8: rename it"
    data = read_bytes(path)
    img, why = decode(data)
    return (data, img) if img is not None else why


def ingest(manifest: Manifest, ledger: Ledger, progress: Progress | None = None) -> list[SourceSummary]:
    """Ingest every source of the manifest. Raises IterateError on a COCO file that does not fit the schema.
    Labels get the strata the manifest derives from the keypoints where they carry none (also labels stored
    before the manifest derived them)."""
    ledger.set_label_attributes(label_attributes(manifest))
    by_hash = ledger.frame_ids_by_hash()
    out = []
    for src in manifest.sources:
        s = SourceSummary(src.label, src.kind, src.split)
        if src.kind == "images":
            _ingest_frames(manifest, ledger, src, _image_items(manifest, src, s), s, by_hash, progress)
        elif src.kind == "video":
            _ingest_frames(manifest, ledger, src, _video_items(manifest, src, s), s, by_hash, progress)
        elif src.kind == "labelstudio":
            _ingest_labelstudio(manifest, ledger, src, s, by_hash, progress)
        elif src.kind == "dlc":
            _ingest_dlc(manifest, ledger, src, s, by_hash, progress)
        elif src.kind == "sleap":
            _ingest_sleap(manifest, ledger, src, s, by_hash, progress)
        else:
            _ingest_coco(manifest, ledger, src, s, by_hash, progress)
        _check_existing(ledger, src, s)
        _say_if_nothing_added(manifest, src, s)
        out.append(s)
    _drop_pool_leaks(ledger, out)
    for s in out:
        if s.held_out:
            s.notes.append(
                f"{s.source}: {s.held_out} pool frame(s) dropped: the same picture as a val/test/train frame (never "
                "selectable, never trained on as pool)"
            )
    _fill_derived_strata(manifest, ledger, out)
    return out


DROPPED_FILE = "ingest-dropped.txt"


def write_dropped(m: Manifest, summaries: list[SourceSummary]) -> tuple[Path | None, int]:
    """This ingest's dropped items — duplicates and near-duplicates, pool frames held out as the same picture as a
    fixed split's, unreadable or refused files — one per line (``source<TAB>what (why)``) in the workspace's
    ``ingest-dropped.txt``; → (that file, the number of lines), (None, 0) when nothing was dropped (an older list
    is removed: it would describe another run)."""
    path = m.workspace_dir / DROPPED_FILE
    lines = [f"{s.source}\t{x}" for s in summaries for x in [*s.dropped, *s.unreadable]]
    if not lines:
        path.unlink(missing_ok=True)
        return None, 0
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    tmp.replace(path)
    return path, len(lines)


def _fixed_over_pool(ledger: Ledger, src: Source, existing_id: str) -> bool:
    """True when a fixed-split source (val/test/train) brings a picture the pool already holds: the fixed frame is
    registered, and :func:`_drop_pool_leaks` takes the pool's copy out of the pool."""
    if src.split == "pool":
        return False
    f = ledger.frame(existing_id)
    return f is not None and f.split == "pool"


def _is_held_out(ledger: Ledger, src: Source, existing_id: str) -> bool:
    """True when a pool source brings a picture a fixed split already holds (dropped from the pool, counted)."""
    if src.split != "pool":
        return False
    f = ledger.frame(existing_id)
    return f is not None and f.split != "pool"


def _drop_pool_leaks(ledger: Ledger, out: list[SourceSummary]) -> None:
    """A pool frame that is the same picture (content hash) as a val, test or train frame is retired: it is never
    selectable, and a val/test picture never trains. Counted on its pool source."""
    fixed = {}
    for f in ledger.frames():
        if f.split != "pool":
            fixed.setdefault(f.content_hash, f)
    leaks = [(f, fixed[f.content_hash]) for f in ledger.frames("pool") if f.content_hash in fixed]
    if not leaks:
        return
    by_source = {s.source: s for s in out}
    with ledger.transaction():
        for f, twin in leaks:
            ledger.retire_frames([f.id], f"the same picture as {twin.split} frame {twin.id}: never in the pool")
            s = by_source.get(f.source)
            if s is not None:
                s.held_out += 1
                s.dropped.append(f"{f.path} (frame {f.id}: the same picture as {twin.split} frame {twin.id})")


def _fill_derived_strata(m: Manifest, ledger: Ledger, out: list[SourceSummary]) -> None:
    """Labels stored before the manifest derived a stratum (synced, or imported earlier) get it now, as a new
    version of the same keypoints; and a joint set without a torso is told its torso angle is always unknown."""
    derived = m.derived_strata
    if not derived:
        return
    by_source = {s.source: s for s in out}
    filled: dict[str, int] = {}
    with ledger.transaction():
        for f, lab in ledger.current_labels():
            if all(lab.attributes.get(k) not in (None, "") for k in derived):
                continue
            v = ledger.add_label(
                f.id,
                lab.keypoints,
                source=lab.source,
                instance=lab.instance,
                bbox=lab.bbox,
                attributes=lab.attributes,
                annotator=lab.annotator,
                ls_task_id=lab.ls_task_id,
                ls_annotation_id=lab.ls_annotation_id,
                head_box=lab.head_box,
            )
            if v is not None:
                filled[f.source] = filled.get(f.source, 0) + 1
    keys = ", ".join(derived)
    for source, n in filled.items():
        if source in by_source:
            by_source[source].notes.append(f"{source}: filled the derived strata ({keys}) of {n} earlier label(s)")
    torso = [k for k, d in derived.items() if d.rule == "torso_angle"]
    if torso and not has_torso(m.keypoints.names):
        for s in out:
            if s.labels_added or s.labels_skipped:
                s.notes.append(
                    f"{s.source}: {torso[0]} is derived from the torso angle, but keypoints.names has no hip with a "
                    f"neck or shoulder: every label's {torso[0]} is '{derived[torso[0]].values[-1]}' (declare it as a "
                    "list and set it in Label Studio, or leave it out of strata)"
                )


def _say_if_nothing_added(m: Manifest, src: Source, s: SourceSummary) -> None:
    """A source that brings no frame at all (none found, all duplicates or unreadable) is said, never silent."""
    if s.added or s.existing:
        return
    if s.duplicates or s.unreadable:
        why = f"{s.duplicates} duplicate(s) of frames already ingested, {len(s.unreadable)} skipped"
    else:
        why = f"no {'images' if src.kind == 'images' else 'frames'} found in {printable(m.resolve(src.path))}"
    s.notes.append(f"{src.label}: added no frames ({why})")


def _check_existing(ledger: Ledger, src: Source, s: SourceSummary) -> None:
    """Frames of this source registered earlier: is each file still there, and still the same picture?"""
    if src.kind in ("video", "sleap"):  # frames cut into the workspace; the video is read again on each ingest
        return
    for f in ledger.frames(source=src.label):
        data = read_bytes(f.path)
        if data is None:
            s.missing.append(f.id)
        elif hashlib.sha1(data).hexdigest() != f.content_hash:
            s.changed.append(f.id)


# -- image folders and videos -----------------------------------------------------------------------
# rel, index, path, bytes, image, near-duplicate hash (video frames: of the foreground)
_Item = tuple[str, int | None, Path | None, bytes | None, np.ndarray | None, int | None]


def _in_a_workspace(m: Manifest, root: Path, p: Path) -> bool:
    """True for a file of this workspace (its cut frames, plots, models), or under an ``.iterate*`` folder below
    the source's folder (another workspace, the demo's)."""
    r, ws = p.resolve(), m.workspace_dir
    return ws in r.parents or any(part.startswith(".iterate") for part in p.relative_to(root).parts[:-1])


def _image_items(m: Manifest, src: Source, s: SourceSummary) -> Iterator[tuple[int, _Item]]:
    root = m.resolve(src.path)
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    files = [p for p in found if not _in_a_workspace(m, root, p)]
    if len(files) < len(found):
        s.notes.append(
            f"{src.label}: skipped {len(found) - len(files)} image(s) inside the workspace "
            f"({printable(m.workspace_dir)}) or an .iterate* folder: iterate never ingests its own files"
        )
    for p in files:  # decoded lazily, after the "already registered" check
        yield len(files), (_rel(m, p), None, p, None, None, None)


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


def _cut_item(m: Manifest, video: Path, idx: int, img: np.ndarray, background, png: Path) -> _Item:
    """One sampled video frame: its PNG bytes, and its near-duplicate hash (of the foreground, when the video's
    background is known)."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    fits = background is not None and background.shape == gray.shape
    h = foreground_hash(gray, background) if fits else dhash(gray)
    return _rel(m, video), idx, png, cv2.imencode(".png", img)[1].tobytes(), img, h


def _ingest_frames(m, ledger, src, items, s, by_hash, progress) -> None:
    done = 0
    pending: list[tuple[Frame, Path | None, bytes | None]] = []

    def flush():
        with ledger.transaction():
            for f, write_to, data in pending:
                if write_to is not None and data is not None and not write_to.exists():
                    write_bytes_atomic(write_to, data, "frame")
                ledger.add_frame(f)
        pending.clear()

    # near-duplicates only among one video's frames, by their foreground hash; elsewhere only the same picture
    index = (
        _NearDuplicates((f.phash % (1 << 64) for f in ledger.frames(source=src.label)), m.selection.dedup_hamming)
        if src.kind == "video"
        else None
    )
    for total, (rel, fidx, path, data, img, pre_h) in items:
        done += 1
        if progress:
            progress(src.label, done, total)
        fid = _frame_id(src.label, rel, fidx)
        if ledger.frame(fid) is not None:
            s.existing += 1
            continue
        if img is None:
            dec = _decode(path)
            if isinstance(dec, str):
                s.unreadable.append(f"{printable(path)} ({dec})")
                continue
            data, img = dec
        chash = hashlib.sha1(data).hexdigest() if fidx is None else hashlib.sha1(img.tobytes()).hexdigest()
        h = pre_h if pre_h is not None else dhash(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        # the same picture is dropped anywhere (a fixed split's copy wins over the pool's); a near-duplicate only
        # among one video's frames, judged on the foreground (image folders keep every distinct picture: `select`'s
        # k-center on embeddings spreads them)
        twin = by_hash.get(chash)
        if twin is not None and _is_held_out(ledger, src, twin):
            s.held_out += 1
            s.dropped.append(f"{_where(path, fidx)} (the same picture as {ledger.frame(twin).split} frame {twin})")
            continue
        if twin is not None and not _fixed_over_pool(ledger, src, twin):
            s.duplicates += 1
            s.dropped.append(f"{_where(path, fidx)} (the same picture as frame {twin})")
            continue
        if index is not None and index.is_duplicate(h):
            s.duplicates += 1
            s.dropped.append(
                f"{_where(path, fidx)} (a near-duplicate of an earlier frame of this video, within "
                f"{m.selection.dedup_hamming} bits)"
            )
            continue
        is_video = fidx is not None
        f = Frame(
            id=fid,
            path=str(path.resolve()),
            source=src.label,
            video=str(m.resolve(src.path)) if is_video else None,
            frame_index=fidx,
            width=img.shape[1],
            height=img.shape[0],
            content_hash=chash,
            phash=h,
            split=src.split,
        )
        pending.append((f, path if is_video else None, data if is_video else None))
        by_hash[chash] = fid
        if index is not None:
            index.add(h)
        s.added += 1
        if len(pending) >= _BATCH:
            flush()
    if pending:
        flush()


def _ingest_coco(m, ledger, src, s, by_hash, progress) -> None:
    path = m.resolve(src.path)
    coco, order = read_coco(m.keypoints.spec(), path)
    img_dir = m.resolve(src.images) if src.images else path.parent
    anns_by_image: dict = {}
    for a in sorted(coco["annotations"], key=ann_key):
        anns_by_image.setdefault(a.get("image_id"), []).append(a)
    # validate every annotation before anything is written
    parsed = (
        {
            iid: [
                (a, coco_keypoints(m.keypoints.spec(), a, order, path, image_size(coco, iid)), coco_head_box(a, path))
                for a in anns
            ]
            for iid, anns in anns_by_image.items()
        }
        if src.labels
        else {}
    )
    images = coco["images"]
    with ledger.transaction():
        for n, im in enumerate(images, 1):
            if progress:
                progress(src.label, n, len(images))
            p = img_dir / str(im.get("file_name", ""))
            fid = _register_image(m, ledger, src, s, by_hash, _rel(m, p), p, declared=declared_size(im))
            if fid is None:
                continue
            labeled = [(a, k, hb) for a, k, hb in parsed.get(im.get("id"), []) if any(v > 0 for _, _, v in k)]
            for inst, (a, kps, head_box) in enumerate(labeled):
                bbox = [float(x) for x in a["bbox"]] if a.get("bbox") else None
                _add_imported_label(
                    m,
                    ledger,
                    s,
                    fid,
                    kps,
                    dict(a.get("attributes") or {}),
                    path.name,
                    source="coco",
                    instance=inst,
                    bbox=bbox,
                    head_box=head_box,
                )


# -- Label Studio JSON exports --------------------------------------------------------------------------
def _ls_image_path(img_dir: Path, ref: str) -> tuple[str, Path] | None:
    """A task's image reference (local-files URL ``/data/local-files/?d=rel``, an upload or web URL, or a
    path) → (relative path, file under ``img_dir``; the file's name alone when the relative path is not there),
    or None when that file, resolved (``..``, symlinks), lies outside ``img_dir``."""
    from urllib.parse import parse_qs, unquote, urlparse

    u = urlparse(ref)
    rel = parse_qs(u.query).get("d", [None])[0] if "local-files" in u.path else None
    rel = unquote(rel or (u.path if u.scheme or ref.startswith("/data/") else ref)).lstrip("/")
    p = img_dir / rel
    p = p if p.is_file() else img_dir / Path(rel).name
    root, r = img_dir.resolve(), p.resolve()
    return (rel, p) if r == root or root in r.parents else None


def _ingest_labelstudio(m, ledger, src, s, by_hash, progress) -> None:
    """A Label Studio JSON export (the full `JSON` format, which keeps region ids): each task's image, and its
    newest submitted annotation as a label (joints by name, `occluded` regions as visibility 1, strata from the
    image-level choices). Every annotation is parsed before anything is written."""
    setup = labeling(m)
    path = m.resolve(src.path)
    tasks = read_json(path, "Label Studio export")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise IterateError(
            f"{path}: expected a Label Studio JSON export (a list of tasks); use the full `JSON` "
            "export, not JSON_MIN (it drops the region ids that carry visibility)"
        )
    img_dir = m.resolve(src.images) if src.images else path.parent
    parsed = []
    for t in tasks:
        data = t.get("data") if isinstance(t.get("data"), dict) else {}
        ref = data.get("image") or next((v for v in data.values() if isinstance(v, str)), None)
        if not isinstance(ref, str):
            raise IterateError(f"{path}: task {t.get('id')}: no image in its data")
        anns = [a for a in t.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        anns.sort(key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), str(a.get("id", ""))))
        label = None
        if anns and src.labels:
            try:
                kps, attrs = parse_result(setup, anns[-1].get("result") or [])
            except BadAnnotation as e:
                raise IterateError(f"{path}: task {t.get('id')}, annotation {anns[-1].get('id')}: {e}") from None
            if any(v > 0 for _, _, v in kps):
                who = anns[-1].get("completed_by")
                label = (kps, attrs, f"{path.name} task {t.get('id')} by {who}")
        found = _ls_image_path(img_dir, ref)
        if found is None:
            raise IterateError(
                f"{path}: task {t.get('id')}: image {ref!r} lies outside the images folder {img_dir} "
                "(set the source's `images:` to the folder that holds the task images)"
            )
        parsed.append((t.get("id"), *found, label))
    with ledger.transaction():
        for n, (tid, rel, p, label) in enumerate(parsed, 1):
            if progress:
                progress(src.label, n, len(parsed))
            fid = _register_image(m, ledger, src, s, by_hash, rel, p, f"task {tid}")
            if fid is not None and label is not None:
                _add_imported_label(m, ledger, s, fid, *label, source="labelstudio-export")


def _register_image(
    m, ledger, src, s, by_hash, rel: str, p: Path, what: str | None = None, declared=None
) -> str | None:
    """One labeled image of a COCO file or an imported project → its frame id (registered now or before, decoded
    only when new), or None when it is skipped (unreadable, the same picture as a registered frame, or not the
    ``declared`` (width, height) its labels were made on)."""
    fid = _frame_id(src.label, rel, None)

    def skip(why: str) -> None:
        s.unreadable.append(f"{printable(p)} ({what + ': ' if what else ''}{why})")

    old = ledger.frame(fid)
    if old is not None:
        why = size_mismatch(declared, old.width, old.height)
        if why:
            return skip(why)
        s.existing += 1
        return fid
    dec = _decode(p)
    why = dec if isinstance(dec, str) else size_mismatch(declared, dec[1].shape[1], dec[1].shape[0])
    if why:
        return skip(why)
    data, img = dec
    chash = hashlib.sha1(data).hexdigest()
    twin = by_hash.get(chash)
    if twin is not None and _is_held_out(ledger, src, twin):
        s.held_out += 1
        s.dropped.append(f"{printable(p)} (the same picture as {ledger.frame(twin).split} frame {twin})")
        return None
    if twin is not None and not _fixed_over_pool(ledger, src, twin):
        s.duplicates += 1
        s.dropped.append(f"{printable(p)} (the same picture as frame {twin})")
        return None
    h = dhash(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    ledger.add_frame(
        Frame(
            id=fid,
            path=str(p.resolve()),
            source=src.label,
            video=None,
            frame_index=None,
            width=img.shape[1],
            height=img.shape[0],
            content_hash=chash,
            phash=h,
            split=src.split,
        )
    )
    by_hash[chash] = fid
    s.added += 1
    return fid


def _add_imported_label(m, ledger, s, fid: str, kps, attrs: dict, who: str, *, source: str, **label) -> None:
    """A label read from a file: counted as added or unchanged; stratum values outside the manifest counted."""
    for key, val in attrs.items():
        allowed = m.strata.get(key)
        if allowed and val not in allowed:
            s.unknown_strata[f"{key}={val}"] = s.unknown_strata.get(f"{key}={val}", 0) + 1
    v = ledger.add_label(fid, kps, source=source, attributes=attrs, annotator=who, **label)
    if v is None:
        s.labels_skipped += 1
    else:
        s.labels_added += 1


# -- DeepLabCut projects ------------------------------------------------------------------------------
def _dlc_rows(path: Path, csv_path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A DeepLabCut `CollectedData_*.csv` → (bodyparts in column order, [(image path, x/y cells)])."""
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IterateError(f"{csv_path}: cannot read the DeepLabCut labels ({e})") from None
    head = {r[0]: r for r in rows[:4] if r}
    if "bodyparts" not in head or "coords" not in head:
        raise IterateError(f"{csv_path}: not a DeepLabCut CollectedData file (no 'bodyparts' and 'coords' header rows)")
    if "individuals" in head:
        raise IterateError(f"{csv_path}: a multi-animal DeepLabCut project: iterate labels one person per frame")
    coords = head["coords"]
    first = next(i for i, c in enumerate(coords) if c in ("x", "y"))
    parts = head["bodyparts"][first:]
    names = [parts[i] for i in range(0, len(parts), 2)]
    if coords[first:] != ["x", "y"] * len(names):
        raise IterateError(f"{csv_path}: coords header is not x, y per bodypart")
    data = []
    for r in rows[rows.index(coords) + 1 :]:
        if not r:
            continue
        img = "/".join(c for c in r[:first] if c)
        data.append((img, r[first : first + 2 * len(names)]))
    return names, data


def _ingest_dlc(m, ledger, src, s, by_hash, progress) -> None:
    """A DeepLabCut project (its `config.yaml`): every `labeled-data/*/CollectedData_*.csv`, bodyparts matched
    to the schema by name; a labeled point is visible (2), an empty cell not labeled (0)."""
    path = m.resolve(src.path)
    try:
        cfg = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise IterateError(f"{path}: cannot read the DeepLabCut config ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("bodyparts"), list):
        raise IterateError(f"{path}: not a DeepLabCut config.yaml (no bodyparts list)")
    if cfg.get("multianimalproject"):
        raise IterateError(f"{path}: a multi-animal DeepLabCut project: iterate labels one person per frame")
    root = path.parent
    want = list(m.keypoints.names)
    files = sorted((root / "labeled-data").glob("*/CollectedData_*.csv"))
    if not files:
        raise IterateError(f"{path}: no labeled-data/*/CollectedData_*.csv next to it")
    parsed = []
    for f in files:
        names, rows = _dlc_rows(path, f)
        if sorted(names) != sorted(want):
            missing = [n for n in want if n not in names]
            extra = [n for n in names if n not in want]
            raise IterateError(
                f"{f}: bodyparts differ from the manifest's keypoints.names (matched by name): the file "
                f"lacks {', '.join(missing) or 'none'}; it has {', '.join(extra) or 'none'}"
            )
        for img, cells in rows:
            kps = []
            for name in want:
                k = names.index(name)
                cx, cy = cells[2 * k].strip(), cells[2 * k + 1].strip()
                if not cx and not cy:
                    kps.append([0.0, 0.0, 0])
                    continue
                try:
                    x, y = float(cx), float(cy)
                except ValueError:
                    raise IterateError(f"{f}: {img}: {name}: x, y must be numbers, found {cx!r}, {cy!r}") from None
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise IterateError(f"{f}: {img}: {name}: coordinates must be finite, found ({cx}, {cy})")
                kps.append([x, y, 2])
            parsed.append((f, img, root / img, kps))
    with ledger.transaction():
        for n, (f, rel, p, kps) in enumerate(parsed, 1):
            if progress:
                progress(src.label, n, len(parsed))
            fid = _register_image(m, ledger, src, s, by_hash, rel, p, f.name)
            if fid is None or not any(v > 0 for _, _, v in kps):
                continue
            fr = ledger.frame(fid)
            for (x, y, v), name in zip(kps, want):
                if v and not (-0.5 * fr.width <= x <= 1.5 * fr.width and -0.5 * fr.height <= y <= 1.5 * fr.height):
                    raise IterateError(
                        f"{f}: {rel}: {name} at ({x:g}, {y:g}) lies far outside the {fr.width}×{fr.height} image"
                    )
            _add_imported_label(m, ledger, s, fid, kps, {}, f"{f.name}", source="dlc")


# -- SLEAP projects -------------------------------------------------------------------------------------
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
