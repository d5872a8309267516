"""The one manifest loader: `data_manifest.yaml` → a validated :class:`Manifest`.

Every relative path in the manifest is relative to the manifest's own folder; :meth:`Manifest.resolve`
turns one into an absolute path. Validation errors name the field path (``keypoints.flip_pairs[2][0]``).

The sections here are the one place each setting's default is written: the frozen settings the libraries take
(``model.config``, ``annotation.settings``, ``iterate.selection``) declare none for the fields the manifest sets and
are built from these models by :mod:`iterate.loop.settings` (tests/test_settings.py holds them to it).
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from iterate.core.errors import ManifestError
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05, canonical
from iterate.core.schema import KeypointSpec, NormalizerSpec, flip_index
from iterate.core.score_kinds import SCORES
from iterate.core.score_kinds import describe as describe_scores
from iterate.core.strata import DEFAULT_THRESHOLDS, DEFAULT_VALUES, Derivation, values_needed

DEFAULT_MANIFEST = "data_manifest.yaml"


def _holds_bool(v, ann) -> bool:
    """True when ``v`` puts a YAML true/false where ``ann`` wants a number (pydantic would read it as 1 / 0)."""
    if ann in (int, float):
        return isinstance(v, bool)
    args = get_args(ann)
    if get_origin(ann) in (Union, UnionType):
        return any(_holds_bool(v, a) for a in args)
    if get_origin(ann) is list and isinstance(v, list):
        return any(_holds_bool(x, args[0]) for x in v)
    if get_origin(ann) is dict and isinstance(v, dict):
        return any(_holds_bool(x, args[1]) for x in v.values())
    return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v, info: ValidationInfo):
        if _holds_bool(v, cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number, not true/false")
        return v


_NORMALIZER = NormalizerSpec()  # the core's frozen spec declares the normaliser's defaults; the manifest reads them


class Normalizer(_Strict):
    """PCKh normaliser ``l``: MPII head size, a head segment between two joints, or the person box."""

    kind: Literal["head_box", "head_segment", "person_box"] = _NORMALIZER.kind
    joints: list[str] = Field(
        default_factory=lambda: list(_NORMALIZER.joints), description="the two joints of a head_segment"
    )
    factor: float = Field(_NORMALIZER.factor, gt=0, description="l = factor × (segment length | box diagonal)")
    fallback: Literal["person_box_ratio", "none"] = Field(
        _NORMALIZER.fallback,
        description="frames without this normaliser: the labeled joints' box diagonal × the "
        "median normaliser-to-box ratio of the frames that have both (none: leave them out, counted)",
    )
    fallback_ratio: float | None = Field(
        _NORMALIZER.fallback_ratio, gt=0, description="a fixed normaliser-to-box ratio for the fallback"
    )


class KeypointSchema(_Strict):
    names: list[str] = Field(min_length=1)
    flip_pairs: list[tuple[str, str]] = Field(default_factory=list)
    skeleton: list[tuple[str, str]] = Field(default_factory=list)
    weights: dict[str, float] = Field(default_factory=dict, description="loss weight per joint, default 1")
    height_joints: list[str] = Field(default_factory=list, description="joints of MeanSmS")
    height_chain: list[list[str]] = Field(
        default_factory=list, description="chains of joints whose summed segment lengths are the height"
    )
    normalizer: Normalizer = Field(default_factory=Normalizer)
    init_from: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="a joint the checkpoint lacks → the checkpoint's joint (or joints, averaged) whose weights start it",
    )

    @field_validator("names")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"joint names repeat: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _known_joints(self) -> KeypointSchema:
        known = set(self.names)

        def check(field: str, items):
            for path, name in items:
                if name not in known:
                    raise ValueError(f"{field}{path}: unknown joint '{name}'")

        check("flip_pairs", ((f"[{i}][{j}]", n) for i, p in enumerate(self.flip_pairs) for j, n in enumerate(p)))
        check("skeleton", ((f"[{i}][{j}]", n) for i, p in enumerate(self.skeleton) for j, n in enumerate(p)))
        check("weights", ((f".{n}", n) for n in self.weights))
        check("height_joints", ((f"[{i}]", n) for i, n in enumerate(self.height_joints)))
        check("height_chain", ((f"[{i}][{j}]", n) for i, c in enumerate(self.height_chain) for j, n in enumerate(c)))
        check("normalizer.joints", ((f"[{i}]", n) for i, n in enumerate(self.normalizer.joints)))
        # keys are this manifest's joints; values name the checkpoint's joints, checked when a checkpoint is loaded
        check("init_from", ((f".{k}", k) for k in self.init_from))
        for k, v in self.init_from.items():
            if not v or any(not str(x).strip() for x in ([v] if isinstance(v, str) else v)):
                raise ValueError(f"init_from.{k}: name the checkpoint joint(s) it starts from")
        paired: dict[str, int] = {}
        for i, (a, b) in enumerate(self.flip_pairs):
            if a == b:
                raise ValueError(f"flip_pairs[{i}]: a joint cannot be its own left/right pair ({a})")
            for n in (a, b):
                if n in paired:
                    raise ValueError(
                        f"flip_pairs[{i}]: joint '{n}' is already in flip_pairs[{paired[n]}]: "
                        "each joint has at most one mirror joint"
                    )
                paired[n] = i
        if self.normalizer.kind == "head_segment" and len(self.normalizer.joints) != 2:
            raise ValueError("normalizer.joints: a head_segment needs exactly two joints")
        for k, w in self.weights.items():
            if w < 0 or not math.isfinite(w):
                raise ValueError(f"weights.{k}: must be a finite number ≥ 0")
        return self

    # -- derived helpers -------------------------------------------------------------------------
    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def flip_index(self) -> list[int]:
        """Permutation that swaps left/right joints (used by flip augmentation and flip TTA)."""
        return flip_index(self.names, self.flip_pairs)

    def joint_weights(self) -> list[float]:
        return [float(self.weights.get(n, 1.0)) for n in self.names]

    def spec(self) -> KeypointSpec:
        """The schema as frozen plain settings for the model, Label Studio and the reports."""
        n = self.normalizer
        return KeypointSpec(
            names=tuple(self.names),
            flip_pairs=tuple((a, b) for a, b in self.flip_pairs),
            skeleton=tuple((a, b) for a, b in self.skeleton),
            weights=tuple(self.joint_weights()),
            height_joints=tuple(self.height_joints),
            height_chain=tuple(tuple(c) for c in self.height_chain),
            normalizer=NormalizerSpec(n.kind, tuple(n.joints), n.factor, n.fallback, n.fallback_ratio),
            init_from=tuple((k, v if isinstance(v, str) else tuple(v)) for k, v in self.init_from.items()),
        )


MIN_FPS = 1e-4  # video sampling rate: below it the step (video rate / fps) is no longer a sensible number

_RESERVED_FOLDER_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10))}


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a folder of its own under the workspace (frames are cut into ``frames/<name>``),
    or None. Refused: empty, a path separator, ``..``, control characters, a leading dot, a trailing dot or
    space, Windows' reserved device names (``CON``, ``NUL``, ``COM1``, …, with or without an extension)."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "holds a path separator (/ or \\)"
    if ".." in name:
        return "holds '..'"
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in name):
        return "holds a control character"
    if name.startswith("."):
        return "starts with a dot"
    if name[-1] in ". ":
        return "ends with a dot or a space"
    if name.split(".")[0].rstrip(" ").upper() in _RESERVED_FOLDER_NAMES:
        return "is a reserved device name (CON, NUL, COM1, …)"
    if len(name.encode("utf-8", "surrogateescape")) > 200:
        return "is longer than 200 bytes"
    return None


class Source(_Strict):
    """Where frames come from. ``split`` is ``pool`` (unlabeled, selectable), ``train``, ``val`` or ``test``."""

    name: str | None = None
    kind: Literal["images", "video", "coco", "labelstudio", "dlc", "sleap"]
    path: str
    images: str | None = Field(None, description="coco / labelstudio: folder the image paths are relative to")
    split: Literal["pool", "train", "val", "test"] = "pool"
    every: int = Field(1, ge=1, description="video: keep every Nth frame")
    video: str | None = Field(
        None, description="sleap: the labeled video (default: the file the .slp names, next to it)"
    )
    fps: float | None = Field(None, gt=0, description="video: sample at this rate instead of `every`")
    start: int | None = Field(
        None,
        ge=0,
        description="video: the first frame index taken (frames start ≤ i < end): val/test held apart in time",
    )
    end: int | None = Field(None, ge=1, description="video: the frame index where taking stops (not taken itself)")
    labels: bool = Field(True, description="coco: import the labels (false: register the images only)")
    person_boxes: str | None = Field(
        None,
        description="COCO detection results for this source's frames ([{image_id | file_name | frame_index, bbox: "
        "[x, y, w, h], score}], MMPose's bbox_file): the pose pass crops on each frame's most confident person "
        "instead of the whole frame; frames where several people score are counted",
    )

    @field_validator("fps")
    @classmethod
    def _sensible_fps(cls, v: float | None) -> float | None:
        if v is not None and v < MIN_FPS:
            raise ValueError(
                f"must be at least {MIN_FPS:g} frames per second (one frame per {1 / MIN_FPS / 3600:.1f} h)"
            )
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        why = folder_name_problem(v) if v is not None else None
        if why:
            raise ValueError(f"{v!r} {why}: a source name must be a plain folder name (letters, digits, - _ .)")
        return v

    @model_validator(mode="after")
    def _frame_range(self) -> Source:
        if (self.start is not None or self.end is not None) and self.kind != "video":
            raise ValueError(f"start/end: a frame range is for a video source, not {self.kind}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start}): frames start ≤ i < end")
        return self

    @model_validator(mode="after")
    def _safe_label(self) -> Source:
        why = folder_name_problem(self.label) if self.name is None and self.label else None  # "." has none
        if why:
            raise ValueError(f"the name taken from path, {self.label!r}, {why}: give the source a plain `name`")
        return self

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


BEST_METRICS = (PCKH01, PCKH05, MEAN_SMS01)  # the val figures training computes (reports.metrics.keypoint_scores)


def _metric(v) -> str:
    """A metric name → its key (older names accepted: :func:`deprecated_names` reports them)."""
    if not isinstance(v, str):
        raise ValueError(f"expected a metric name such as {PCKH01!r}, got {v!r}")
    return canonical(v)[0]


def deprecated_names(data: dict, path) -> list[str]:
    """One line per older metric name the raw manifest uses (``pckh01``, ``pckh``, …)."""
    out = []
    for section, field in (("train", "best_metric"), ("selection", "focus_metric")):
        v = (data.get(section) or {}).get(field) if isinstance(data.get(section), dict) else None
        if isinstance(v, str):
            try:
                note = canonical(v)[1]
            except ValueError:
                continue
            if note:
                out.append(f"{path}: {section}.{field}: {note}")
    return out


class ModelSettings(_Strict):
    backbone: str = "hrnet_w18_small"
    input_size: int = Field(128, ge=32)
    heatmap_size: int = Field(32, ge=8)
    sigma: float = Field(2.0, gt=0)
    base: str | None = Field(None, description="checkpoint the first round fine-tunes from")
    refine: bool = Field(True, description="inference: second pass on the person box the first pass found")
    refine_passes: int = Field(
        1, ge=1, le=4, description="inference: refine passes, each re-boxed on the last one's keypoints (and head box)"
    )
    head_up: bool = Field(False, description="inference: second pass rotated so the predicted head is up")
    box_head: bool = Field(
        False,
        description="train a person-box head beside the heatmaps; inference's refine pass then crops on the mean of "
        "its box and the first pass's keypoint box",
    )
    localise: Literal["frame", "box_head"] = Field(
        "frame",
        description="inference: where the first pose pass crops — the whole frame, or (with a box head) the person "
        "box the head finds on the whole frame: for people who do not fill the frame",
    )


class AugmentSettings(_Strict):
    n: int = Field(2, ge=0, description="RandAugment: ops per sample")
    m: float = Field(0.5, ge=0, le=1, description="RandAugment: magnitude 0..1")
    max_pixel: int = Field(1, ge=0)
    max_noise: int = Field(1, ge=0)
    flip: bool = True
    rotate_deg: float = 30.0
    scale: float = 0.25
    head_up: bool = False
    person_box: float = Field(0.5, ge=0, le=1, description="share of samples cropped to the labeled person's box")
    box_jitter: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="person crops: shift the box's centre by a normal draw of this × its side per axis, like the "
        "refine pass's own box errors (0 = centred on the labels)",
    )
    zoom_out: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of samples whose frame is pasted, shrunk, at a random place of a larger canvas over another "
        "frame (blurred): a person from `zoom_min` of the crop's side to all of it, for a box head that finds people "
        "who do not fill the frame",
    )
    zoom_min: float = Field(
        0.1, gt=0, le=1, description="zoom_out: the smallest share of the crop's side a frame shrinks to"
    )


class ReplaySettings(_Strict):
    """Fine-tuning that keeps what the base knew: frames of ``source`` (the base's own training data, ingested as
    a `train` source) make up ``fraction`` of every epoch's samples instead of their natural share."""

    source: str = Field(description="the `name` of a labeled source in `sources`")
    fraction: float = Field(0.3, gt=0, lt=1, description="share of each epoch's samples drawn from the replay source")


