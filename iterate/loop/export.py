"""`iterate export` as library calls (issue 32): the curated labels out of the ledger, as versioned snapshots.

* :func:`record_version` — the current labels as a dataset version (vN): the set of (frame, label version) rows
  and a content hash, recorded in the ledger (the same labels → the same version). `export` and `retrain` call it.
* :func:`export` — one dataset version written to a folder: COCO keypoints (one file per split), MMPose (the same
  files plus ``dataset_info.py``) or a DeepLabCut project (``CollectedData_<scorer>.csv`` per folder), each with
  a ``DATASET.md`` datasheet and an ``export.json`` record. Streamed (memory flat in the number of frames), written
  beside the target folder and renamed into place; the same version with the same options gives the same bytes.
* :func:`diff` — frames added, removed and labels changed between two versions.

Splits: ``train`` is what `retrain` trains on (the loop's labeled pool frames and the fixed ``train`` split;
each image records which), ``val`` and ``test`` as in the ledger. The ``train.replay`` source (the base model's
own data) is left out unless ``include_replay``; a version `retrain` records holds it when the model replayed it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.export_formats import (
    CocoFile,
    DlcCsv,
    VersionHash,
    canonical,
    coco_categories,
    dlc_config,
    joints_box,
    mmpose_dataset_info,
    sigma_for,
)
from iterate.core.images import printable
from iterate.core.ledger import DatasetRow, DatasetVersion, Frame, Label, Ledger
from iterate.core.manifest import Manifest

FORMATS = ("coco", "mmpose", "dlc")
IMAGE_MODES = ("link", "copy", "none")
SPLITS = {"train": ("pool", "train"), "val": ("val",), "test": ("test",)}  # export split → ledger splits
LEDGER_SPLIT = {s: e for e, ls in SPLITS.items() for s in ls}  # ledger split → export split
MARKER = "export.json"
DATASHEET = "DATASET.md"


def schema(m: Manifest) -> dict:
    """What an export writes besides the labels, recorded with the version (and part of its hash): the joints,
    their pairs, skeleton and weights, the strata and their values, the project name."""
    k = m.keypoints
    return {
        "project": m.project,
        "names": list(k.names),
        "flip_pairs": [list(p) for p in k.flip_pairs],
        "skeleton": [list(e) for e in k.skeleton],
        "weights": k.joint_weights(),
        "strata": {key: list(v) for key, v in m.strata.items()},
    }


def parse_splits(text: str | None) -> tuple[str, ...]:
    """``--splits train,val`` → the export splits in their order; None or ``all`` → all three."""
    if text is None or text.strip() in ("", "all"):
        return tuple(SPLITS)
    got = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in got if s not in SPLITS]
    if bad:
        raise IterateError(
            f"--splits: unknown split {', '.join(repr(b) for b in bad)} (train, val, test or all; train holds the "
            "loop's labeled pool frames and the train split)"
        )
    return tuple(s for s in SPLITS if s in got)


def _ledger_splits(splits: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(ls for s in splits for ls in SPLITS[s])


def _replay_source(m: Manifest) -> str | None:
    return m.train.replay.source if m.train.replay else None


# -- versions -------------------------------------------------------------------------------------------------
def record_version(
    m: Manifest,
    ledger: Ledger,
    *,
    made_by: str,
    splits: tuple[str, ...] = tuple(SPLITS),
    include_replay: bool = False,
    check_images: bool = False,
    every_split: bool = False,
) -> tuple[DatasetVersion, bool, Counter]:
    """Record the current labels of ``splits`` as a dataset version → (the version, whether it is new, labels per
    export split). Hashed and recorded in one ledger transaction, so the version holds exactly what was hashed.
    ``check_images``: refuse (before recording anything) when a frame's image is gone from disk; ``every_split``:
    when one of ``splits`` has no labels."""
    exclude = None if include_replay else _replay_source(m)
    sch = schema(m)
    per_split: Counter = Counter()
    missing: list[Frame] = []
    n_missing = 0
    with ledger.transaction():
        h = VersionHash(sch)
        last = None
        for fid, split, image_hash, path, *label in ledger.iter_current_label_texts(
            _ledger_splits(splits), exclude_source=exclude
        ):
            h.add(fid, split, image_hash, *label)
            per_split[LEDGER_SPLIT[split]] += 1
            if check_images and fid != last and not os.path.isfile(path):
                n_missing += 1
                if len(missing) < 3:
                    missing.append(Frame(fid, path, "", None, None, 0, 0, image_hash, 0, split))
            last = fid
        empty = [s for s in splits if not per_split[s]]
        if h.n_labels == 0 or (every_split and empty):
            raise IterateError(
                f"nothing to export: no labels in {', '.join(empty)}"
                + (f" (the replay source '{exclude}' left out: --include-replay adds it)" if exclude else "")
                + " — run `iterate ingest` with labels or `iterate sync-labels`"
            )
        if n_missing:
            raise _vanished(n_missing, missing)
        params = {
            "schema": sch,
            "splits": list(splits),
            "replay_source": _replay_source(m),
            "includes_replay": bool(_replay_source(m)) and exclude is None,
        }
        v, new = ledger.add_dataset_version(
            h.hexdigest(),
            made_by=made_by,
            n_frames=h.n_frames,
            n_labels=h.n_labels,
            params=params,
            splits=_ledger_splits(splits),
            exclude_source=exclude,
        )
    return v, new, per_split


def _vanished(n: int, frames: list[Frame]) -> IterateError:
    named = "; ".join(f"{printable(f.path)} (frame {f.id})" for f in frames)
    more = f" and {n - len(frames)} more" if n > len(frames) else ""
    return IterateError(
        f"{n} image(s) of the labeled frames are gone from disk: {named}{more}; restore them, retire the frames "
        "(`iterate frames remove ID`), or export the labels alone with --images none"
    )


def get_version(ledger: Ledger, number: int) -> DatasetVersion:
    v = ledger.dataset_version(number)
    if v is None:
        known = ledger.dataset_versions()
        have = f"v{known[0].id}–v{known[-1].id}" if known else "none yet: `iterate export` or `retrain` records one"
        raise IterateError(f"--version {number}: no dataset version v{number} in this ledger (versions: {have})")
    return v


def version_models(ledger: Ledger) -> dict[int, list[int]]:
    """dataset version → the models trained on it."""
    out: dict[int, list[int]] = {}
    for md in ledger.models():
        if md.dataset_version:
            out.setdefault(md.dataset_version, []).append(md.id)
    return out


# -- diff -----------------------------------------------------------------------------------------------------
@dataclass
class VersionDiff:
    a: int
    b: int
    added: list[tuple[str, str]] = field(default_factory=list)  # (frame id, path)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (frame id, path, "v1 → v2")


def _by_frame(rows: Iterator[tuple]) -> Iterator[tuple[str, str, dict[int, int]]]:
    cur, path, inst = None, "", {}
    for fid, instance, version, p, _source, _split in rows:
        if fid != cur:
            if cur is not None:
                yield cur, path, inst
            cur, path, inst = fid, p, {}
        inst[instance] = version
    if cur is not None:
        yield cur, path, inst


def diff(ledger: Ledger, a: int, b: int) -> VersionDiff:
    """Frames in ``b`` and not ``a`` (added), in ``a`` and not ``b`` (removed), and in both with another label
    version (changed). Both versions are read as sorted streams and merged."""
    get_version(ledger, a), get_version(ledger, b)
    out = VersionDiff(a, b)
    rows_b = list(_by_frame(ledger.dataset_members(b)))  # one stream at a time on one connection
    it_b = iter(rows_b)
    nb = next(it_b, None)
    for fa, pa, ia in _by_frame(ledger.dataset_members(a)):
        while nb is not None and nb[0] < fa:
            out.added.append((nb[0], nb[1]))
            nb = next(it_b, None)
        if nb is not None and nb[0] == fa:
            if nb[2] != ia:
                show = ", ".join(
                    f"person {i}: {f'v{ia[i]}' if i in ia else 'none'} → {f'v{nb[2][i]}' if i in nb[2] else 'none'}"
                    for i in sorted(set(ia) | set(nb[2]))
                    if ia.get(i) != nb[2].get(i)
                )
                out.changed.append((fa, pa, show if len(set(ia) | set(nb[2])) > 1 else show.split(": ", 1)[1]))
            nb = next(it_b, None)
        else:
            out.removed.append((fa, pa))
    while nb is not None:
        out.added.append((nb[0], nb[1]))
        nb = next(it_b, None)
    return out


# -- export ---------------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    out: Path
    version: DatasetVersion
    new: bool  # a version recorded by this export (False: the labels equal an earlier version, or --version)
    format: str
    files: dict[str, int]  # file (relative) → labels (people) in it
    images: Counter  # hardlink / symlink / copy / not written
    notes: list[str] = field(default_factory=list)


def _check_out(out: Path, project: str) -> bool:
    """True when ``out`` holds an earlier export of this project (replaced whole); refuses any other non-empty
    folder, and a file."""
    import json

    if not out.exists() and not out.is_symlink():
        return False
    if not out.is_dir():
        raise IterateError(f"--out {printable(out)}: a file, not a folder")
    if not any(out.iterdir()):
        return False
    marker = out / MARKER
    try:
        rec = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    except (OSError, ValueError):
        rec = None
    if not isinstance(rec, dict) or rec.get("tool") != "iterate export":
        raise IterateError(
            f"--out {printable(out)}: the folder is not empty and holds no earlier `iterate export` ({MARKER}); "
            "choose a new or empty folder"
        )
    if rec.get("project") != project:
        raise IterateError(
            f"--out {printable(out)}: holds an export of project {rec.get('project')!r}, not {project!r}; choose "
            "another folder"
        )
    return True


def _common_folders(ledger: Ledger, version: int, check_images: bool) -> tuple[dict[str, str], Counter]:
    """source → the folder its frames of the version share (image names are their paths below it, so they stay
    unique and readable), and labels per export split; refuses frames whose image is gone (``check_images``)."""
    common: dict[str, str] = {}
    per_split: Counter = Counter()
    missing: list[Frame] = []
    n_missing, last = 0, None
    for fid, _inst, _v, path, source, split in ledger.dataset_members(version):
        per_split[LEDGER_SPLIT.get(split, split)] += 1
        if fid == last:
            continue
        last = fid
        d = os.path.dirname(path)
        have = common.get(source)
        if have is None:
            common[source] = d
        elif d != have and not d.startswith(have + os.sep):
            common[source] = os.path.commonpath([have, d])
        if check_images and not os.path.isfile(path):
            n_missing += 1
            if len(missing) < 3:
                missing.append(Frame(fid, path, source, None, None, 0, 0, "", 0, split))
    if n_missing:
        raise _vanished(n_missing, missing)
    return common, per_split


def _place(src: str, dst: Path, mode: str, counts: Counter) -> None:
    """The image at ``dst``: a hard link (same file system), else a symbolic link, else a copy (``link``); a copy
    (``copy``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        if mode == "link":
            try:
                os.link(src, dst)
                counts["hard links"] += 1
                return
            except OSError:
                pass
            try:
                os.symlink(os.path.realpath(src), dst)
                counts["symbolic links"] += 1
                return
            except OSError:
                pass
        shutil.copyfile(src, dst)
        counts["copies"] += 1
    except FileNotFoundError:
        raise IterateError(
            f"{printable(src)}: the image is gone from disk (removed while exporting?); export again, or with "
            "--images none"
        ) from None


class _Sheet:
    """Counts for DATASET.md, gathered as the rows stream past."""

    def __init__(self, strata: dict[str, list[str]]):
        self.strata = strata
        self.frames: Counter = Counter()
        self.people: Counter = Counter()
        self.joints: Counter = Counter()
        self.occluded: Counter = Counter()
        self.stratum: dict[str, Counter] = {k: Counter() for k in strata}
        self.origin: Counter = Counter()
        self.sources: Counter = Counter()  # ledger label source
        self.assisted: Counter = Counter()  # pre-annotated by
        self.annotators: Counter = Counter()
        self.rounds: Counter = Counter()
        self.bbox: Counter = Counter()
        self.head_boxes = 0
        self.frame_sources: Counter = Counter()
        self.source_split: dict[str, str] = {}
        self.dropped: Counter = Counter()  # what the format could not carry

    def add(
        self, split: str, row: DatasetRow, new_frame: bool, prov: dict, bbox_source: str, labeled: int, occluded: int
    ) -> None:
        lab = row.label
        if new_frame:
            self.frames[split] += 1
            self.frame_sources[row.frame.source] += 1
            self.source_split[row.frame.source] = split
        self.people[split] += 1
        self.joints[split] += labeled
        self.occluded[split] += occluded
        for k, allowed in self.strata.items():
            val = lab.attributes.get(k)
            val = "(not set)" if val is None else (str(val) if not allowed or val in allowed else f"other ({val})")
            self.stratum[k][(val, split)] += 1
        self.origin[prov["origin"]] += 1
        self.sources[lab.source] += 1
        if prov.get("pre_annotated_by"):
            self.assisted[prov["pre_annotated_by"]] += 1
        self.annotators[lab.annotator or "(none recorded)"] += 1
        if row.round_id is not None:
            self.rounds[row.round_id] += 1
        self.bbox[bbox_source] += 1
        self.head_boxes += lab.head_box is not None


def _rounds_info(ledger: Ledger) -> dict[int, str | None]:
    """round id → the model whose keypoints were pushed as its pre-annotations (None: a cold start)."""
    out: dict[int, str | None] = {}
    for r in ledger.rounds():
        out[r.id] = f"model #{r.model_id}" if r.model_id else ("the base model" if r.params.get("base_path") else None)
    return out


def _provenance(row: DatasetRow, rounds: dict[int, str | None]) -> dict:
    lab = row.label
    origin = "review" if row.reviewed else ("label_studio" if lab.ls_task_id is not None else "ingest")
    p = {
        "frame_id": row.frame.id,
        "label_version": lab.version,
        "source": lab.source,
        "origin": origin,
        "annotator": lab.annotator,
        "round": row.round_id,
        "pre_annotated_by": rounds.get(row.round_id) if row.round_id is not None else None,
        "created_at": lab.created_at,
    }
    if lab.ls_task_id is not None:
        p["ls_task_id"] = lab.ls_task_id
        p["ls_annotation_id"] = lab.ls_annotation_id
    return p


def _check_options(fmt: str, images: str, scorer: str) -> None:
    if fmt not in FORMATS:
        raise IterateError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if images not in IMAGE_MODES:
        raise IterateError(f"--images: {images!r} is not one of {', '.join(IMAGE_MODES)}")
    if fmt == "dlc" and (not scorer or any(c in scorer for c in "/\\\0") or scorer.startswith(".")):
        raise IterateError(f"--scorer: {scorer!r} cannot be part of a file name")


def _splits_to_write(v: DatasetVersion, splits: tuple[str, ...], per_split: Counter, explicit: bool) -> tuple:
    """The splits of ``splits`` that hold labels in the version, and those that hold none; refuses an empty split
    the command named (``explicit``), and a version with none of them."""
    empty = [s for s in splits if not per_split.get(s)]
    if explicit and empty:
        raise IterateError(
            f"--splits: split {', '.join(empty)} has no labels in dataset v{v.id} "
            f"(it holds {', '.join(f'{s} {n}' for s, n in per_split.items() if n) or 'none'})"
        )
    kept = tuple(s for s in splits if per_split.get(s))
    if not kept:
        raise IterateError(f"dataset v{v.id} holds no labels in the splits asked for")
    return kept, empty


def export(
    m: Manifest,
    ledger: Ledger,
    out: Path,
    *,
    fmt: str = "coco",
    splits: tuple[str, ...] | None = None,
    images: str = "link",
    include_replay: bool = False,
    version: int | None = None,
    scorer: str | None = None,
) -> ExportResult:
    """Write a dataset version (``version``, or a new one of the current labels) into ``out``."""
    explicit = splits is not None
    splits = splits or tuple(SPLITS)
    scorer = scorer or "iterate"
    _check_options(fmt, images, scorer)
    out = Path(out).absolute()
    replace = _check_out(out, m.project)
    if version is None:
        v, new, _ = record_version(
            m,
            ledger,
            made_by="export",
            splits=splits,
            include_replay=include_replay,
            check_images=images != "none",
            every_split=explicit,
        )
    else:
        v, new = get_version(ledger, version), False
    common, per_split = _common_folders(ledger, v.id, check_images=images != "none")
    asked, (splits, empty) = splits, _splits_to_write(v, splits, per_split, explicit)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = out.with_name(f".{out.name}.export-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        res = _write(ledger, v, new, tmp, fmt, splits, asked, images, common, scorer)
        _swap(tmp, out, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    res.out = out
    if empty:
        res.notes.insert(
            0,
            f"no labels in {' or '.join(empty)} in dataset v{v.id}: no file for {'it' if len(empty) == 1 else 'them'}",
        )
    return res


def _remove_stale(out: Path) -> None:
    """Folders an interrupted export left beside ``out`` (``.<name>.export-<pid>``, ``.<name>.replaced-<pid>``, of a
    process that is gone) are removed: nothing else is named so."""
    import re

    pattern = re.compile(rf"\.{re.escape(out.name)}\.(export|replaced)-(\d+)")
    for d in out.parent.iterdir():
        hit = pattern.fullmatch(d.name)
        if not hit or not d.is_dir() or d.is_symlink():
            continue
        pid = int(hit.group(2))
        try:
            os.kill(pid, 0)
            continue  # its export is still running
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue


def _swap(tmp: Path, out: Path, replace: bool) -> None:
    """``tmp`` becomes ``out``; an earlier export there is moved aside first and removed after."""
    if out.is_dir() and not replace:
        out.rmdir()  # empty (checked)
    if replace:
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _image_name(frame: Frame, common: dict[str, str]) -> str:
    """``<source>/<the path below the folder the source's frames share>``."""
    root = common.get(frame.source) or os.path.dirname(frame.path)
    path = frame.path
    rel = path[len(root) + 1 :] if path.startswith(root + os.sep) else os.path.relpath(path, root)
    return f"{frame.source}/{rel}"


class _Files:
    """The files one export streams its rows into: a COCO file per split, or a DeepLabCut CSV per source folder
    (and ``images.csv`` with ``--images none``), each row's image placed beside them."""

    def __init__(self, tmp: Path, fmt: str, images: str, scorer: str, sch: dict, info: dict, sheet: _Sheet):
        self.tmp, self.fmt, self.images, self.scorer, self.sheet = tmp, fmt, images, scorer, sheet
        self.names = sch["names"]
        self.info = info
        self.cats = coco_categories(self.names, sch["skeleton"], sch["flip_pairs"])
        self.placed: Counter = Counter()
        self.coco: dict[str, CocoFile] = {}
        self.dlc: dict[str, DlcCsv] = {}
        self.dlc_size: dict[str, tuple[int, int]] = {}
        self.where: DlcCsv | None = None  # --format dlc --images none: each file the CSVs name → the frame's path
        self.image_id = 0

    def add_dlc(self, f: Frame, lab: Label, name: str) -> None:
        folder, file = f.source, name.split("/", 1)[1].replace("/", "__")
        if lab.instance != 0:
            self.sheet.dropped["people after the first in a frame (DeepLabCut single-animal)"] += 1
            return
        if folder not in self.dlc:
            path = self.tmp / "labeled-data" / folder / f"CollectedData_{self.scorer}.csv"
            self.dlc[folder] = DlcCsv(path, self.scorer, self.names)
        w, h = self.dlc_size.get(folder, (0, 0))
        self.dlc_size[folder] = (max(w, f.width), max(h, f.height))
        self.dlc[folder].add(folder, file, lab.keypoints)
        if self.images != "none":
            _place(f.path, self.tmp / "labeled-data" / folder / file, self.images, self.placed)
        else:
            if self.where is None:
                self.where = DlcCsv.plain(self.tmp / "images.csv", ["image", "frame path"])
            self.where.row([f"labeled-data/{folder}/{file}", f.path])
        _count_dlc_drops(self.sheet, lab)

    def add_coco(self, split: str, row: DatasetRow, name: str, new_frame: bool, ann: dict) -> None:
        f = row.frame
        if split not in self.coco:
            self.coco[split] = CocoFile(self.tmp / "annotations" / f"{split}.json", self.info, self.cats)
        if new_frame:
            image = {
                "file_name": name if self.images != "none" else f.path,
                "width": f.width,
                "height": f.height,
                "iterate": _image_prov(f),
            }
            self.image_id = self.coco[split].add_image(image)
            if self.images != "none":
                _place(f.path, self.tmp / "images" / name, self.images, self.placed)
        self.coco[split].add_annotation(self.image_id, ann)

    def close(self) -> dict[str, int]:
        """Close every file → file (relative) → labels in it."""
        files: dict[str, int] = {}
        for split, cf in self.coco.items():
            cf.close()
            files[f"annotations/{split}.json"] = cf.annotations
        for folder, csv in self.dlc.items():
            csv.close()
            files[f"labeled-data/{folder}/CollectedData_{self.scorer}.csv"] = csv.rows
        if self.where is not None:
            self.where.close()
        return files

    def abort(self) -> None:
        for cf in self.coco.values():
            cf.abort()


def _coco_annotation(lab: Label, labeled: int, bbox: list | None, bbox_source: str, prov: dict) -> dict:
    flat = []
    for x, y, v_ in lab.keypoints:
        flat += (float(x), float(y), int(v_))
    ann = {
        "keypoints": flat,
        "num_keypoints": labeled,
        "bbox": bbox,
        "area": (bbox[2] * bbox[3]) if bbox else 0.0,
        "iscrowd": 0,
        "attributes": lab.attributes,
    }
    if lab.head_box:
        ann["bbox_head"] = lab.head_box
    ann["iterate"] = {**prov, "bbox_source": bbox_source}
    return ann


def _stream_rows(
    ledger: Ledger,
    v: DatasetVersion,
    splits: tuple[str, ...],
    common: dict[str, str],
    rounds: dict[int, str | None],
    files: _Files,
) -> None:
    """Each row of the version's ``splits``, counted into the datasheet and written to its file."""
    last_frame = None
    for row in ledger.dataset_rows(v.id, _ledger_splits(splits)):
        f, lab = row.frame, row.label
        split = LEDGER_SPLIT[f.split]
        new_frame = f.id != last_frame
        last_frame = f.id
        name = _image_name(f, common)
        prov = _provenance(row, rounds)
        vis = [k[2] for k in lab.keypoints]
        labeled = len(vis) - vis.count(0)
        bbox, bbox_source = (lab.bbox, "label") if lab.bbox else (joints_box(lab.keypoints), "joints")
        files.sheet.add(split, row, new_frame, prov, bbox_source, labeled, vis.count(1))
        if files.fmt == "dlc":
            files.add_dlc(f, lab, name)
        else:
            files.add_coco(split, row, name, new_frame, _coco_annotation(lab, labeled, bbox, bbox_source, prov))


def _write_format_files(tmp: Path, fmt: str, sch: dict, v: DatasetVersion, scorer: str, files: _Files) -> None:
    """MMPose's ``dataset_info.py``; DeepLabCut's ``config.yaml``."""
    if fmt == "mmpose":
        text = mmpose_dataset_info(sch["project"], sch["names"], sch["flip_pairs"], sch["skeleton"], sch["weights"])
        (tmp / "dataset_info.py").write_text(text, encoding="utf-8")
    if fmt == "dlc":
        date = time.strftime("%b%d", time.gmtime(v.created_at))
        cfg = dlc_config(
            task=sch["project"],
            scorer=scorer,
            date=date,
            bodyparts=sch["names"],
            skeleton=sch["skeleton"],
            folders=files.dlc_size,
        )
        (tmp / "config.yaml").write_text(cfg, encoding="utf-8")


def _write(
    ledger: Ledger,
    v: DatasetVersion,
    new: bool,
    tmp: Path,
    fmt: str,
    splits: tuple[str, ...],
    asked: tuple[str, ...],
    images: str,
    common: dict[str, str],
    scorer: str,
) -> ExportResult:
    """Write the version's rows of ``splits`` (those of ``asked``, the splits the command named, that hold labels)
    into ``tmp``."""
    sch = v.params["schema"]
    sheet = _Sheet(sch.get("strata") or {})
    rounds = _rounds_info(ledger)
    recorded = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at)) + " UTC"
    info = {
        "description": f"{sch['project']}: dataset v{v.id}, exported by iterate",
        "version": f"v{v.id}",
        "content_hash": v.content_hash,
        "date_created": recorded,
    }
    files = _Files(tmp, fmt, images, scorer, sch, info, sheet)
    try:
        _stream_rows(ledger, v, splits, common, rounds, files)
        written = files.close()
    except BaseException:
        files.abort()
        raise
    _write_format_files(tmp, fmt, sch, v, scorer, files)
    if images == "none":
        files.placed["not written (--images none)"] = sum(sheet.frames.values())
    res = ExportResult(tmp, v, new, fmt, written, files.placed)
    sheet_text = _datasheet(v, fmt, splits, asked, images, res, sheet, rounds, scorer)
    (tmp / DATASHEET).write_text(sheet_text, encoding="utf-8")
    record = {
        "tool": "iterate export",
        "project": sch["project"],
        "version": v.id,
        "content_hash": v.content_hash,
        "format": fmt,
        "splits": list(splits),
        "images": images,
        "files": written,
        "frames": dict(sheet.frames),
        "labels": dict(sheet.people),
        "recorded": recorded,
        "reproduce": _reproduce(v, fmt, asked, images, scorer),
    }
    (tmp / MARKER).write_text(canonical(record) + "\n", encoding="utf-8")
    return res


def _image_prov(f: Frame) -> dict:
    p = {"frame_id": f.id, "split": f.split, "source": f.source, "content_hash": f.content_hash}
    if f.video:
        p["video"], p["frame_index"] = f.video, f.frame_index
    return p


def _count_dlc_drops(sheet: _Sheet, lab: Label) -> None:
    occluded = sum(1 for *_, v in lab.keypoints if v == 1)
    if occluded:
        sheet.dropped["occluded joints written as plain points (DeepLabCut reads every point as visible)"] += occluded
    if lab.head_box:
        sheet.dropped["head boxes"] += 1
    if lab.bbox:
        sheet.dropped["person boxes"] += 1
    if any(k for k in lab.attributes):
        sheet.dropped["labels' strata (attributes)"] += 1
    sheet.dropped["labels' provenance (label version, source, annotator, round: the counts above sum it up)"] += 1


def _reproduce(v: DatasetVersion, fmt: str, splits: tuple[str, ...], images: str, scorer: str) -> str:
    cmd = f"iterate export --version {v.id} --format {fmt}"
    if tuple(splits) != tuple(SPLITS):
        cmd += f" --splits {','.join(splits)}"
    if images != "link":
        cmd += f" --images {images}"
    if fmt == "dlc" and scorer != "iterate":
        cmd += f" --scorer {scorer}"
    return cmd + " --out DIR"


def _table(head: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
        *("| " + " | ".join(str(c) for c in r) + " |" for r in rows),
        "",
    ]


def _datasheet(
    v: DatasetVersion,
    fmt: str,
    splits: tuple[str, ...],
    asked: tuple[str, ...],
    images: str,
    res: ExportResult,
    s: _Sheet,
    rounds: dict[int, str | None],
    scorer: str,
) -> str:
    """DATASET.md: what the version is and how to reproduce the export, the counts, where the labels came from,
    the boxes, and what the format carries."""
    sch = v.params["schema"]
    total_people = sum(s.people.values())
    L = _sheet_head(v, fmt, splits, asked, images, res, s, scorer)
    L += _sheet_counts(sch, s, splits)
    L += _sheet_origins(s, rounds, total_people)
    L += _sheet_boxes(s, total_people)
    L += _sheet_dlc(s) if fmt == "dlc" else _sheet_coco(fmt, sch["names"], splits)
    return "\n".join(L) + "\n"


def _images_line(fmt: str, images: str, res: ExportResult) -> str:
    if images == "none":
        if fmt != "dlc":
            return "not written (`--images none`): each `file_name` is the frame's path on this machine"
        return "not written (`--images none`): `images.csv` maps each file the CSVs name to the frame's path"
    return ", ".join(f"{n} {k}" for k, n in sorted(res.images.items())) + (
        " under `images/`" if fmt != "dlc" else " beside each CSV"
    )


def _sheet_head(
    v: DatasetVersion,
    fmt: str,
    splits: tuple[str, ...],
    asked: tuple[str, ...],
    images: str,
    res: ExportResult,
    s: _Sheet,
    scorer: str,
) -> list[str]:
    """The title and the version: its hash, this export's layout, how to reproduce it, the replay source."""
    sch = v.params["schema"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at))
    layout = {
        "coco": "COCO keypoints, one file per split: `annotations/<split>.json`",
        "mmpose": "COCO keypoints for MMPose 1.x: `annotations/<split>.json` and `dataset_info.py` (its meta information)",
        "dlc": f"a single-animal DeepLabCut project: `config.yaml`, `labeled-data/<source>/CollectedData_{scorer}.csv`",
    }[fmt]
    L = [
        f"# {sch['project']}: dataset v{v.id}",
        "",
        f"- **Version**: v{v.id}, recorded {when} UTC by `iterate {v.made_by}`; "
        f"{v.n_frames} frames, {v.n_labels} labels in the version.",
        f"- **Content hash** (sha256 over the joint schema and every frame's id, split, image hash and label): "
        f"`{v.content_hash}`",
        f"- **This export**: {layout}; splits {', '.join(splits)}; {sum(s.frames.values())} frames, "
        f"{sum(s.people.values())} people. Images: {_images_line(fmt, images, res)}.",
        f"- **Reproduce it**: `{_reproduce(v, fmt, asked, images, scorer)}` gives these files byte for byte "
        "(label versions are never overwritten).",
    ]
    if v.params.get("replay_source"):
        L.append(
            f"- **Replay source** `{v.params['replay_source']}` (the base model's own data): "
            + ("in this version." if v.params.get("includes_replay") else "left out (`--include-replay` adds it).")
        )
    return L


