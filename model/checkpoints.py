"""Checkpoints: the project's own format, the official HRNet pose ``.pth`` and MMPose 1.x files.

Every load is ``torch.load(..., weights_only=True)``. A load reports missing / unexpected / mis-shaped keys
and refuses a partial load unless ``allow_partial``. Head channels are matched by joint name; a joint the
checkpoint lacks is initialised from the manifest's ``init_from`` joint (the seed's "nearest joint").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from iterate.core.errors import IterateError
from iterate.core.joints import init_sources, match_joints
from iterate.core.presets import COCO_JOINTS, MPII_JOINTS
from model.hrnet import PoseHRNet, build_model

FORMAT = "iterate-pose-v1"

# outputs the official pose model never computes (timm's trunk has them): missing on purpose
_NEVER_IN_POSE_CKPT = re.compile(r"^stage4\.2\.fuse_layers\.[123]\.")


@dataclass
class LoadReport:
    layout: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    joints_copied: list[str] = field(default_factory=list)
    joints_from_nearest: dict[str, str] = field(default_factory=dict)
    joints_new: list[str] = field(default_factory=list)
    box_head: str = ""  # "loaded" | "new" where the model has a box head

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.joints_new)

    def describe(self, limit: int = 5) -> str:
        parts = []
        for name, items in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.mismatched),
            ("joints with no source", self.joints_new),
        ):
            if items:
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{name}: {', '.join(items[:limit])}{more}")
        text = "; ".join(parts) or "all keys matched"
        return text + (f"; box head {self.box_head}" if self.box_head else "")


def load_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise IterateError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = (str(e).splitlines() or ["the file is empty or truncated"])[0][:200]
        raise IterateError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(obj, dict):
        raise IterateError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def split_layout(obj: dict, path: Path | str = "") -> tuple[str, dict, dict, list[str] | None]:
    """→ (layout, trunk state dict, head {weight, bias}, head joint names or None)."""
    if obj.get("format") == FORMAT:
        sd = obj["model"]
        trunk = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        head = {k[len("final_layer.") :]: v for k, v in sd.items() if k.startswith("final_layer.")}
        return "iterate", trunk, head, list(obj["joints"])
    if isinstance(obj.get("state_dict"), dict):  # MMPose 1.x
        sd = obj["state_dict"]
        trunk = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        head = {k[len("head.final_layer.") :]: v for k, v in sd.items() if k.startswith("head.final_layer.")}
        if trunk:
            return "mmpose", trunk, head, _known_joints(head)
    if all(isinstance(v, torch.Tensor) for v in obj.values()) and "conv1.weight" in obj:  # official HRNet pose
        trunk = {k: v for k, v in obj.items() if not k.startswith("final_layer.")}
        head = {k[len("final_layer.") :]: v for k, v in obj.items() if k.startswith("final_layer.")}
        return "official", trunk, head, _known_joints(head)
    keys = ", ".join(list(obj)[:6])
    raise IterateError(
        f"{path}: unknown checkpoint layout (top-level keys: {keys}); expected an iterate checkpoint, an official "
        "HRNet pose state dict or an MMPose 1.x file"
    )


def _known_joints(head: dict) -> list[str] | None:
    w = head.get("weight")
    if w is None:
        return None
    names = {16: MPII_JOINTS, 17: COCO_JOINTS}.get(w.shape[0])
    return list(names) if names else None


def load_into(
    model: PoseHRNet,
    obj: dict,
    joints: list[str],
    init_from: dict[str, str] | None = None,
    allow_partial: bool = False,
    path: str | Path = "",
) -> LoadReport:
    """Load a checkpoint dict into ``model`` whose head predicts ``joints``; raise IterateError on a partial load."""
    layout, trunk, head, ck_joints = split_layout(obj, path)
    rep = LoadReport(layout)
    own = model.backbone.state_dict()
    load = {}
    for k, v in trunk.items():
        if k not in own:
            rep.unexpected.append(k)
        elif own[k].shape != v.shape:
            rep.mismatched.append(f"{k} {tuple(v.shape)}≠{tuple(own[k].shape)}")
        else:
            load[k] = v
    rep.missing = [k for k in own if k not in trunk and not (layout != "iterate" and _NEVER_IN_POSE_CKPT.match(k))]
    head_w, head_b = model.final_layer.weight.detach().clone(), model.final_layer.bias.detach().clone()
    if "weight" in head and head["weight"].shape[1:] != head_w.shape[1:]:
        rep.mismatched.append(f"final_layer.weight {tuple(head['weight'].shape)}≠{tuple(head_w.shape)}")
    elif "weight" in head:
        _init_head(head, head_w, head_b, ck_joints, joints, init_from, rep, path)
    else:
        rep.missing += ["final_layer.weight", "final_layer.bias"]
    if not rep.complete and not allow_partial:
        raise IterateError(
            f"{path}: {rep.layout} checkpoint does not fit the model ({rep.describe()}); "
            "pass --allow-partial to load what matches"
        )
    model.backbone.load_state_dict(load, strict=False)
    with torch.no_grad():
        model.final_layer.weight.copy_(head_w)
        model.final_layer.bias.copy_(head_b)
    if model.box_head is not None:  # optional on both sides: loaded where the checkpoint has a fitting one
        box = {k[len("box_head.") :]: v for k, v in obj.get("model", {}).items() if k.startswith("box_head.")}
        own_box = model.box_head.state_dict()
        fits = layout == "iterate" and box.keys() == own_box.keys()
        fits = fits and all(box[k].shape == own_box[k].shape for k in box)
        if fits:
            model.box_head.load_state_dict(box)
        rep.box_head = "loaded" if fits else "new"
    return rep


def _init_head(head: dict, head_w, head_b, ck_joints, joints: list[str], init_from, rep: LoadReport, path) -> None:
    """The head's channel of each manifest joint from the checkpoint's joint of the same name (or alias); a joint the
    checkpoint lacks from the mean of the joints ``init_from`` or the built-in approximations name
    (:func:`iterate.core.joints.init_sources`). A checkpoint that records no names (a foreign layout of another
    size) fits only a manifest of its own size, and then only channel by channel as its layout documents."""
    n_src = head["weight"].shape[0]
    if ck_joints is None:
        if n_src != len(joints):
            rep.joints_new += list(joints)
            return
        ck_joints = list(joints)  # same count and no names: the layout's documented order is the manifest's
    jm = match_joints(ck_joints, joints, required=False)
    approx = init_sources(ck_joints, joints, init_from)
    index = {n: i for i, n in enumerate(ck_joints)}
    for j, name in enumerate(joints):
        if jm.src[j] is not None:
            rows = [jm.src[j]]
            rep.joints_copied.append(name)
        elif name in approx:
            rows = [index[n] for n in approx[name]]
            rep.joints_from_nearest[name] = "+".join(approx[name])
        else:
            rep.joints_new.append(name)
            continue
        head_w[j] = head["weight"][rows].mean(0)
        head_b[j] = head["bias"][rows].mean(0) if "bias" in head else 0.0


def save_atomic(obj: dict, path: str | Path) -> None:
    """Write a checkpoint so that a crash leaves either the old file or the new one, never half of one; a full disk
    or a file-size limit is one line naming the file, and the half-written temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)
        why = (
            e.strerror
            if isinstance(e, OSError) and e.strerror
            else str(e).splitlines()[0]
            if str(e)
            else type(e).__name__
        )
        raise IterateError(f"{path}: the checkpoint could not be written ({why}): free disk space and re-run") from None


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the ``.<name>.tmp<pid>`` files :func:`save_atomic` left when its process was killed (``kill -9``):
    those whose pid no longer runs. → the files removed."""
    gone = []
    for f in Path(folder).glob(".*.tmp*"):
        pid = f.name.rsplit(".tmp", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # a live writer (another rank, another retrain): its file
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        f.unlink(missing_ok=True)
        gone.append(f)
    return gone


def joint_match(path: str | Path, joints: list[str]):
    """How an iterate checkpoint's joints meet ``joints`` (by name, :func:`iterate.core.joints.match_joints`);
    None when they are the same list."""
    obj = load_file(path)
    jm = match_joints(list(obj.get("joints") or []), list(joints), what=f"checkpoint {path}")
    return None if jm.identity else jm


def model_from_checkpoint(path: str | Path) -> tuple[PoseHRNet, dict]:
    """Rebuild an iterate model (architecture and weights) from one of its own checkpoints."""
    obj = load_file(path)
    if obj.get("format") != FORMAT:
        raise IterateError(f"{path}: not an iterate model checkpoint (use it as --from/base to fine-tune instead)")
    box = any(k.startswith("box_head.") for k in obj["model"])
    m = build_model(obj["backbone"], len(obj["joints"]), obj["input_size"], obj["heatmap_size"], box)
    m.load_state_dict(obj["model"])
    return m, obj
