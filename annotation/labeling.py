"""The labeling interface and its JSON, both ways.

* :func:`label_config`: the project's XML from the manifest — the image, one KeyPointLabels label per joint
  (``model_index`` = its position in the manifest, which Label Studio's own COCO exporter orders keypoints by),
  a per-region visibility choice (visible / occluded), and one single-choice block per stratum.
* :func:`instructions`: the HTML Label Studio shows annotators before labeling (the project's
  ``expert_instruction``): the joints, left/right, occluded vs unlabeled, the strata; or the manifest's own text.
* :func:`to_result`: keypoints in pixels → result items exactly as the Label Studio UI writes them
  (percent coordinates of the original size; the visibility choice carries the keypoint's region id).
* :func:`parse_result`: a result list → keypoints [x, y, v] (v 2 visible, 1 occluded, 0 not placed) and
  attributes, validated (point outside the image, unknown joint, a joint placed twice).
"""

from __future__ import annotations

import html
import math
import random
import string
from xml.sax.saxutils import quoteattr

from annotation.settings import LabelingSetup

IMAGE, KP, VIS = "img", "kp", "visibility"
_MAX_PX = 1_000_000  # no frame is wider or taller
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
        lines.append(f'    <Label value={quoteattr(j)} model_index="{i}" background="{_COLORS[i % len(_COLORS)]}"/>')
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


def _side(name: str) -> str | None:
    """'left' / 'right' for a joint named for one side (left_x, right_x, l_x, r_x, leftX), else None."""
    low = name.lower()
    for side, prefixes in (("left", ("left", "l_")), ("right", ("right", "r_"))):
        if low.startswith(prefixes):
            return side
    return None