class TrainSettings(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(3e-3, gt=0, description="learning rate from scratch")
    finetune_lr: float = Field(5e-4, gt=0, description="learning rate when warm-starting from a checkpoint")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "step"] = "cosine"
    freeze: str = "none"
    seed: int = 0
    loss_scale: float = Field(1000.0, gt=0)
    fg_weight: float = Field(
        9.0,
        ge=0,
        description="heatmap loss: each pixel weighs 1 + this × the target's 3×3 maximum there, so the pixels "
        "around a joint's peak count more than the background (0 = plain MSE; 9 measured best in "
        "bench/experiments/cpu_recipe/learn_cpu.py)",
    )
    ohkm_topk: int = Field(
        0,
        ge=0,
        description="heatmap loss: only each sample's k hardest joints count (online hard keypoint mining; 0 = all)",
    )
    best_metric: str = Field(
        PCKH01,
        description=f"val figure that picks the best checkpoint: {', '.join(BEST_METRICS)} (ties: the other PCKh, "
        "then the loss)",
    )
    eval_every_steps: int = Field(
        100,
        ge=1,
        description="score val (and maybe keep a best checkpoint) every N steps "
        "and after the last epoch, not after every epoch of a small set",
    )
    workers: int = Field(0, ge=0)
    ema: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="decay of an exponential moving average of the weights; evaluation and checkpoints use the "
        "average (0 = off; 0.99–0.999 for thousands of steps)",
    )
    l2sp: float = Field(
        0.0,
        ge=0,
        description="fine-tuning: pull the trunk's weights back toward the starting "
        "checkpoint's by this rate × lr per step (L2-SP, decoupled like AdamW's decay); 0 = off",
    )
    replay: ReplaySettings | None = None
    augment: AugmentSettings = Field(default_factory=AugmentSettings)

    @field_validator("best_metric", mode="before")
    @classmethod
    def _best_metric(cls, v):
        k = _metric(v)
        if k not in BEST_METRICS:
            raise ValueError(f"{v!r}: training scores val by {', '.join(BEST_METRICS)}")
        return k


