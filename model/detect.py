"""A person detector before the pose crop: a torchvision detection model from a weights file the user gives
(nothing is downloaded). Each image's most confident person box becomes the first pass's crop; images where
several people pass the score threshold are counted (one person per frame is the product's scope)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from iterate.core.errors import IterateError
from iterate.core.images import read_image
from model.geometry import detection_square

__all__ = ["ARCHS", "PersonDetector", "write_detections"]

# architecture → the state-dict key whose first dimension is the number of classes
ARCHS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": "roi_heads.box_predictor.cls_score.weight",
    "fasterrcnn_mobilenet_v3_large_fpn": "roi_heads.box_predictor.cls_score.weight",
    "fasterrcnn_resnet50_fpn": "roi_heads.box_predictor.cls_score.weight",
    "fasterrcnn_resnet50_fpn_v2": "roi_heads.box_predictor.cls_score.weight",
    "keypointrcnn_resnet50_fpn": "roi_heads.box_predictor.cls_score.weight",
    "retinanet_resnet50_fpn": None,  # classes in the head's conv: give them as num_classes (default 91, COCO)
    "fcos_resnet50_fpn": None,
}


class PersonDetector:
    def __init__(
        self,
        arch: str,
        weights: str | Path,
        *,
        person_label: int = 1,
        score: float = 0.5,
        num_classes: int | None = None,
        device: str | None = None,
    ):
        import torchvision.models.detection as det

        if arch not in ARCHS:
            raise IterateError(f"detector {arch!r}: not one of {', '.join(ARCHS)}")
        weights = Path(weights)
        if not weights.is_file():
            raise IterateError(f"detector weights {weights}: file not found (give a path; nothing is downloaded)")
        try:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickle that is not plain tensors, a truncated file
            raise IterateError(f"detector weights {weights}: not a readable state dict ({type(e).__name__})") from None
        sd = sd.get("model", sd) if isinstance(sd, dict) else sd
        if not isinstance(sd, dict):
            raise IterateError(f"detector weights {weights}: not a state dict")
        key = ARCHS[arch]
        classes = num_classes or (sd[key].shape[0] if key and key in sd else 91)
        kw = {"weights": None, "weights_backbone": None, "num_classes": classes}
        if arch == "keypointrcnn_resnet50_fpn":
            kp = sd.get("roi_heads.keypoint_predictor.kps_score_lowres.weight")
            kw["num_keypoints"] = kp.shape[1] if kp is not None else 17
        net = getattr(det, arch)(**kw)
        try:
            net.load_state_dict(sd)
        except RuntimeError as e:
            first = str(e).splitlines()[0][:200]
            raise IterateError(f"detector weights {weights} do not fit {arch} ({first})") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.eval().to(self.device)
        self.person_label, self.score = person_label, score

    @torch.inference_mode()
    def detections(self, paths: list[str]) -> list[list[tuple[float, tuple[float, float, float, float]]] | None]:
        """Each image's person detections scoring at least the threshold, most confident first: (score, (x, y, w,
        h)) in image pixels; None for an image that cannot be read."""
        out: list = []
        for p in paths:
            img, _ = read_image(p)
            if img is None:
                out.append(None)
                continue
            x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).permute(2, 0, 1).float().div(255)
            r = self.net([x.to(self.device)])[0]
            keep = (r["labels"] == self.person_label) & (r["scores"] >= self.score)
            boxes, scores = r["boxes"][keep].cpu().numpy(), r["scores"][keep].cpu().numpy()
            found = []
            for i in np.argsort(-scores, kind="stable"):
                x0, y0, x1, y1 = (float(v) for v in boxes[i])
                if x1 - x0 >= 2 and y1 - y0 >= 2:
                    found.append((float(scores[i]), (x0, y0, x1 - x0, y1 - y0)))
            out.append(found)
        return out

    def person_boxes(self, paths: list[str]) -> tuple[dict[int, tuple[tuple[float, float], float]], int]:
        """→ (image index → the most confident person box as a square (centre, side), images with several people)."""
        out, several = {}, 0
        for i, found in enumerate(self.detections(paths)):
            if found:
                several += len(found) > 1
                out[i] = detection_square(found[0][1])
        return out, several


def write_detections(
    detector: PersonDetector, files: list[Path], root: Path | None, out: Path
) -> tuple[int, int, int, list[str]]:
    """COCO detection results of ``files`` (``file_name`` relative to ``root`` when given, else as given): the file a
    source's ``person_boxes`` reads → (images with a person, detections, images with several people, unreadable)."""
    import json

    rows, found_in, several, bad = [], 0, 0, []
    for f, found in zip(files, detector.detections([str(f) for f in files])):
        if found is None:
            bad.append(str(f))
            continue
        name = str(f.relative_to(root)) if root is not None else str(f)
        found_in += bool(found)
        several += len(found) > 1
        for score, box in found:
            rows.append(
                {"file_name": name, "category_id": 1, "bbox": [round(v, 2) for v in box], "score": round(score, 4)}
            )
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(out)
    return found_in, len(rows), several, bad
