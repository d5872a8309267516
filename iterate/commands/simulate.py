"""`iterate simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from iterate.commands._options import DEFAULT, ManifestOpt, console, read_manifest
from iterate.core.errors import IterateError

StrategiesOpt = Annotated[
    str,
    typer.Option(
        help="comma-separated names from the strategy registry, or cold_start alone (the first-chunk arm, "
        "to merge with an earlier run's full)"
    ),
]
ColdOpt = Annotated[
    bool, typer.Option(help="with a base: also pick the first chunk by a cold start, to compare the two")
]
ReplayOpt = Annotated[
    bool, typer.Option(help="mix the manifest's train.replay source into every fine-tune, as retrain does")
]
BaseOpt = Annotated[
    Path | None,
    typer.Option(help="checkpoint each round fine-tunes from (default: model.base; `none`: from scratch)"),
]


def simulate(
    pool: Annotated[Path, typer.Option(help="COCO labels of the pool (hidden, revealed as selected)")],
    val: Annotated[Path, typer.Option(help="COCO labels of the val split (gap focus)")],
    test: Annotated[Path, typer.Option(help="COCO labels of the fixed test split")],
    manifest: ManifestOpt = DEFAULT,
    images: Annotated[Path | None, typer.Option(help="folder the COCO file names are relative to")] = None,
    budgets: Annotated[str, typer.Option(help="labels per round, comma-separated (default: the chunk plan of D)")] = "",
    strategies: StrategiesOpt = "random,full",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds (≥ 2 for intervals; 5 for a claim)")] = "0,1,2,3,4",
    steps: Annotated[int, typer.Option(help="fine-tuning steps per round (at train.batch_size)")] = 150,
    cold_first_chunk: ColdOpt = True,
    replay: ReplayOpt = True,
    base: BaseOpt = None,
    out: Annotated[Path, typer.Option(help="folder for simulate.md / .json / .png")] = Path("simulate-out"),
) -> None:
    """Hide a labeled pool's labels and compare strategies with random, paired over seeds: learning curves with
    intervals, labels to reach random's final figure, whether following the report's focus helped.

    Example: iterate simulate --pool pool.json --val val.json --test test.json --budgets 30,120,150 --seeds 0,1,2,3,4
    """
    from iterate.loop.simulate import COLD, SimConfig, coco_samples, run

    m = read_manifest(manifest, check_sources=False)
    seed_list = _seeds(seeds)
    if steps <= 0:
        raise IterateError("--steps must be a positive number of training steps")
    b = [int(x) for x in budgets.split(",") if x.strip()] if budgets else m.chunk_targets()
    strat = _strategies(strategies)
    base_ck = _base(m, base)
    if COLD in strat and base_ck is None:
        raise IterateError(f"--strategies: {COLD} compares a cold first chunk with the base's; give a base (--base)")
    P, V, T = coco_samples(m, pool, images), coco_samples(m, val, images), coco_samples(m, test, images)
    if sum(b) > len(P):
        raise IterateError(f"--budgets ask for {sum(b)} labels but the pool has {len(P)} labeled frames")
    cfg = SimConfig(b, strat, seed_list, steps, str(base_ck) if base_ck else None, cold_first_chunk, replay)
    summary = run(m, P, V, T, cfg, out, log=lambda s: console.print(s, highlight=False))
    console.print(f"wrote {out / 'simulate.md'} ({summary['wall_s']:.0f} s)")


def _seeds(seeds: str) -> tuple[int, ...]:
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise IterateError(f"--seeds: comma-separated integers expected, got {seeds!r}") from None
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise IterateError(f"--seeds: give distinct seeds, got {seeds!r}")
    return seed_list


def _base(m, base: Path | None):
    """The checkpoint each round fine-tunes from: --base, else model.base; None for ``--base none``."""
    if base is not None and str(base) in (".", "none"):  # --base none: train from scratch
        return None
    base_ck = base or (m.resolve(m.model.base) if m.model.base else None)
    if base_ck is not None and not Path(base_ck).is_file():
        raise IterateError(f"base checkpoint not found: {base_ck}")
    return base_ck


def _strategies(strategies: str) -> tuple[str, ...]:
    from iterate.loop.simulate import COLD
    from iterate.selection.strategies import STRATEGIES

    strat = tuple(s.strip() for s in strategies.split(",") if s.strip())
    known = (*STRATEGIES, COLD)  # cold_start alone: the first-chunk arm, to merge with an earlier run's full
    bad = [s for s in strat if s not in known]
    if bad:
        raise IterateError(f"--strategies: unknown {', '.join(bad)} (known: {', '.join(known)})")
    return strat


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
