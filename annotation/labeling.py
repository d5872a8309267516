"""The labeling interface and its JSON, both ways.

* :func:`label_config`: the project's XML from the manifest — the image, one KeyPointLabels label per joint,
  a per-region visibility choice (visible / occluded), and one single-choice block per stratum.
* :func:`to_result`: keypoints in pixels → result items exactly as the Label Studio UI writes them
  (percent coordinates of the original size; the visibility choice carries the keypoint's region id).
* :func:`parse_result`: a result list → keypoints [x, y, v] (v 2 visible, 1 occluded, 0 not placed) and
  attributes, validated (point outside the image, unknown joint, a joint placed twice).
"""

from __future__ import annotations

import random
import string
from xml.sax.saxutils import quoteattr

from annotation.settings import LabelingSetup

IMAGE, KP, VIS = "img", "kp", "visibility"
_COLORS = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#800000",
    "#aaffc3",
    "#808000",
    "#000075",
    "#808080",
]


def label_config(cfg: LabelingSetup) -> str:
    lines = [
        "<View>",
        f'  <Image name="{IMAGE}" value="$image" zoom="true"/>',
        f'  <KeyPointLabels name="{KP}" toName="{IMAGE}" smart="false">',
    ]
    for i, j in enumerate(cfg.keypoints.names):
        lines.append(f'    <Label value={quoteattr(j)} background="{_COLORS[i % len(_COLORS)]}"/>')
    lines.append("  </KeyPointLabels>")
    lines.append(
        f'  <Choices name="{VIS}" toName="{IMAGE}" perRegion="true">'
        '<Choice value="visible"/><Choice value="occluded"/></Choices>'
    )
    for key, values in cfg.strata.items():
        if not values:
            continue
        lines.append(f"  <Header value={quoteattr(key)}/>")
        choices = "".join(f"<Choice value={quoteattr(v)}/>" for v in values)
        lines.append(
            f'  <Choices name={quoteattr(key)} toName="{IMAGE}" choice="single" showInline="true">{choices}</Choices>'
        )
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def region_id(rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice(string.ascii_letters + string.digits + "_-") for _ in range(10))


def to_result(
    cfg: LabelingSetup,
    keypoints,
    width: int,
    height: int,
    attributes: dict | None = None,
    *,
    origin: str = "manual",
    rng: random.Random | None = None,
    scores=None,
) -> list[dict]:
    """Keypoints [[x, y, v], ...] in pixels → result items. v 0: not placed; v 1: placed and marked occluded."""
    out = []
    for j, (name, kp) in enumerate(zip(cfg.keypoints.names, keypoints)):
        x, y = float(kp[0]), float(kp[1])
        v = int(kp[2]) if len(kp) > 2 else 2
        if v <= 0:
            continue
        rid = region_id(rng)
        value = {"x": 100.0 * x / width, "y": 100.0 * y / height, "width": 0.25, "keypointlabels": [name]}
        item = {
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": value,
            "id": rid,
            "from_name": KP,
            "to_name": IMAGE,
            "type": "keypointlabels",
            "origin": origin,
        }
        if scores is not None:
            item["score"] = float(scores[j])
        out.append(item)
        if v == 1:
            out.append(
                {
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {"x": value["x"], "y": value["y"], "width": 0.25, "choices": ["occluded"]},
                    "id": rid,
                    "from_name": VIS,
                    "to_name": IMAGE,
                    "type": "choices",
                    "origin": origin,
                }
            )
    for key, val in (attributes or {}).items():
        if key in cfg.strata and val in cfg.strata[key]:
            out.append(
                {
                    "value": {"choices": [val]},
                    "id": region_id(rng),
                    "from_name": key,
                    "to_name": IMAGE,
                    "type": "choices",
                    "origin": origin,
                }
            )
    return out


class BadAnnotation(ValueError):
    pass


def parse_result(cfg: LabelingSetup, result: list[dict], width: int | None = None, height: int | None = None):
    """→ (keypoints [[x, y, v] × K], attributes). Raises BadAnnotation naming the problem.

    Percent → pixels uses the item's ``original_width/height``: pixel = percent × size / 100 (measured:
    a click on the cross at pixel 213 of a 400-px image is stored as 53.2468 % → 212.987).
    """
    names = cfg.keypoints.names
    kps: list[list[float]] = [[0.0, 0.0, 0] for _ in names]
    placed: dict[str, str] = {}
    occluded: set[str] = set()
    visible: set[str] = set()
    attrs: dict = {}
    for item in result or []:
        typ, frm, val = item.get("type"), item.get("from_name"), item.get("value") or {}
        if typ == "keypointlabels":
            labels = val.get("keypointlabels") or []
            if len(labels) != 1:
                raise BadAnnotation(f"region {item.get('id')}: {len(labels)} labels on one point")
            j = labels[0]
            if j not in names:
                raise BadAnnotation(f"unknown joint '{j}'")
            if j in placed:
                raise BadAnnotation(f"joint '{j}' placed twice")
            w = item.get("original_width") or width
            h = item.get("original_height") or height
            if not w or not h:
                raise BadAnnotation(f"joint '{j}': no original_width/height to convert percent to pixels")
            x, y = float(val.get("x", -1)), float(val.get("y", -1))
            if not (0 <= x <= 100 and 0 <= y <= 100):
                raise BadAnnotation(f"joint '{j}' is outside the image (x={x:.1f} %, y={y:.1f} %)")
            kps[names.index(j)] = [x / 100.0 * w, y / 100.0 * h, 2]
            placed[j] = item.get("id")
        elif typ == "choices" and frm == VIS:
            ch = val.get("choices") or []
            (occluded if "occluded" in ch else visible).add(item.get("id"))
        elif typ == "choices" and frm in cfg.strata:
            ch = val.get("choices") or []
            if ch:
                attrs[frm] = ch[0]
    for j, rid in placed.items():
        if rid in occluded:
            kps[names.index(j)][2] = 1
    return kps, attrs
