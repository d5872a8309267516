"""Register frames (image folders, sampled video frames, COCO-keypoints files) and existing labels.

Re-running adds only what is new: a frame's id is a hash of its source, relative path and frame index;
labels equal to the current version are not added again. The same picture (equal bytes, or equal pixels for
video frames) is dropped and counted; among one video's frames, near-duplicates too (difference hash of the
frame's difference to the video's median background within ``selection.dedup_hamming`` bits). Distinct
pictures in image folders are all kept: with a fixed camera the background would make them look alike.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.images import printable, read_bytes
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest, Source
from iterate.core.strata import has_torso
from iterate.loop.ingest import coco, dlc, images, labelstudio, sleap, video  # noqa: F401 - each registers its kind
from iterate.loop.ingest.boxes import apply_person_boxes
from iterate.loop.ingest.common import Progress, SourceSummary, dhash
from iterate.loop.ingest.registry import READERS, SourceReader, reader
from iterate.loop.settings import label_attributes

__all__ = ["ingest", "write_dropped", "dhash", "SourceSummary", "READERS", "SourceReader", "reader", "DROPPED_FILE"]


def ingest(manifest: Manifest, ledger: Ledger, progress: Progress | None = None) -> list[SourceSummary]:
    """Ingest every source of the manifest. Raises IterateError on a COCO file that does not fit the schema.
    Labels get the strata the manifest derives from the keypoints where they carry none (also labels stored
    before the manifest derived them)."""
    ledger.set_label_attributes(label_attributes(manifest))
    by_hash = ledger.frame_ids_by_hash()
    out = []
    for src in manifest.sources:
        s = SourceSummary(src.label, src.kind, src.split)
        if src.kind not in READERS:
            raise IterateError(f"sources[{src.label}].kind: no reader for '{src.kind}' (known: {', '.join(READERS)})")
        READERS[src.kind].read(manifest, ledger, src, s, by_hash, progress)
        apply_person_boxes(manifest, ledger, src, s)
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
        why = f"no {READERS[src.kind].noun} found in {printable(m.resolve(src.path))}"
    s.notes.append(f"{src.label}: added no frames ({why})")


def _check_existing(ledger: Ledger, src: Source, s: SourceSummary) -> None:
    """Frames of this source registered earlier: is each file still there, and still the same picture?"""
    if READERS[src.kind].cut_frames:  # frames cut into the workspace; the video is read again on each ingest
        return
    for f in ledger.frames(source=src.label):
        data = read_bytes(f.path)
        if data is None:
            s.missing.append(f.id)
        elif hashlib.sha1(data).hexdigest() != f.content_hash:
            s.changed.append(f.id)