class ExtendInstructions(_Strict):
    """``label_studio.instructions: {extend: text}``: the generated instructions, then this text."""

    extend: str = Field(description="plain text shown after the generated instructions")


class LabelStudioSection(_Strict):
    """``label_studio:``: the one place its defaults are written; iterate/loop/settings.py:studio_settings turns it
    into the annotation package's frozen :class:`annotation.settings.LabelStudioSettings`."""

    url: str = "http://127.0.0.1:8080"
    project_title: str = "iterate"
    token_env: str = "LABEL_STUDIO_TOKEN"
    data_root: str = "."
    batch_size: int = Field(500, ge=1)
    agreement: bool = False
    instructions: str | ExtendInstructions | None = Field(
        None,
        description="what Label Studio shows annotators before labeling: left out, generated from the keypoints "
        "and strata (the joints, left/right, occluded vs unlabeled, the strata choices); a text replaces it; "
        "{extend: text} appends the text to it. Plain text (a blank line starts a paragraph), shown as written",
    )

    @field_validator("instructions", mode="before")
    @classmethod
    def _text_or_extend(cls, v):
        """One message for any other shape (the union's own errors name its members, not what to write)."""
        ok = isinstance(v, str) or (isinstance(v, dict) and list(v) == ["extend"] and isinstance(v["extend"], str))
        if v is not None and not ok:
            raise ValueError(f"must be a text (replaces the generated instructions) or {{extend: text}}, not {v!r:.60}")
        return v

    @field_validator("instructions")
    @classmethod
    def _some_text(cls, v):
        text = v.extend if isinstance(v, ExtendInstructions) else v
        if text is not None and not text.strip():
            raise ValueError("empty: leave the key out for the generated instructions")
        return v

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        """The URL is printed in status and error lines: a user name or password in it would be printed too."""
        from urllib.parse import urlsplit

        try:
            u = urlsplit(v)
            u.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("not a URL (http://host:port)") from None
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if u.username is not None or u.password is not None or "@" in u.netloc:
            raise ValueError(
                "holds a user name or password: remove it; the token comes from the variable named by token_env"
            )
        return v

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not v.replace("_", "").isalnum() or v[0].isdigit():
            raise ValueError("must be the NAME of an environment variable, not a token")
        return v


