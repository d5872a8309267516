"""Batched inference: flip TTA (flip, swap left/right channels, optional one-pixel shift, average), optional
rotation TTA, optional head-up two-pass, DARK decoding back to original image pixels, per-joint confidence
and a pooled backbone embedding per frame; with a box head, the person box it finds on the whole frame, which the
refine pass crops on (mean with the first pass's keypoint box). Streams: memory does not grow with the number of
frames.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from iterate.core.joints import JointMatch, match_joints
from iterate.core.schema import KeypointSpec
from model.codec import BoxCodec, DarkCodec
from model.data import BOX_MARGIN, PoseDataset, Sample, collate, up_angle
from model.geometry import apply, detection_square, invert, keypoint_box
from model.hrnet import PoseHRNet


@dataclass
class Batch:
    """One batch of raw outputs; ``heatmaps_flip`` is already flipped back and channel-swapped."""

    index: np.ndarray  # sample indices
    heatmaps: torch.Tensor  # (B, K, H, W)
    heatmaps_flip: torch.Tensor | None
    embedding: torch.Tensor  # (B, D)
    matrix: np.ndarray  # (B, 2, 3) image → crop
    bad: list[str]
    box: torch.Tensor | None = None  # (B, 2, h, w) box head maps (flip-averaged), when asked for and the net has one


@dataclass
class Predictions:
    keypoints: np.ndarray  # (N, K, 2) image pixels (NaN for unreadable frames)
    scores: np.ndarray  # (N, K) heatmap maxima
    embeddings: np.ndarray  # (N, D) float16
    bad: list[str]
    boxes: np.ndarray | None = None  # (N, 3) the box head's person box on the whole frame: cx, cy, side (image px)


def to_image(coords: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Crop coordinates (N, K, 2) → image pixels through each sample's inverse crop matrix."""
    return np.stack([apply(invert(mt), c) for mt, c in zip(mats, coords)])


