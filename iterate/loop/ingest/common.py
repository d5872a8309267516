"""What every source reader shares: the per-source summary, frame ids and hashes, the duplicate and held-out
rules, registering a frame and an imported label."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from iterate.core.coco import (
    size_mismatch,
)
from iterate.core.errors import IterateError
from iterate.core.files import write_bytes_atomic
from iterate.core.images import decode, nameable, printable, read_bytes
from iterate.core.ledger import Frame, Ledger
from iterate.core.manifest import Manifest, Source

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


_Item = tuple[str, int | None, Path | None, bytes | None, np.ndarray | None, int | None]


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
        if _dropped(m, ledger, src, s, by_hash, index, (path, fidx), chash, h):
            continue
        is_video = fidx is not None
        f = _new_frame(m, src, fid, path, fidx, img, chash, h)
        pending.append((f, path if is_video else None, data if is_video else None))
        by_hash[chash] = fid
        if index is not None:
            index.add(h)
        s.added += 1
        if len(pending) >= _BATCH:
            _flush(ledger, pending)
    if pending:
        _flush(ledger, pending)


def _flush(ledger: Ledger, pending: list[tuple[Frame, Path | None, bytes | None]]) -> None:
    """Register the pending frames in one transaction (a video frame's PNG written first), and forget them."""
    with ledger.transaction():
        for f, write_to, data in pending:
            if write_to is not None and data is not None and not write_to.exists():
                write_bytes_atomic(write_to, data, "frame")
            ledger.add_frame(f)
    pending.clear()


def _same_picture(ledger, src, s, twin: str | None, where: str) -> bool:
    """True (counted and listed in ``s``) when a registered frame ``twin`` holds the same picture and keeps it: a
    held-out split's frame always; another frame unless this source's fixed split takes it over from the pool."""
    if twin is not None and _is_held_out(ledger, src, twin):
        s.held_out += 1
        s.dropped.append(f"{where} (the same picture as {ledger.frame(twin).split} frame {twin})")
        return True
    if twin is not None and not _fixed_over_pool(ledger, src, twin):
        s.duplicates += 1
        s.dropped.append(f"{where} (the same picture as frame {twin})")
        return True
    return False


def _dropped(m, ledger, src, s, by_hash, index, item: tuple[Path, int | None], chash: str, h: int) -> bool:
    """True (counted and listed in ``s``) when the picture is not registered: the same picture is dropped anywhere
    (a fixed split's copy wins over the pool's); a near-duplicate only among one video's frames, judged on the
    foreground (image folders keep every distinct picture: `select`'s k-center on embeddings spreads them)."""
    if _same_picture(ledger, src, s, by_hash.get(chash), _where(*item)):
        return True
    if index is not None and index.is_duplicate(h):
        s.duplicates += 1
        s.dropped.append(
            f"{_where(*item)} (a near-duplicate of an earlier frame of this video, within "
            f"{m.selection.dedup_hamming} bits)"
        )
        return True
    return False


def _new_frame(m, src, fid: str, path: Path, fidx: int | None, img: np.ndarray, chash: str, h: int) -> Frame:
    is_video = fidx is not None
    return Frame(
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
    if _same_picture(ledger, src, s, by_hash.get(chash), printable(p)):
        return None
    ledger.add_frame(_new_frame(m, src, fid, p, None, img, chash, dhash(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))))
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