class TrackingSettings(_Strict):
    backend: Literal["mlflow", "wandb", "none"] = Field(
        "mlflow",
        description="each retrain is a run of this tracker and report logs to it: mlflow (MLFLOW_TRACKING_URI or the "
        "workspace), wandb (pip install iterate[wandb]; online with WANDB_API_KEY, else offline files), none",
    )
    mlflow: bool | None = Field(None, description="the older switch: false is backend none")
    experiment: str | None = Field(
        None, description="MLflow experiment or W&B project name (default: the project name)"
    )

    @property
    def kind(self) -> str:
        """The backend in use: ``mlflow: false`` (the older switch) turns tracking off whatever the backend."""
        return "none" if self.mlflow is False else self.backend


UNCERTAINTY_SCORES = tuple(SCORES)  # the registry: iterate/core/score_kinds.py


class SelectionSettings(_Strict):
    weights: dict[str, float] = Field(
        default_factory=lambda: {"confidence": 1.0, "flip": 1.0, "entropy": 1.0},
        description=f"rank weight per uncertainty score ({describe_scores()})",
    )
    explore: float = Field(0.1, ge=0, le=1)
    diversity_on: Literal["model", "image"] = Field(
        "image",
        description="what k-center spreads the batch over: the scoring model's embeddings, or image features "
        "(the cold start's, without the labeled frames as seeds)",
    )
    dedup_hamming: int = Field(4, ge=0, le=64)
    focus_metric: str = Field(
        PCKH01,
        description="figure whose per-stratum gaps steer the next chunk: pckh@α or mean_sms@α (the report computes "
        "it at that α)",
    )
    video_gap: int = Field(15, ge=0, description="frames of one video closer than this are near duplicates in a batch")
    max_pool_for_report: int = Field(2000, ge=1, description="pool frames the report predicts to size strata")

    @field_validator("focus_metric", mode="before")
    @classmethod
    def _focus_metric(cls, v):
        return _metric(v)

    @field_validator("weights")
    @classmethod
    def _known_scores(cls, v: dict[str, float]) -> dict[str, float]:
        for k, w in v.items():
            if k not in UNCERTAINTY_SCORES:
                raise ValueError(f"'{k}' is not an uncertainty score (one of {', '.join(UNCERTAINTY_SCORES)})")
            if w < 0 or not math.isfinite(w):
                raise ValueError(f"'{k}' must be a finite number ≥ 0")
        return v