def _sheet_counts(sch: dict, s: _Sheet, splits: tuple[str, ...]) -> list[str]:
    """The joints, then the counts per split and per value of each stratum."""
    names = sch["names"]
    L = [
        "",
        f"**Joints** ({len(names)}): {', '.join(names)}. Visibility exactly as stored: 0 not labeled (x = y = 0), "
        "1 labeled but occluded, 2 visible. Left/right pairs: "
        + (", ".join(f"{a}↔{b}" for a, b in sch["flip_pairs"]) or "none")
        + ".",
        "",
        "## Counts per split",
        "",
        *_table(
            ["split", "frames", "people", "labeled joints", "occluded joints"],
            [[sp, s.frames[sp], s.people[sp], s.joints[sp], s.occluded[sp]] for sp in splits],
        ),
    ]
    for key, c in s.stratum.items():
        vals = list(dict.fromkeys([*(sch["strata"].get(key) or []), *sorted({val for val, _ in c})]))
        rows = [[val, *(c[(val, sp)] for sp in splits)] for val in vals if any(c[(val, sp)] for sp in splits)]
        L += [f"## Per {key}", "", *_table([key, *splits], rows)]
    return L


_ORIGIN_NAME = {
    "ingest": "imported from a file at `iterate ingest`",
    "label_studio": "a Label Studio task (`iterate sync-labels`)",
    "review": "a review: it replaced an earlier version with other keypoints",
}


