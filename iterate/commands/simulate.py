"""`iterate simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import IterateError
from ..manifest import load_manifest
from ._options import DEFAULT, ManifestOpt, console


def _samples(m, path: Path, images: Optional[Path], limit: Optional[int] = None):
    import numpy as np

    from model.data import Sample

    from ..coco import ann_key, coco_keypoints, read_coco

    coco, order = read_coco(m, path)
    root = images or path.parent
    first: dict = {}
    for a in sorted(coco["annotations"], key=ann_key):
        first.setdefault(a["image_id"], a)
    out = []
    for im in coco["images"]:
        a = first.get(im["id"])
        if a is None:
            continue
        kp = np.asarray(coco_keypoints(m, a, order, path), dtype=np.float64)
        if (kp[:, 2] > 0).any():
            out.append(Sample(str(root / im["file_name"]), kp, str(im["id"]), dict(a.get("attributes") or {})))
    return out[:limit] if limit else out


def simulate(
    pool: Annotated[Path, typer.Option(help="COCO labels of the pool (hidden, revealed as selected)")],
    val: Annotated[Path, typer.Option(help="COCO labels of the val split (gap focus)")],
    test: Annotated[Path, typer.Option(help="COCO labels of the fixed test split")],
    manifest: ManifestOpt = DEFAULT,
    images: Annotated[Optional[Path], typer.Option(help="folder the COCO file names are relative to")] = None,
    budgets: Annotated[str, typer.Option(help="labels per round, comma-separated (default: the chunk plan of D)")] = "",
    strategies: Annotated[str, typer.Option(help="comma-separated")] = "random,uncertainty,diversity,full",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0",
    minutes: Annotated[float, typer.Option(help="fine-tuning wall time per round")] = 1.0,
    base: Annotated[Optional[Path], typer.Option(help="checkpoint each round fine-tunes from (default: model.base; `none`: from scratch)")] = None,
    out: Annotated[Path, typer.Option(help="folder for simulate.md / .json / .png")] = Path("simulate-out"),
) -> None:
    """Hide a labeled pool's labels and compare strategies over rounds × seeds; writes learning curves.

    Example: iterate simulate --pool pool.json --val val.json --test test.json --budgets 30,120,150 --seeds 0,1
    """
    from ..simulate import SimConfig, run

    m = load_manifest(manifest, check_sources=False)
    b = [int(x) for x in budgets.split(",") if x.strip()] if budgets else m.chunk_targets()
    strat = tuple(s.strip() for s in strategies.split(",") if s.strip())
    bad = [s for s in strat if s not in ("random", "uncertainty", "diversity", "full")]
    if bad:
        raise IterateError(f"--strategies: unknown {', '.join(bad)}")
    if base is not None and str(base) in (".", "none"):  # --base none: train from scratch
        base_ck = None
    else:
        base_ck = base or (m.resolve(m.model.base) if m.model.base else None)
    if base_ck is not None and not Path(base_ck).is_file():
        raise IterateError(f"base checkpoint not found: {base_ck}")
    P, V, T = _samples(m, pool, images), _samples(m, val, images), _samples(m, test, images)
    if sum(b) > len(P):
        raise IterateError(f"--budgets ask for {sum(b)} labels but the pool has {len(P)} labeled frames")
    cfg = SimConfig(b, strat, tuple(int(s) for s in seeds.split(",")), minutes, str(base_ck) if base_ck else None)
    summary = run(m, P, V, T, cfg, out, log=lambda s: console.print(s, highlight=False))
    console.print(f"wrote {out / 'simulate.md'} ({summary['wall_s']:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
