"""The one COCO-keypoints reader, and the validation of everything it reads.

A file is refused with one line naming the file, the annotation or image id, and what is wrong: not JSON
(or holding NaN / Infinity), no ``images``/``annotations`` lists of objects, image ids missing, repeated or of
mixed types, an annotation whose image is not in the file, joint names that differ from the schema's, a joint
that is not three finite numbers, a visibility outside {0, 1, 2}, a labeled coordinate far outside its image,
a bbox or head box that is not four finite numbers, attributes that are not a mapping.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.schema import KeypointSpec

_BOUND = 1e6  # px: any coordinate beyond this is refused even when the image size is unknown


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def read_json(path: Path, what: str):
    """JSON with NaN / Infinity refused; IterateError naming the file otherwise."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IterateError(f"{path}: cannot read the {what} ({type(e).__name__}: {e})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise IterateError(f"{path}: the {what} is not valid JSON ({e})") from None


def _id_ok(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def read_coco(spec: KeypointSpec, path: Path, *, joints: bool = True) -> tuple[dict, list[int] | None]:
    """Read and check a COCO keypoints file → (the file, joint order into the schema or None). ``joints=False``:
    only its images are wanted (an unlabeled pool listed by a COCO file), so its joint names are not checked."""
    path = Path(path)
    coco = read_json(path, "COCO file")
    if not isinstance(coco, dict):
        raise IterateError(
            f"{path}: expected a COCO object with 'images' and 'annotations', found a {type(coco).__name__}"
        )
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise IterateError(f"{path}: missing the '{key}' list of a COCO keypoints file")
        bad = next((i for i, x in enumerate(coco[key]) if not isinstance(x, dict)), None)
        if bad is not None:
            raise IterateError(f"{path}: {key}[{bad}] is not an object ({type(coco[key][bad]).__name__})")
    seen, types = _check_images(coco["images"], path)
    _check_annotations(coco["annotations"], path, seen, types)
    return coco, _order(spec, coco, path) if joints else None


def _mixed(types: set, path: Path) -> None:
    if len(types) > 1:
        raise IterateError(
            f'{path}: image ids mix {" and ".join(sorted(t.__name__ for t in types))} (e.g. 7 and "7"): use one type'
        )


def _check_images(images: list[dict], path: Path) -> tuple[dict, set]:
    """Each image has a usable id, none repeats, all of one type, a string file name → (id → its position, the
    ids' type)."""
    seen: dict = {}
    types = set()
    for i, im in enumerate(images):
        iid = im.get("id")
        if not _id_ok(iid):
            raise IterateError(f"{path}: images[{i}] has no usable id ({iid!r})")
        if iid in seen:
            raise IterateError(
                f"{path}: image id {iid} repeats (images[{seen[iid]}] and images[{i}]): "
                "labels could land on the wrong frame"
            )
        seen[iid] = i
        types.add(type(iid))
        if not isinstance(im.get("file_name", ""), str):
            raise IterateError(f"{path}: image {iid}: file_name must be a string")
    _mixed(types, path)
    return seen, types


def _check_annotations(annotations: list[dict], path: Path, seen: dict, types: set) -> None:
    """Each annotation's id is usable and unique, its image_id names one of the images (of their id type), its
    attributes are a mapping and its box a box."""
    ann_ids: set = set()
    for i, a in enumerate(annotations):
        aid = a.get("id", f"#{i}")
        if "id" in a:
            if not _id_ok(a["id"]):
                raise IterateError(f"{path}: annotations[{i}] has an unusable id ({a['id']!r})")
            if a["id"] in ann_ids:
                raise IterateError(f"{path}: annotation id {a['id']} repeats")
            ann_ids.add(a["id"])
        iid = a.get("image_id")
        if not _id_ok(iid):
            raise IterateError(f"{path}: annotation {aid}: image_id {iid!r} is not an id")
        _mixed(types | {type(iid)}, path)
        if iid not in seen:
            raise IterateError(f"{path}: annotation {aid}: image {iid!r} is not in the file's images")
        if "attributes" in a and a["attributes"] is not None and not isinstance(a["attributes"], dict):
            raise IterateError(
                f"{path}: annotation {aid}: attributes must be a mapping of name: value, "
                f"found a {type(a['attributes']).__name__}"
            )
        if a.get("bbox") not in (None, []):
            _box(a["bbox"], path, aid, "bbox", positive=False)


def _order(spec: KeypointSpec, coco: dict, path: Path) -> list[int] | None:
    """Index into the file's joint order for each schema joint (None: the file names no joints, same order)."""
    cats = coco.get("categories") or []
    if not isinstance(cats, list) or (cats and not isinstance(cats[0], dict)):
        raise IterateError(f"{path}: 'categories' must be a list of objects")
    names = (cats[0].get("keypoints") if cats else None) or []
    if not names:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise IterateError(f"{path}: categories[0].keypoints must be a list of joint names")
    want = list(spec.names)
    if set(names) != set(want) or len(names) != len(want):
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        raise IterateError(
            f"{path}: joint names differ from the manifest's keypoints.names (matched by name, never "
            f"by position): the file lacks {', '.join(missing) or 'none'}; it has "
            f"{', '.join(extra) or 'none'} that the manifest does not"
        )
    return [names.index(n) for n in want]


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _box(v, path: Path, aid, field: str, positive: bool = True) -> list[float]:
    nums = [_number(x) for x in v] if isinstance(v, list) else []
    if (
        len(nums) != 4
        or any(x is None or not math.isfinite(x) for x in nums)
        or (positive and (nums[2] <= 0 or nums[3] <= 0))
        or nums[2] < 0
        or nums[3] < 0
    ):
        raise IterateError(
            f"{path}: annotation {aid}: {field} must be [x, y, w, h] of finite numbers"
            f"{' with w, h > 0' if positive else ''}, found {v!r}"
        )
    return nums


def ann_key(a: dict) -> tuple:
    """Sort key of annotations by id (ints before strings; a file's ids are checked to be usable)."""
    i = a.get("id", 0)
    return (isinstance(i, str), i if isinstance(i, (int, str)) else 0)


def image_size(coco: dict, image_id) -> tuple[float, float] | None:
    """(width, height) the file gives for an image, when it gives both."""
    im = next((i for i in coco["images"] if i.get("id") == image_id), None)
    return declared_size(im) if im else None


def declared_size(im: dict) -> tuple[float, float] | None:
    """(width, height) one ``images`` entry gives, when it gives both as positive numbers."""
    w, h = _number(im.get("width")), _number(im.get("height"))
    return (w, h) if w and h and w > 0 and h > 0 else None


def size_mismatch(declared: tuple[float, float] | None, width: int, height: int) -> str | None:
    """Why a COCO image's declared size does not fit the decoded picture (decoded as every frame is, EXIF
    orientation applied), or None: labels in another orientation or scale would land in the wrong place."""
    if declared is None or (declared[0], declared[1]) == (width, height):
        return None
    dw, dh = declared
    turned = " (EXIF-rotated?)" if (dw, dh) == (height, width) else ""
    return f"the COCO file declares {dw:g}×{dh:g}, the image decodes to {width}×{height}{turned}"


def coco_keypoints(
    spec: KeypointSpec, ann: dict, order: list[int] | None, path: Path, size: tuple[float, float] | None = None
) -> list[list[float]]:
    """One COCO annotation's keypoints as [[x, y, v], ...] in schema order; IterateError if it does not fit.

    ``size`` (width, height): labeled coordinates must lie within half an image of the image."""
    aid = ann.get("id")
    kps = ann.get("keypoints")
    k = spec.num_joints
    if not isinstance(kps, list) or len(kps) % 3:
        raise IterateError(f"{path}: annotation id {aid}: 'keypoints' is not a list of x, y, v triplets")
    if len(kps) // 3 != k:
        raise IterateError(f"{path}: annotation id {aid}: {len(kps) // 3} keypoints, the manifest's schema has {k}")
    names = spec.names
    trip = []
    for i in range(k):
        x, y, v = (_number(kps[3 * i + j]) for j in range(3))
        joint = names[order.index(i)] if order is not None else names[i]
        if x is None or y is None or v is None:
            raise IterateError(
                f"{path}: annotation id {aid}: joint {joint}: x, y, v must be numbers, found {kps[3 * i : 3 * i + 3]!r}"
            )
        if not (math.isfinite(x) and math.isfinite(y)):
            raise IterateError(
                f"{path}: annotation id {aid}: joint {joint}: coordinates must be finite, found ({x}, {y})"
            )
        if v not in (0.0, 1.0, 2.0):
            raise IterateError(
                f"{path}: annotation id {aid}: joint {joint} has visibility {kps[3 * i + 2]!r} "
                "(0 not labeled, 1 occluded, 2 visible)"
            )
        if v > 0:
            lo_x, hi_x, lo_y, hi_y = -_BOUND, _BOUND, -_BOUND, _BOUND
            if size:
                lo_x, hi_x, lo_y, hi_y = -0.5 * size[0], 1.5 * size[0], -0.5 * size[1], 1.5 * size[1]
            if not (lo_x <= x <= hi_x and lo_y <= y <= hi_y):
                where = f"the {size[0]:g}×{size[1]:g} image" if size else "any image"
                raise IterateError(
                    f"{path}: annotation id {aid}: joint {joint} at ({x:g}, {y:g}) lies far outside {where}"
                )
        trip.append([x, y, int(v)])
    if order is not None:
        trip = [trip[j] for j in order]
    return [[x, y, v] if v > 0 else [0.0, 0.0, 0] for x, y, v in trip]


def coco_head_box(ann: dict, path: Path) -> list[float] | None:
    """The annotation's head box (``bbox_head``, PoseTrack/MPII style, or ``head_box``) as [x, y, w, h]."""
    hb = ann.get("bbox_head", ann.get("head_box"))
    if hb is None or hb == []:
        return None
    return _box(hb, path, ann.get("id"), "bbox_head")