def _sheet_origins(s: _Sheet, rounds: dict[int, str | None], total_people: int) -> list[str]:
    """Where the labels came from: origin, ledger source, model assistance, annotators, rounds."""
    L = ["## Where the labels came from", ""]
    L += _table(["origin", "labels"], [[_ORIGIN_NAME.get(k, k), n] for k, n in sorted(s.origin.items())])
    L += _table(["ledger source", "labels"], [[k, n] for k, n in sorted(s.sources.items())])
    assisted = sum(s.assisted.values())
    L.append(
        f"**Model-assisted** (the annotator started from a model's pre-annotation): {assisted} of {total_people}"
        + (": " + ", ".join(f"{n} by {k}" for k, n in sorted(s.assisted.items())) if assisted else "")
        + f". **Reviewed**: {s.origin.get('review', 0)}."
    )
    L.append("")
    L += ["**Per annotator**", "", *_table(["annotator", "labels"], [[k, n] for k, n in s.annotators.most_common()])]
    if not s.rounds:
        return L + ["**Rounds**: none of these labels came from a selection round.", ""]
    return L + [
        "**Rounds** (the selection round of each label's task)",
        "",
        *_table(
            ["round", "labels", "pre-annotated by"],
            [[r, n, rounds.get(r) or "nothing (cold start)"] for r, n in sorted(s.rounds.items())],
        ),
    ]


