"""`iterate init`: write a commented manifest, optionally taking the keypoint schema from a COCO file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from iterate.core.errors import IterateError
from iterate.core.manifest import CostSettings, LabelStudioSection, Manifest, ModelSettings
from iterate.core.schema import guess_flip_pairs

# The values the template states that are the manifest's defaults come from its models (iterate/core/manifest.py),
# the one place they are written; the others (heatmap_size, sigma) are the CPU recipe's choice, not defaults.
_TEMPLATE = """\
# iterate data manifest: what the data is, how labels are planned, and how the model trains.
# Relative paths are relative to this file's folder. `iterate --help` lists the commands.
project: {project}
workspace: {workspace}            # ledger, frames cut from videos, models, reports
# ledger: $ITERATE_LEDGER_URL  # a team's PostgreSQL ledger (URL in that variable); default: SQLite in the workspace
target_size: {target_size}     # D: labeled frames wanted in all
chunks: {chunks}        # chunk plan: fractions of D, labeled in this order (must sum to 1)

keypoints:
  names: {names}
  flip_pairs: {flip_pairs}     # left/right joints swapped by a horizontal flip
  skeleton: {skeleton}
  weights: {{}}                  # loss weight per joint (default 1), e.g. {{head_top: 2.0}}
  height_joints: {height}      # MeanSmS: the joints that decide height
  height_chain: {chain}        # chains whose segment lengths sum to the height (height error)
  normalizer:                  # PCKh's l: head_box | head_segment (two joints) | person_box
    kind: {norm_kind}
    joints: {norm_joints}
    factor: {norm_factor}
  init_from: {{}}                # new joint → nearest known joint when loading a checkpoint

strata:                        # attributes every label carries; the report breaks figures down by them
  # derived from the keypoints where a label carries none (imported SLEAP / DeepLabCut / COCO labels); a plain
  # list, e.g. [upright, leaning, horizontal, inverted, unknown], is a choice the annotators make in Label Studio
  posture: {{derive: torso_angle, values: [upright, leaning, horizontal, inverted, unknown]}}   # ≤ 30°, 60°, 120°
  occlusion: {{derive: hidden_joints, values: [none, partial, heavy]}}   # joints hidden or unlabeled: 0, 1-3, ≥ 4

sources:                       # images | video (every: N or fps: F) | coco (labels that exist)
{sources}

model:
  backbone: {backbone}    # hrnet_w32 / hrnet_w48 on a GPU
  input_size: {input_size}
  heatmap_size: 64             # at 128² input the CPU recipe's 64² heatmaps, σ 3 (bench/results/recipe.md)
  sigma: 3.0
  base: null                   # checkpoint to fine-tune from (a file path; nothing is downloaded)

label_studio:
  url: {url}
  project_title: {project}
  token_env: {token_env}   # the NAME of the variable that holds the token, never the token
  # instructions: "…"           # what annotators read first: left out, generated from the joints and strata;
                                # a text replaces it, {{extend: "…"}} appends to it

cost:
  accept_tolerance: {accept_tolerance}       # a pre-annotated joint left within this × l counts accepted (docs/cost.md)
"""


def _quoted(text: str) -> str:
    """``text`` as a double-quoted YAML scalar on one line: read back as the same string, whatever it holds
    (``a: b``, ``yes``, ``#``, line breaks, control characters)."""
    return yaml.safe_dump(text, default_style='"', allow_unicode=True, width=float("inf")).strip()


def manifest_text(project: str, coco: Path | None = None, preset: str | None = None) -> str:
    """The commented manifest: the schema from ``preset`` (coco17 | mpii16 | lsp14), else from a COCO file's
    categories, else coco17."""
    from iterate.core.presets import PRESETS

    if preset is not None and preset not in PRESETS:
        raise IterateError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    sources = (
        "  - {kind: images, path: images/}\n"
        "  # people small in the frame? add person_boxes: people.json (a detector's COCO detection results,\n"
        "  # e.g. from `iterate detect images/ --detector W.pt --out people.json`; docs/own-data.md)"
    )
    schema = dict(PRESETS[preset or "coco17"])
    if coco is not None:
        sources = f"  - {{kind: coco, path: {_quoted(str(coco))}, split: train}}"
    if coco is not None and preset is None:
        schema = _schema_of(coco)
    flow = lambda x: yaml.safe_dump(x, default_flow_style=True, width=10_000).strip()  # noqa: E731
    nm = schema["normalizer"]
    man, mod, ls = Manifest.model_fields, ModelSettings(), LabelStudioSection()
    return _TEMPLATE.format(
        workspace=man["workspace"].default,
        chunks=flow(man["chunks"].get_default(call_default_factory=True)),
        backbone=mod.backbone,
        input_size=mod.input_size,
        url=ls.url,
        token_env=ls.token_env,
        accept_tolerance=CostSettings().accept_tolerance,
        project=_quoted(project),
        target_size=1000,
        names=flow(schema["names"]),
        flip_pairs=flow(schema["flip_pairs"]),
        skeleton=flow(schema["skeleton"]),
        height=flow(schema["height_joints"]),
        chain=flow(schema["height_chain"]),
        sources=sources,
        norm_kind=nm["kind"],
        norm_joints=flow(nm["joints"]),
        norm_factor=nm["factor"],
    )


def _schema_of(coco: Path) -> dict:
    """The joint schema of a COCO file's categories[0]: a known joint set's pairs, chains and normaliser in the
    file's order, else one guessed from the names (flip pairs by left/right names, its skeleton, a head segment when
    it has neck and head top)."""
    from iterate.core.presets import PRESETS

    try:
        d = json.loads(coco.read_text())
        cat = d["categories"][0]
        names = [str(n) for n in cat["keypoints"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise IterateError(f"{coco}: no categories[0].keypoints to take the schema from") from None
    known = next((p for p in PRESETS.values() if sorted(p["names"]) == sorted(names)), None)
    if known is not None:
        return dict(known, names=names)
    skel = [
        [names[a - 1], names[b - 1]] for a, b in cat.get("skeleton", []) if 0 < a <= len(names) and 0 < b <= len(names)
    ]
    head = [n for n in ("neck", "head_top") if n in names]
    return {
        "names": names,
        "flip_pairs": guess_flip_pairs(names),
        "skeleton": skel,
        "height_joints": names,
        "height_chain": [],
        "normalizer": {
            "kind": "head_segment" if len(head) == 2 else "person_box",
            "joints": head if len(head) == 2 else [],
            "factor": 1.0,
        },
    }


def write_manifest(
    path: Path, project: str, coco: Path | None = None, force: bool = False, preset: str | None = None
) -> Path:
    if path.exists() and not force:
        raise IterateError(f"{path}: already exists (use --force to overwrite)")
    path.write_text(manifest_text(project, coco, preset), encoding="utf-8")
    return path