def _text(s: str) -> str:
    """Plain text from the manifest → HTML: escaped; a blank line starts a paragraph, a line break stays one."""
    paras = [p.strip() for p in s.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "\n".join("<p>" + "<br>".join(html.escape(ln, quote=False) for ln in p.split("\n")) + "</p>" for p in paras)


def generated_instructions(cfg: LabelingSetup) -> str:
    """The instructions built from the joints and strata alone (what :func:`instructions` extends or replaces)."""
    e = lambda s: html.escape(s, quote=False)  # noqa: E731 - every manifest string goes through it
    names = cfg.keypoints.names
    sided = {n: _side(n) for n in names}
    out = [f"<h3>Joints to place ({len(names)})</h3>", "<ul>"]
    for n in names:
        side = sided[n]
        note = f": the subject's own {side}" if side else ""
        out.append(f"<li><b>{e(n)}</b>{note}</li>")
    out.append("</ul>")
    if any(sided.values()):
        out.append(
            "<p><b>Left and right</b> are the subject's own sides, not the image's: for a person facing the camera "
            "their left joints lie on the image's right.</p>"
        )
    out += [
        "<h3>Visible, occluded or unlabeled</h3>",
        "<ul>",
        "<li><b>Visible</b>: you can see the joint. Place it (its visibility choice unset or <i>visible</i>).</li>",
        "<li><b>Occluded</b>: the joint is hidden (behind the body, another person, an object or clothing) but "
        "you can estimate where it is. Place it there, then select the point and choose <i>occluded</i>.</li>",
        "<li><b>Leave unlabeled</b>: the joint is outside the frame, or hidden so that its position cannot be "
        "estimated. Do not place it; an unplaced joint counts as not labeled, never as a guess.</li>",
        "</ul>",
    ]
    asked = [(k, v) for k, v in cfg.strata.items() if v]
    if asked:
        out += ["<h3>About the frame</h3>", "<p>Answer each question with one choice:</p>", "<ul>"]
        out += [f"<li><b>{e(k)}</b>: {', '.join(e(x) for x in v)}</li>" for k, v in asked]
        out.append("</ul>")
    return "\n".join(out) + "\n"


def instructions(cfg: LabelingSetup) -> str:
    """The project's ``expert_instruction`` (HTML): the generated text, the manifest's
    ``label_studio.instructions`` text instead, or the generated text followed by its ``{extend: ...}`` text.
    Everything from the manifest is escaped (it is shown as written, never as markup)."""
    ls = cfg.label_studio
    if ls.instructions is not None:
        return _text(ls.instructions) + "\n"
    base = generated_instructions(cfg)
    return base + _text(ls.instructions_extend) + "\n" if ls.instructions_extend else base


def region_id(rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice(string.ascii_letters + string.digits + "_-") for _ in range(10))


def _image_region(width: int, height: int, value: dict, rid: str, from_name: str, kind: str, origin: str) -> dict:
    return {
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": value,
        "id": rid,
        "from_name": from_name,
        "to_name": IMAGE,
        "type": kind,
        "origin": origin,
    }


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
        item = _image_region(width, height, value, rid, KP, "keypointlabels", origin)
        if scores is not None:
            item["score"] = float(scores[j])
        out.append(item)
        if v == 1:
            occluded = {"x": value["x"], "y": value["y"], "width": 0.25, "choices": ["occluded"]}
            out.append(_image_region(width, height, occluded, rid, VIS, "choices", origin))
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


def _show(v) -> str:
    """A value for a one-line message: its repr (escapes control characters), cut short."""
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _finite(v) -> bool:
    """A JSON number that is not NaN or infinite (a bool is not a number here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or math.isfinite(v)


def _number(v, what: str) -> float:
    if not _finite(v):
        raise BadAnnotation(f"{what} is {_show(v)}, not a number")
    return v


def _pct(v) -> str:
    return f"{v:.1f} %" if abs(v) < 1e9 else f"{_show(v)} %"


def _size(item: dict, key: str, frame_px: int | None, j: str) -> int:
    """``original_width``/``original_height`` of a region, checked against the frame's decoded size."""
    v = item.get(key)
    if v is None:
        if not frame_px:
            raise BadAnnotation(f"joint '{j}': no {key} to convert percent to pixels")
        return int(frame_px)
    if not _finite(v) or v != int(v) or not 0 < v <= _MAX_PX:
        raise BadAnnotation(f"joint '{j}': {key} is {_show(v)}, not a size in pixels")
    if frame_px and int(v) != int(frame_px):
        raise BadAnnotation(f"{key} {int(v)} ≠ the frame's {int(frame_px)} px")
    return int(v)


def _strings(v, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BadAnnotation(f"{what} is {_show(v)}, not a list of names")
    return v


def _region(i: int, item) -> tuple[str | int | None, dict]:
    """→ (region id, value) of result item ``i``, both checked for shape."""
    if not isinstance(item, dict):
        raise BadAnnotation(f"result item {i} is {_show(item)}, not an object")
    rid = item.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        raise BadAnnotation(f"result item {i}: region id {_show(rid)} is not a string")
    val = item.get("value")
    if val is None:
        val = {}
    if not isinstance(val, dict):
        raise BadAnnotation(f"region {rid}: value is {_show(val)}, not an object")
    return rid, val


def _point(cfg: LabelingSetup, item: dict, rid, val: dict, width, height) -> tuple[str, list[float]]:
    """A keypoint region → (joint, [x, y, 2]) in pixels."""
    labels = _strings(val.get("keypointlabels"), f"region {rid}: keypointlabels")
    if len(labels) != 1:
        raise BadAnnotation(f"region {rid}: {len(labels)} labels on one point")
    j = labels[0]
    if j not in cfg.keypoints.names:
        raise BadAnnotation(f"unknown joint {_show(j)}")
    w = _size(item, "original_width", width, j)
    h = _size(item, "original_height", height, j)
    x = _number(val.get("x"), f"joint '{j}': x")
    y = _number(val.get("y"), f"joint '{j}': y")
    if not (0 <= x <= 100 and 0 <= y <= 100):
        raise BadAnnotation(f"joint '{j}' is outside the image (x={_pct(x)}, y={_pct(y)})")
    return j, [x / 100.0 * w, y / 100.0 * h, 2]


def _stratum(cfg: LabelingSetup, key: str, val: dict) -> str | None:
    ch = _strings(val.get("choices"), f"{key}: choices")
    if not ch:
        return None
    if ch[0] not in cfg.strata[key]:
        raise BadAnnotation(f"{key} {_show(ch[0])} is not one of the manifest's values")
    return ch[0]


def parse_result(cfg: LabelingSetup, result, width: int | None = None, height: int | None = None):
    """→ (keypoints [[x, y, v] × K], attributes). Raises BadAnnotation naming the problem, for any malformed
    structure (never another exception).

    Percent → pixels uses the item's ``original_width/height``: pixel = percent × size / 100 (measured:
    a click on the cross at pixel 213 of a 400-px image is stored as 53.2468 % → 212.987). With the frame's
    decoded ``width``/``height`` given, a region claiming another size is refused.
    """
    if result is None:
        result = []
    if not isinstance(result, list):
        raise BadAnnotation(f"result is {_show(result)}, not a list of regions")
    names = cfg.keypoints.names
    kps: list[list[float]] = [[0.0, 0.0, 0] for _ in names]
    placed: dict[str, str | int | None] = {}
    occluded: set = set()
    attrs: dict = {}
    for i, item in enumerate(result):
        rid, val = _region(i, item)
        typ, frm = item.get("type"), item.get("from_name")
        if typ == "keypointlabels":
            j, kp = _point(cfg, item, rid, val, width, height)
            if j in placed:
                raise BadAnnotation(f"joint '{j}' placed twice")
            kps[names.index(j)] = kp
            placed[j] = rid
        elif typ == "choices" and frm == VIS:
            if "occluded" in _strings(val.get("choices"), f"region {rid}: visibility choices"):
                occluded.add(rid)
        elif typ == "choices" and isinstance(frm, str) and frm in cfg.strata:
            choice = _stratum(cfg, frm, val)
            if choice is not None:
                attrs[frm] = choice
    for j, rid in placed.items():
        if rid in occluded:
            kps[names.index(j)][2] = 1
    return kps, attrs