def _sheet_boxes(s: _Sheet, total_people: int) -> list[str]:
    """Where each person box came from, how many labels carry a head box; then the heading of what follows."""
    return [
        "## Boxes",
        "",
        f"- `bbox`: the label's own person box (from its source file) for {s.bbox.get('label', 0)}, the labeled "
        f"joints' tight box for {s.bbox.get('joints', 0)} (`iterate.bbox_source` on each annotation says which). "
        "No model's box head is run at export: a version exports the same bytes whatever model is current.",
        f"- `bbox_head`: {s.head_boxes} of {total_people} labels carry a head box.",
        "",
        "## What this format carries",
        "",
    ]


def _sheet_dlc(s: _Sheet) -> list[str]:
    """What the DeepLabCut files leave out, and how its folders map to the splits."""
    L = ["DeepLabCut's CSV holds x, y per bodypart and nothing else. Left out of the files:", ""]
    L += [f"- {k}: {n}" for k, n in sorted(s.dropped.items())] or ["- nothing"]
    return L + [
        "",
        "The splits are not a DeepLabCut notion: each source is one `labeled-data` folder ("
        + ", ".join(f"{src} → {sp}" for src, sp in sorted(s.source_split.items()))
        + "). DeepLabCut trains from the `.h5` twin of each CSV: "
        "`deeplabcut.convertcsv2h5('config.yaml', userfeedback=False)` writes it.",
    ]


