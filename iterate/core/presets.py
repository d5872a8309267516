"""Keypoint schema presets for `iterate init --preset`: joint names in the datasets' channel order, left/right
pairs, skeleton edges, the joints that decide height, the chains whose segments sum to the height, and the
PCKh normaliser each dataset is scored with."""

from __future__ import annotations

from iterate.core.schema import guess_flip_pairs

COCO_JOINTS = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
MPII_JOINTS = [
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
]
LSP_JOINTS = [
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "neck",
    "head_top",
]


def _legs(top: list[str]) -> list[list[str]]:
    return [top + [f"{s}_hip", f"{s}_knee", f"{s}_ankle"] for s in ("right", "left")]


PRESETS: dict[str, dict] = {
    "coco17": {
        "names": COCO_JOINTS,
        "skeleton": [
            ["left_ankle", "left_knee"],
            ["left_knee", "left_hip"],
            ["right_ankle", "right_knee"],
            ["right_knee", "right_hip"],
            ["left_hip", "right_hip"],
            ["left_shoulder", "left_hip"],
            ["right_shoulder", "right_hip"],
            ["left_shoulder", "right_shoulder"],
            ["left_shoulder", "left_elbow"],
            ["right_shoulder", "right_elbow"],
            ["left_elbow", "left_wrist"],
            ["right_elbow", "right_wrist"],
            ["left_eye", "right_eye"],
            ["nose", "left_eye"],
            ["nose", "right_eye"],
            ["left_eye", "left_ear"],
            ["right_eye", "right_ear"],
            ["left_ear", "left_shoulder"],
            ["right_ear", "right_shoulder"],
        ],
        "height_joints": [
            "nose",
            "left_shoulder",
            "right_shoulder",
            "left_hip",
            "right_hip",
            "left_knee",
            "right_knee",
            "left_ankle",
            "right_ankle",
        ],
        "height_chain": [
            ["nose", "right_shoulder", "right_hip", "right_knee", "right_ankle"],
            ["nose", "left_shoulder", "left_hip", "left_knee", "left_ankle"],
        ],
        "normalizer": {"kind": "person_box", "joints": [], "factor": 0.1},  # COCO has no head box: a tenth of the box
    },
    "mpii16": {
        "names": MPII_JOINTS,
        "skeleton": [
            ["right_ankle", "right_knee"],
            ["right_knee", "right_hip"],
            ["right_hip", "pelvis"],
            ["left_hip", "pelvis"],
            ["left_knee", "left_hip"],
            ["left_ankle", "left_knee"],
            ["pelvis", "thorax"],
            ["thorax", "upper_neck"],
            ["upper_neck", "head_top"],
            ["right_wrist", "right_elbow"],
            ["right_elbow", "right_shoulder"],
            ["right_shoulder", "thorax"],
            ["left_shoulder", "thorax"],
            ["left_elbow", "left_shoulder"],
            ["left_wrist", "left_elbow"],
        ],
        "height_joints": [
            "head_top",
            "upper_neck",
            "thorax",
            "pelvis",
            "right_hip",
            "left_hip",
            "right_knee",
            "left_knee",
            "right_ankle",
            "left_ankle",
        ],
        "height_chain": _legs(["head_top", "upper_neck", "thorax"]),
        "normalizer": {"kind": "head_box", "joints": [], "factor": 1.0},  # MPII: 0.6 × the head box diagonal
    },
    "lsp14": {
        "names": LSP_JOINTS,
        "skeleton": [
            ["right_ankle", "right_knee"],
            ["right_knee", "right_hip"],
            ["left_hip", "left_knee"],
            ["left_knee", "left_ankle"],
            ["right_wrist", "right_elbow"],
            ["right_elbow", "right_shoulder"],
            ["left_shoulder", "left_elbow"],
            ["left_elbow", "left_wrist"],
            ["neck", "head_top"],
            ["right_shoulder", "neck"],
            ["left_shoulder", "neck"],
            ["right_hip", "right_shoulder"],
            ["left_hip", "left_shoulder"],
            ["right_hip", "left_hip"],
        ],
        "height_joints": [
            "head_top",
            "neck",
            "right_hip",
            "left_hip",
            "right_knee",
            "left_knee",
            "right_ankle",
            "left_ankle",
        ],
        "height_chain": _legs(["head_top", "neck"]),
        "normalizer": {"kind": "head_segment", "joints": ["neck", "head_top"], "factor": 1.0},
    },
}
for _p in PRESETS.values():
    _p["flip_pairs"] = guess_flip_pairs(_p["names"])