class AuditSettings(_Strict):
    """`iterate audit`'s thresholds (iterate/selection/audit.py; lengths in units of PCKh's ``l``). Provisional:
    bench/results/label_audit.json measures them with the shipped base, whose own errors (PCKh@0.5 ≈ 55 % on
    held-out LSPET) bury a joint moved by under 2 ``l``; docs/audit.md."""

    disagreement: float = Field(
        3.0,
        gt=0,
        description="flag a labeled joint whose distance to the prediction / the frame's median distance × its "
        "confidence × (1 + half its bones' robust z) ≥ this",
    )
    swap: float = Field(
        0.5,
        gt=0,
        description="flag a limb whose label crosses the torso (−cos of shoulders against hips) + the prediction's "
        "cost gain when the limb is exchanged / (10/3 per pair) ≥ this",
    )
    implausible_z: float = Field(
        6.0, gt=0, description="flag a bone whose log length / person size is this many robust SDs from the labels'"
    )
    coincident: float = Field(0.05, ge=0, description="flag two labeled joints closer than this × l")
    missing_conf: float = Field(
        0.6,
        gt=0,
        le=1,
        description="flag an unlabeled joint the model places inside the image with this confidence × the share of "
        "its skeleton neighbours labeled",
    )
    min_bodies: int = Field(20, ge=2, description="labeled bodies the bone test needs before it judges any")