def _sheet_coco(fmt: str, names: list[str], splits: tuple[str, ...]) -> list[str]:
    """What the COCO files carry; for MMPose, what `dataset_info.py` holds and how a config reads it."""
    L = [
        "Everything the ledger holds for the newest label version of each frame: keypoints with visibility "
        "0/1/2, the strata as `attributes`, head boxes as `bbox_head`, and each annotation's provenance under "
        "`iterate` (label version, ledger source and origin, Label Studio task and annotation ids, annotator, "
        "round, the model that pre-annotated it, when it was stored). Earlier label versions stay in the "
        "ledger, not in the files.",
    ]
    if fmt != "mmpose":
        return L
    return L + [
        "",
        "`dataset_info.py`: `swap` from the flip pairs, `joint_weights` from the manifest's "
        "`keypoints.weights`, OKS `sigmas` by joint name:",
        "",
        *_table(["joint", "sigma", "from"], [[n, f"{sigma_for(n)[0]:g}", sigma_for(n)[1]] for n in names]),
        "An MMPose 1.x config reads it as",
        "",
        "```python",
        "dataset = dict(type='CocoDataset', data_root='DIR/', data_mode='topdown',",
        f"               ann_file='annotations/{splits[0]}.json', data_prefix=dict(img='images/'),",
        "               metainfo=dict(from_file='DIR/dataset_info.py'))",
        "```",
    ]