@dataclass(frozen=True)
class InferConfig:
    """How a checkpoint is run: written into every checkpoint at training time, read back by :func:`load_predictor`,
    so that `predict`, selection, pre-annotations, checkpoint choice and the report run one inference path."""

    flip_index: tuple[int, ...]
    flip: bool = True  # flip TTA (flip, swap left/right channels, average)
    refine: bool = True  # second pass on the person box the first pass found
    head_up: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (body joints, head joints): rotate head up
    rotations: tuple[float, ...] = ()  # rotation TTA angles (degrees)
    flip_shift: bool = False  # HRNet's one-pixel shift of the flipped-back map
    box_head: bool = True  # refine on the mean of the box head's box and the keypoint box, where the net has a head
    refine_passes: int = 1  # refine passes; each later one re-boxes on the last pass (and its head's box there)
    localise: str = "frame"  # the first pass's crop: the whole frame, or the box head's person box found on it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flip_index"] = list(self.flip_index)
        d["head_up"] = None if self.head_up is None else [list(self.head_up[0]), list(self.head_up[1])]
        d["rotations"] = list(self.rotations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> InferConfig:
        hu = d.get("head_up")
        return cls(
            tuple(int(i) for i in d["flip_index"]),
            bool(d.get("flip", True)),
            bool(d.get("refine", True)),
            None if not hu else (tuple(hu[0]), tuple(hu[1])),
            tuple(float(r) for r in d.get("rotations", ())),
            bool(d.get("flip_shift", False)),
            bool(d.get("box_head", True)),
            int(d.get("refine_passes", 1)),
            str(d.get("localise", "frame")),
        )

    def override(self, **kw) -> InferConfig:
        """A copy with the given settings changed; ``None`` keeps the checkpoint's own, ``head_up=False`` turns
        the head-up pass off."""
        kw = {k: v for k, v in kw.items() if v is not None}
        if kw.get("head_up") is False:
            kw["head_up"] = None
        elif kw.get("head_up") is True:
            kw.pop("head_up")  # on only where the checkpoint knows which joints are up
        return replace(self, **kw)

    def describe(self) -> str:
        parts = (["flip TTA"] if self.flip else ["no flip"]) + (["box refine"] if self.refine else ["no refine"])
        if self.localise == "box_head":
            parts.insert(0, "person found by the box head first")
        if self.refine and self.refine_passes > 1:
            parts[-1] += f" ×{self.refine_passes}"
        if self.refine and self.box_head:
            parts[-1] += " (box head where the model has one)"
        if self.head_up:
            parts.append("head-up pass")
        if self.rotations:
            parts.append("rotations " + "/".join(f"{r:g}°" for r in self.rotations))
        return " + ".join(parts)


# selection's cheaper scoring path: one flip-TTA pass on the whole frame (uncertainty comes from the flip pair)
SCORING = {"flip": True, "refine": False, "head_up": False, "rotations": (), "box_head": False}


def settings_from_checkpoint(ck: dict) -> InferConfig:
    """The checkpoint's recorded inference settings; older checkpoints (no record): flip + refine, and the
    left/right swap guessed from the joint names."""
    if isinstance(ck.get("infer"), dict):
        return InferConfig.from_dict(ck["infer"])
    return InferConfig(tuple(KeypointSpec.from_names(list(ck["joints"])).flip_index()))


def load_predictor(
    checkpoint: str | Path,
    *,
    joints: list[str] | tuple[str, ...] | None = None,
    flip: bool | None = None,
    refine: bool | None = None,
    head_up: bool | None = None,
    rotations: tuple[float, ...] | None = None,
    box_head: bool | None = None,
    refine_passes: int | None = None,
    localise: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str | None = None,
) -> Predictor:
    """The one predictor builder: an iterate checkpoint → a :class:`Predictor` with the inference settings the
    checkpoint records; each keyword (not ``None``) is an explicit opt-out or change. ``joints``: the manifest's
    joint names; predictions come out in that order, each joint matched by name to the checkpoint's
    (:func:`iterate.core.joints.match_joints`), NaN with score 0 where the checkpoint does not predict it."""
    from model.checkpoints import model_from_checkpoint

    net, ck = model_from_checkpoint(checkpoint)
    st = settings_from_checkpoint(ck).override(
        flip=flip,
        refine=refine,
        head_up=head_up,
        rotations=rotations,
        box_head=box_head,
        refine_passes=refine_passes,
        localise=localise,
    )
    codec = DarkCodec(ck["input_size"], ck["heatmap_size"], ck["sigma"])
    pred = Predictor.from_settings(net, codec, st, batch_size=batch_size, workers=workers, device=device)
    if joints is not None:
        jm = match_joints(list(ck["joints"]), list(joints), what=f"checkpoint {checkpoint}")
        pred.joints = None if jm.identity else jm
    return pred


def sample_boxes(samples: list[Sample]) -> dict[int, tuple[tuple[float, float], float]]:
    """Sample index → the square the pose pass crops for the samples that carry a detector's ``person_box``."""
    return {i: detection_square(s.person_box) for i, s in enumerate(samples) if s.person_box is not None}


LOCALISE_MAX = 0.7  # localise crops on the head's box only when it is smaller than this share of the frame's side


def joints_box(kps: np.ndarray, scores: np.ndarray, rel: float = 0.3, margin: float = BOX_MARGIN):
    """One frame's refine box from its predicted keypoints: the box of the joints whose heatmap peak is at least
    ``rel`` × the frame's best (and 0.05), with ``margin``; None when too few joints are confident."""
    conf = scores >= max(0.05, rel * float(scores.max()))
    return keypoint_box(kps, conf.astype(int), margin=margin)


def mean_box(box: tuple[tuple[float, float], float], other: np.ndarray) -> tuple[tuple[float, float], float]:
    """The mean of a (centre, side) box and a (cx, cy, side) box: centres averaged, sides by geometric mean."""
    (cx, cy), s = box
    return ((cx + float(other[0])) / 2, (cy + float(other[1])) / 2), float(np.sqrt(s * float(other[2])))


class _Prefetch:
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead. Image decoding and warping (OpenCV)
    release the GIL, so reading and cropping the next batch overlaps the forward passes — without forking a
    loader process (a fork after OpenCV or OpenMP started threads can deadlock)."""

    _END = object()

    def __init__(self, iterable, depth: int = 2):
        self._q: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterable) -> None:
        try:
            for x in iterable:
                if not self._put(x):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(("__error__", e))
            return
        self._put(self._END)

    def __iter__(self):
        try:
            while True:
                x = self._q.get()
                if x is self._END:
                    return
                if isinstance(x, tuple) and len(x) == 2 and x[0] == "__error__":
                    raise x[1]
                yield x
        finally:
            self._stop.set()


class Predictor:
    def __init__(
        self,
        model: PoseHRNet,
        codec: DarkCodec,
        flip_index: list[int],
        *,
        flip: bool = True,
        flip_shift: bool = False,
        rotations: tuple[float, ...] = (),
        head_up: tuple | None = None,
        refine: bool = False,
        box_head: bool = True,
        refine_passes: int = 1,
        localise: str = "frame",
        device: str | None = None,
        batch_size: int = 32,
        workers: int | None = None,
    ):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.codec = codec
        self.flip_index = list(flip_index)
        self.flip = flip
        self.flip_shift = flip_shift
        self.rotations = tuple(r for r in rotations if r)
        self.head_up = head_up
        self.refine = refine
        self.refine_passes = max(1, int(refine_passes))
        self.box_head = box_head
        self.localise = localise
        self.box_codec = BoxCodec(model.input_size, model.box_map_size) if model.box_head is not None else None
        self.batch_size = batch_size
        self.workers = workers
        self.joints: JointMatch | None = None  # the manifest's joints, where they are not the network's channels
        self.settings = InferConfig(
            tuple(self.flip_index),
            flip,
            refine,
            None if head_up is None else (tuple(head_up[0]), tuple(head_up[1])),
            self.rotations,
            flip_shift,
            box_head,
            self.refine_passes,
            localise,
        )

    @classmethod
    def from_settings(cls, model: PoseHRNet, codec: DarkCodec, settings: InferConfig, **kw) -> Predictor:
        return cls(
            model,
            codec,
            list(settings.flip_index),
            flip=settings.flip,
            flip_shift=settings.flip_shift,
            rotations=settings.rotations,
            head_up=settings.head_up,
            refine=settings.refine,
            box_head=settings.box_head,
            refine_passes=settings.refine_passes,
            localise=settings.localise,
            **kw,
        )

    def _iterate(self, loader: DataLoader, n: int):
        """``workers=None`` (default): batches read in a background thread when there is more than one batch
        (`bench/speed/infer_throughput.py`); ``workers=N``: N loader processes, as the DataLoader runs them."""
        if self.workers is None and n > self.batch_size:
            return _Prefetch(loader)
        return loader

    def _loader(self, samples: list[Sample], rotations: dict[int, float] | None = None, boxes=None) -> DataLoader:
        ds = PoseDataset(
            samples,
            self.codec,
            flip_index=self.flip_index,
            joint_weights=[1.0] * len(self.flip_index),
            train=False,
            rotations=rotations,
            boxes=boxes,
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers or 0,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
        )

    @torch.inference_mode()
    def batches(
        self, samples: list[Sample], rotations: dict[int, float] | None = None, boxes=None, with_box: bool = False
    ) -> Iterator[Batch]:
        """Raw network outputs batch by batch (selection scores them without keeping heatmaps around);
        ``with_box``: also the box head's maps, where the net has a head. Without ``boxes`` or ``rotations`` a sample
        with a ``person_box`` (a detector's) is cropped on it, the others on the whole frame."""
        with_box = with_box and self.box_codec is not None
        if boxes is None and not rotations:
            boxes = sample_boxes(samples) or None
        for b in self._iterate(self._loader(samples, rotations, boxes), len(samples)):
            if "image" not in b:
                yield Batch(np.zeros(0, int), torch.zeros(0), None, torch.zeros(0), np.zeros((0, 2, 3)), b["bad"])
                continue
            x = b["image"].to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            out = self.model(x, with_embedding=True, with_box=with_box)
            hm, emb, box = out[0], out[1], out[2] if with_box else None
            hf = None
            if self.flip:
                xf = torch.flip(x, dims=[3])
                hf, bf = self.model(xf, with_box=True) if with_box else (self.model(xf), None)
                hf = torch.flip(hf, dims=[3])[:, self.flip_index]
                if self.flip_shift:  # HRNet's one-pixel shift of the flipped-back map
                    hf = torch.cat([hf[..., :1], hf[..., :-1]], dim=-1)
                if box is not None:  # the box maps have no left/right channels: flip back and average
                    box = 0.5 * (box + torch.flip(bf, dims=[3]))
            yield Batch(
                b["index"].numpy(),
                hm.float().cpu(),
                None if hf is None else hf.float().cpu(),
                emb.float().cpu(),
                b["matrix"].numpy(),
                b["bad"],
                None if box is None else box.float().cpu(),
            )

    def decode_boxes(self, b: Batch) -> np.ndarray:
        """The box head's person boxes of a batch in image pixels, (B, 3): cx, cy, side."""
        centres, sides, _ = self.box_codec.decode(b.box)
        out = np.zeros((len(centres), 3))
        for j, (mt, c, s) in enumerate(zip(b.matrix, centres, sides)):
            inv = invert(mt)
            out[j, :2] = apply(inv, c[None])[0]
            out[j, 2] = s * float(np.hypot(inv[0, 0], inv[1, 0]))  # crop → image scale
        return out

    def decode(self, b: Batch) -> tuple[np.ndarray, np.ndarray]:
        hm = b.heatmaps if b.heatmaps_flip is None else 0.5 * (b.heatmaps + b.heatmaps_flip)
        coords, scores = self.codec.decode(hm)
        return to_image(coords, b.matrix), scores

    def predict(
        self,
        samples: list[Sample],
        progress: Callable[[int, int], None] | None = None,
        person_boxes: dict[int, tuple[tuple[float, float], float]] | None = None,
    ) -> Predictions:
        """``person_boxes``: sample index → a person box (centre, side) found elsewhere (a detector's, a file's):
        the first pass crops on it instead of the whole frame (and no box-head localisation runs for it). Default:
        the samples' own ``person_box`` where they have one."""
        if person_boxes is None:
            person_boxes = sample_boxes(samples)
        n, k = len(samples), len(self.flip_index)
        kps = np.full((n, k, 2), np.nan)
        scores = np.zeros((n, k), np.float32)
        emb: np.ndarray | None = None
        bad: list[str] = []
        done = 0
        with_box = (self.box_head or self.localise == "box_head") and self.box_codec is not None
        boxes = np.full((n, 3), np.nan) if with_box else None
        sides = np.full(n, np.nan)  # each frame's square side as the first pass cropped it (image px)
        for b in self.batches(samples, boxes=person_boxes or None, with_box=with_box):
            bad += b.bad
            done += len(b.index) + len(b.bad)
            if len(b.index):
                c, s = self.decode(b)
                kps[b.index], scores[b.index] = c, s
                sides[b.index] = self.codec.input_size / np.hypot(b.matrix[:, 0, 0], b.matrix[:, 1, 0])
                if emb is None:
                    emb = np.zeros((n, b.embedding.shape[1]), np.float16)
                emb[b.index] = b.embedding.numpy().astype(np.float16)
                if boxes is not None and b.box is not None:
                    boxes[b.index] = self.decode_boxes(b)
            if progress:
                progress(done, n)
        if emb is None:
            emb = np.zeros((n, 0), np.float16)
        if self.localise == "box_head" and boxes is not None:
            self._localise_pass(samples, kps, scores, boxes, sides, skip=person_boxes)
        if self.refine:
            self._refine_pass(samples, kps, scores, boxes)
        if self.head_up is not None:
            self._head_up_pass(samples, kps, scores)
        if self.rotations:
            self._rotation_tta(samples, kps, scores)
        kps, scores = self.to_target(kps, scores)
        return Predictions(kps, scores, emb, bad, boxes)

    def to_target(self, kps: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's joints (N, K, …) → the manifest's (N, T, …) by :attr:`joints`: NaN keypoints and score 0
        where the network does not predict a joint."""
        if self.joints is None:
            return kps, scores
        src = self.joints.src
        out_k = np.full((len(kps), len(src), 2), np.nan)
        out_s = np.zeros((len(kps), len(src)), scores.dtype)
        for t, s in enumerate(src):
            if s is not None:
                out_k[:, t], out_s[:, t] = kps[:, s], scores[:, s]
        return out_k, out_s

    def _rerun(self, samples, rot: dict[int, float], kps, scores, average: bool, boxes=None, head_boxes=None):
        """Run again on rotations or boxes; ``head_boxes`` (N, 3), when given, is updated with the box head's
        box read on each new crop."""
        idx = sorted(rot if boxes is None else boxes)
        sub = [samples[i] for i in idx]
        sub_rot = {j: rot[i] for j, i in enumerate(idx) if i in rot}
        # a rotation pass crops where the first pass did: a detector's person box, else the whole frame
        sub_box = {j: boxes[i] for j, i in enumerate(idx)} if boxes else (sample_boxes(sub) or None)
        for b in self.batches(sub, sub_rot, sub_box, with_box=head_boxes is not None):
            if not len(b.index):
                continue
            c, s = self.decode(b)
            orig = np.array([idx[j] for j in b.index])
            if head_boxes is not None and b.box is not None:
                head_boxes[orig] = self.decode_boxes(b)
            if average:
                w0, w1 = scores[orig][..., None], s[..., None]
                kps[orig] = (kps[orig] * w0 + c * w1) / np.maximum(w0 + w1, 1e-6)
                scores[orig] = (scores[orig] + s) / 2
            else:
                kps[orig], scores[orig] = c, s

    def _localise_pass(self, samples, kps, scores, head_boxes: np.ndarray, frame_sides: np.ndarray, skip=()) -> None:
        """Find the person first: the pose pass again on the person box the box head found on the whole frame (its
        keypoints replace the whole frame's); the head's box is read again on that closer crop. ``skip``: frames
        whose first pass already cropped on a person box found elsewhere."""
        boxes = {}
        for i, b in enumerate(head_boxes):
            if i in skip or not (np.isfinite(b).all() and b[2] >= 16) or np.isnan(kps[i]).all():
                continue
            if b[2] < LOCALISE_MAX * frame_sides[i]:  # a person that fills the frame is cropped whole, as before
                boxes[i] = ((float(b[0]), float(b[1])), float(b[2]))
        if boxes:
            self._rerun(samples, {}, kps, scores, average=False, boxes=boxes, head_boxes=head_boxes)

    def _refine_pass(self, samples, kps, scores, head_boxes: np.ndarray | None = None) -> None:
        """Second pass on the person box that the first (whole-frame) pass found: the person fills the crop. The box
        is the confident joints' box; with a box head, the mean of that and the head's box (centre averaged, side
        geometric mean — `bench/experiments/person_box/person_box.py` measures each). With ``refine_passes`` > 1
        each later pass re-boxes on the last one's keypoints and on the head's box read on the last crop
        (`bench/experiments/box_fusion/box_fusion.py`)."""
        hb = None if head_boxes is None else head_boxes.copy()
        for p in range(self.refine_passes):
            boxes = self._refine_boxes(samples, kps, scores, hb)
            if not boxes:
                return
            more = p + 1 < self.refine_passes
            self._rerun(samples, {}, kps, scores, average=False, boxes=boxes, head_boxes=hb if more else None)

    def _refine_boxes(self, samples, kps, scores, head_boxes: np.ndarray | None) -> dict:
        boxes = {}
        for i in range(len(samples)):
            if np.isnan(kps[i]).any():
                continue
            box = joints_box(kps[i], scores[i])
            if head_boxes is not None and np.isfinite(head_boxes[i]).all():
                box = (
                    mean_box(box, head_boxes[i])
                    if box is not None
                    else ((head_boxes[i, 0], head_boxes[i, 1]), head_boxes[i, 2])
                )
            if box is not None and box[1] >= 16:
                boxes[i] = box
        return boxes

    def _head_up_pass(self, samples, kps, scores) -> None:
        """Second pass, rotated by the multiple of 90° that puts the predicted head up."""
        rot = {}
        for i in range(len(samples)):
            if np.isnan(kps[i]).any():
                continue
            ang = up_angle(kps[i], (scores[i] > 0.1).astype(int), self.head_up)
            if ang:
                rot[i] = ang
        if rot:
            self._rerun(samples, rot, kps, scores, average=False)

    def _rotation_tta(self, samples, kps, scores) -> None:
        for r in self.rotations:
            self._rerun(samples, {i: r for i in range(len(samples)) if not np.isnan(kps[i]).any()}, kps, scores, True)