class CostSettings(_Strict):
    """What labeling costs (reports/cost.py): how a label's joints count against the pre-annotation it started from."""

    accept_tolerance: float = Field(
        0.05,
        ge=0,
        description="a pre-annotated joint the annotator left within this × l of where it was pushed counts accepted",
    )


class DerivedStratum(_Strict):
    """A stratum that follows from the keypoints, filled for labels that do not carry it (iterate/core/strata.py):
    ``torso_angle`` (posture) or ``hidden_joints`` (occlusion); ``values`` in bin order, ``thresholds`` the edges."""

    derive: Literal["torso_angle", "hidden_joints"]
    values: list[str] | None = Field(
        None,
        description="names in bin order (torso_angle: the angle bins then the no-torso value; default upright, "
        "leaning, horizontal, inverted, unknown; hidden_joints default none, partial, heavy)",
    )
    thresholds: list[float] | None = Field(
        None,
        description="torso_angle: the bins' upper angles in degrees (default 30, 60, 120); hidden_joints: the "
        "counts of hidden or unlabeled joints from which the next value starts (default 1, 4)",
    )

    @model_validator(mode="after")
    def _bins(self) -> DerivedStratum:
        t = self.thresholds if self.thresholds is not None else list(DEFAULT_THRESHOLDS[self.derive])
        if not t or any(not math.isfinite(x) for x in t) or any(b <= a for a, b in zip(t, t[1:])):
            raise ValueError("thresholds: at least one, finite and strictly increasing")
        if self.derive == "torso_angle" and not (0 < t[0] and t[-1] < 180):
            raise ValueError("thresholds: torso angles lie between 0 and 180 degrees")
        if self.derive == "hidden_joints" and (t[0] < 1 or any(x != int(x) for x in t)):
            raise ValueError("thresholds: counts of joints, whole numbers ≥ 1")
        need = values_needed(self.derive, len(t))
        if self.values is None and self.thresholds is not None and len(t) != len(DEFAULT_THRESHOLDS[self.derive]):
            raise ValueError(f"values: {len(t)} thresholds make {need} bins: name them")
        v = self.values if self.values is not None else list(DEFAULT_VALUES[self.derive])
        if len(v) != need:
            extra = (
                " (the angle bins, then the value where no torso is labeled)" if self.derive == "torso_angle" else ""
            )
            raise ValueError(f"values: {self.derive} with {len(t)} thresholds takes {need} values{extra}, not {len(v)}")
        self.values, self.thresholds = v, [float(x) for x in t]
        return self

    def derivation(self) -> Derivation:
        return Derivation(self.derive, tuple(self.values or ()), tuple(self.thresholds or ()))


# The control names of the labeling config (annotation/labeling.py's IMAGE, KP and VIS; the core may not import
# annotation/, tests/test_hardening_ingest.py checks the two agree): a stratum is a control of its own name.
LABEL_CONFIG_NAMES = ("img", "kp", "visibility")


class Manifest(_Strict):
    project: str
    workspace: str = ".iterate"
    ledger: str | None = Field(
        None,
        description="the ledger database: empty = SQLite in the workspace; postgresql://user@host/db for a team "
        "(password from PGPASSWORD or ~/.pgpass), or $VAR naming an environment variable that holds the URL",
    )
    target_size: int = Field(gt=0, strict=True, description="D: labeled frames wanted in all")
    chunks: list[float] = Field(default_factory=lambda: [0.1, 0.4, 0.5], min_length=1)
    keypoints: KeypointSchema
    strata: dict[str, list[str] | DerivedStratum] = Field(
        default_factory=lambda: {"posture": [], "occlusion": []},
        description="attribute → its values, or a derived attribute {derive: torso_angle | hidden_joints, values, "
        "thresholds}; after loading every entry is its list of values (the derivations: `derived_strata`)",
    )
    sources: list[Source] = Field(default_factory=list)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    label_studio: LabelStudioSection = Field(default_factory=LabelStudioSection)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)

    # set by load_manifest; not part of the YAML
    root: Path = Field(default=Path("."), exclude=True)
    _derived: dict[str, Derivation] = PrivateAttr(default_factory=dict)
    _notes: list[str] = PrivateAttr(default_factory=list)  # one line per deprecated name load_manifest met

    @field_validator("ledger")
    @classmethod
    def _ledger_url(cls, v: str | None) -> str | None:
        if v and not v.startswith("$"):
            from iterate.core.errors import IterateError
            from iterate.core.ledger import resolve_url

            try:
                resolve_url(".", v, where="ledger")
            except IterateError as e:
                raise ValueError(str(e).removeprefix("ledger: ")) from None
        return v or None

    @field_validator("strata", mode="before")
    @classmethod
    def _derived_form(cls, v):
        """A mapping value is a derived attribute: validated here, so an error names the stratum and its field."""
        if not isinstance(v, dict):
            return v
        out = {}
        for k, s in v.items():
            if isinstance(s, dict):
                try:
                    s = DerivedStratum.model_validate(s)
                except ValidationError as e:
                    err = e.errors()[0]
                    raise ValueError(
                        f"{k}{'.' + _loc(err['loc']) if err['loc'] else ''}: {err['msg'].removeprefix('Value error, ')}"
                    ) from None
            out[k] = s
        return out

    @field_validator("strata")
    @classmethod
    def _not_label_config_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        taken = sorted(set(v) & set(LABEL_CONFIG_NAMES))
        if taken:
            raise ValueError(
                f"'{taken[0]}' is a name the Label Studio labeling config already uses for its own controls "
                f"({', '.join(LABEL_CONFIG_NAMES)}): give the stratum another name"
            )
        return v

    @field_validator("chunks")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not all(math.isfinite(f) for f in v):
            raise ValueError("every chunk fraction must be a finite number")
        if any(f <= 0 for f in v):
            raise ValueError("every chunk fraction must be > 0")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1 (they sum to {sum(v):g})")
        return v

    @model_validator(mode="after")
    def _derivations_apart(self) -> Manifest:
        """Every stratum reads as its list of values; the derived ones' rules are kept apart (`derived_strata`)."""
        for k, s in list(self.strata.items()):
            if isinstance(s, DerivedStratum):
                self._derived[k] = s.derivation()
                self.strata[k] = list(s.values or ())
        return self

    @property
    def derived_strata(self) -> dict[str, Derivation]:
        """The strata the manifest derives from the keypoints (``{derive: …}``): key → its rule, values, bins."""
        return dict(self._derived)

    @model_validator(mode="after")
    def _unique_sources(self) -> Manifest:
        labels = [s.label for s in self.sources]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"sources: names repeat ({', '.join(dup)}); give each a distinct `name`")
        rp = self.train.replay
        if rp is not None and rp.source not in labels:
            raise ValueError(
                f"train.replay.source: no source named '{rp.source}' (sources: {', '.join(labels) or 'none'})"
            )
        return self

    # -- paths ------------------------------------------------------------------------------------
    def resolve(self, p: str | Path) -> Path:
        p = Path(p).expanduser()
        return (p if p.is_absolute() else self.root / p).resolve()

    @property
    def notes(self) -> list[str]:
        """Lines for the user about the manifest as written (older metric names), one each."""
        return list(self._notes)

    @property
    def workspace_dir(self) -> Path:
        return self.resolve(self.workspace)

    def chunk_targets(self) -> list[int]:
        """Frames per chunk; rounding error goes to the last chunk so the targets sum to D."""
        t = [int(round(f * self.target_size)) for f in self.chunks]
        t[-1] = self.target_size - sum(t[:-1])
        return t


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "tagged-union") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key that repeats in one mapping is an error, not "the last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}  # key → its line
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden key by key, as YAML means it
            key = self.construct_object(key_node)
            if key in seen:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1, seen[key])
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_manifest(path: str | Path = DEFAULT_MANIFEST, *, check_sources: bool = True) -> Manifest:
    """Read and validate a manifest. Raises :class:`ManifestError` with one line naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `iterate init` to write one)")
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start}); save the manifest as UTF-8") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    except _DuplicateKey as e:
        raise ManifestError(
            f"{path}: line {e.line}: key {e.key!r} repeats (first on line {e.first}); YAML would keep only the last: "
            "remove or merge one"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ManifestError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping of fields at the top level")
    try:
        m = Manifest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise ManifestError(f"{path}: {_loc(err['loc'])}: {msg}{more}") from None
    m.root = path.resolve().parent
    m._notes = deprecated_names(data, path)
    if check_sources:
        for i, s in enumerate(m.sources):
            p = m.resolve(s.path)
            ok = p.is_dir() if s.kind == "images" else p.is_file()
            if not ok:
                what = "folder" if s.kind == "images" else "file"
                raise ManifestError(f"{path}: sources[{i}].path: {what} not found: {p}")
            if s.kind in ("coco", "labelstudio") and s.images and not m.resolve(s.images).is_dir():
                raise ManifestError(f"{path}: sources[{i}].images: folder not found: {m.resolve(s.images)}")
            if s.person_boxes and not m.resolve(s.person_boxes).is_file():
                raise ManifestError(f"{path}: sources[{i}].person_boxes: file not found: {m.resolve(s.person_boxes)}")
    for k, vals in m.strata.items():
        if len(set(vals)) != len(vals):
            raise ManifestError(f"{path}: strata.{k}: values repeat")
    check_workspace(m, path)
    return m


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_workspace(m: Manifest, path: str | Path = "manifest") -> None:
    """Refuse a workspace that would put the user's own files at risk.

    The workspace is iterate's scratch and state folder; it must not be ``/``, the home folder, a folder that
    holds the manifest or any source, or a file.
    """
    ws = m.workspace_dir
    where = f"{path}: workspace: {ws}"
    if ws.exists() and not ws.is_dir():
        raise ManifestError(f"{where} is a file, not a folder")
    if ws == Path(ws.anchor) or ws == Path.home().resolve():
        raise ManifestError(
            f"{where} is the {'root' if ws == Path(ws.anchor) else 'home'} folder; "
            "give the workspace a folder of its own (default .iterate)"
        )
    if _inside(Path(path).resolve(), ws):
        raise ManifestError(
            f"{where} holds the manifest itself; give the workspace a folder of its own (default .iterate)"
        )
    for i, s in enumerate(m.sources):
        for field, p in (("path", s.path), ("images", s.images)):
            if p and _inside(m.resolve(p), ws):
                raise ManifestError(
                    f"{where} holds sources[{i}].{field} ({m.resolve(p)}); keep the workspace apart from your data"
                )
