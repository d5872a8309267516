"""`iterate demo` as a library call: the whole loop on the bundled demo data (what the README's first command runs).

Starts the local Label Studio (or uses the manifest's server when one answers), ingests the demo data, then
rounds of select → push → oracle annotator → sync-labels → retrain → report. Every run starts from a fresh
workspace of its own (``.iterate-demo`` beside the manifest's workspace, marked as made by the demo); it never
deletes a folder it did not create, so running it twice is safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

from iterate.core.chunks import chunk_progress, current_chunk
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05, ci_key
from iterate.loop.ingest import ingest
from iterate.loop.report import build, evaluate_checkpoint
from iterate.loop.retrain import retrain
from iterate.loop.select import select
from iterate.loop.studio import autolabel, start_server, stop_server, studio, sync
from reports.report import training_time

DEMO_MARK = ".iterate-demo-workspace"
_MARK_TEXT = "created by `iterate demo`; the demo deletes and recreates this folder on its next run\n"


def demo_workspace(m: Manifest) -> Path:
    """The demo's own folder: ``<workspace>-demo`` beside the manifest's workspace, never the workspace itself."""
    ws = m.workspace_dir
    return ws.with_name(ws.name + "-demo")


def fresh_demo_workspace(ws: Path) -> None:
    """Empty the demo's folder, but only when the demo made it (it holds the demo's mark); refuse anything else."""
    if ws.is_symlink() or (ws.exists() and not ws.is_dir()):
        raise IterateError(f"{ws}: the demo's folder is a file or a link; move it away and re-run")
    if ws.exists():
        mark = ws / DEMO_MARK
        if not mark.is_file() or mark.read_text() != _MARK_TEXT:
            if any(ws.iterdir()):
                raise IterateError(
                    f"{ws} exists and was not created by `iterate demo`: the demo deletes nothing it did "
                    "not create; move the folder away or pass --workspace to another folder"
                )
        else:
            shutil.rmtree(ws)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / DEMO_MARK).write_text(_MARK_TEXT)


@dataclass
class RoundResult:
    round: int  # 0: the base model before any labels
    model: object  # the model id, or "base"
    val: dict
    test: dict
    report: object  # the report's path (the base checkpoint for round 0)
    steps: int | None = None  # the retrain's optimiser steps
    train_s: float | None = None  # its wall time on this machine
    audit: dict | None = None  # round 2: the oracle's swapped answers and how many the sync's audit caught


def _no_status(_: str) -> ContextManager:
    return contextlib.nullcontext()


DEMO_STEPS = (500, 800)  # optimiser steps of each round's retrain: the same figures on every machine
CORRUPT = 0.05  # share of round 2's oracle answers given with the arms swapped: errors the audit should find


def run_demo(
    m: Manifest,
    labels: Path,
    minutes: list[float] | None = None,
    *,
    steps: list[int] | None = None,
    keep_server: bool = False,
    say: Callable[[str], None] = print,
    status: Callable[[str], ContextManager] = _no_status,
    rule: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_result: Callable[[RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Run the loop on ``m`` (whose workspace is the demo's own folder): one round per entry of ``steps`` (each
    round's retrain runs that many optimiser steps; default :data:`DEMO_STEPS`), or of ``minutes`` (a wall-time cap
    instead, whose figures follow the machine's speed). Writes ``<workspace>/demo-results.json``."""
    plan = [("minutes", float(x)) for x in minutes] if minutes else [("steps", int(x)) for x in steps or DEMO_STEPS]
    t0 = time.time()
    rule = rule or (lambda s: say(f"-- {s} --"))
    token_var = m.label_studio.token_env
    if not os.environ.get(token_var):
        os.environ[token_var] = secrets.token_urlsafe(24)  # this process and its server only; never shown or stored
    fresh_demo_workspace(m.workspace_dir)
    started = _ensure_server(m, say, status)
    results: list[RoundResult] = []
    try:
        with Ledger(m.workspace_dir, m.ledger) as ledger:
            ledger.lock("iterate demo")
            rule("ingest")
            for s in ingest(m, ledger):
                say(f"{s.source}: {s.added} frames, {s.labels_added} labels ({s.split})")
            if m.model.base:
                with status("scoring the base model on the val and test splits…"):
                    results.append(_base_figures(m, ledger))
                if on_result:
                    on_result(results[-1])
            for rnd, length in enumerate(plan, 1):
                results.append(_round(m, ledger, rnd, length, labels, say, status, rule, on_epoch))
                if on_result:
                    on_result(results[-1])
    finally:
        if started and not keep_server:
            stop_server(m)
    _write_results(m, results, plan, time.time() - t0)
    return results


def _figs(r: dict) -> dict:
    keys = (PCKH05, ci_key(PCKH05), PCKH01, ci_key(PCKH01), MEAN_SMS01, "frames")
    return {k: r.get(k) for k in keys if k in r}


def _write_results(m: Manifest, results: list[RoundResult], plan, wall_s: float) -> Path:
    """The demo's figures, round by round, for `bench/release/demo_figures.py` to record (what docs/demo.md quotes)."""
    out = m.workspace_dir / "demo-results.json"
    data = {
        "plan": [{"by": by, "value": v} for by, v in plan],
        "wall_s": round(wall_s, 1),
        "rounds": [
            {
                "round": r.round,
                "model": r.model,
                "steps": r.steps,
                "train_s": r.train_s,
                "val": _figs(r.val),
                "test": _figs(r.test),
                "audit": r.audit,
            }
            for r in results
        ],
    }
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(out)
    return out


def _ensure_server(m: Manifest, say, status) -> bool:
    """Use the manifest's Label Studio when it answers, else start a local one; → whether this run started it."""
    if studio(m).health():
        say(f"using the Label Studio that answers at {m.label_studio.url}")
        return False
    with status("starting a local Label Studio (first start ≈ 1 min)…"):
        start_server(m)
    say(f"Label Studio is up at {m.label_studio.url}")
    return True


def _base_figures(m: Manifest, ledger: Ledger) -> RoundResult:
    base = {sp: evaluate_checkpoint(m, ledger, m.resolve(m.model.base), sp) for sp in ("val", "test")}
    return RoundResult(0, "base", base["val"] or {}, base["test"] or {}, m.model.base)


def _round(m: Manifest, ledger: Ledger, rnd: int, length, labels: Path, say, status, rule, on_epoch) -> RoundResult:
    """One round of the seed's loop: select → push → annotate (oracle) → sync → retrain → report."""
    cur = current_chunk(chunk_progress(m, ledger))
    budget = cur.target - cur.labeled - cur.pending
    rule(f"round {rnd}: chunk {cur.index} ({cur.fraction:.0%} of D = {budget} frames)")
    with status("selecting…"):
        sel = select(m, ledger, budget)
    say(
        f"selected {len(sel.frame_ids)} frames ({'cold start' if sel.cold_start else sel.strategy}"
        f"{f', scored by {sel.scored_by}' if sel.scored_by else ''}); "
        f"pushed {sel.push.pushed} tasks to Label Studio project {sel.push.project_id}"
    )
    corrupt = CORRUPT if rnd == 2 else 0.0  # round 2: known label errors for the audit to find
    a = autolabel(m, ledger, labels if labels.is_absolute() else m.resolve(labels), corrupt=corrupt)
    say(
        f"oracle annotator answered {a.answered} tasks in Label Studio"
        + (f" ({len(a.corrupted)} of them on purpose with the arms' left and right exchanged)" if corrupt else "")
    )
    s = sync(m, ledger)
    say(f"sync-labels: {s.new} new labels, {len(s.invalid)} invalid, {s.skipped} skipped")
    audit = None
    if corrupt and s.audit is not None:
        caught = len(set(a.corrupted) & set(s.audit["flagged"]))
        as_swap = len(set(a.corrupted) & set(s.audit["swap_flagged"]))
        audit = {"labels": s.audit["labels"], "flagged": s.audit["flagged_frames"], "swapped": len(a.corrupted)}
        audit |= {"caught": caught, "caught_as_swap": as_swap, "swap_flagged": len(s.audit["swap_flagged"])}
        say(
            f"label audit of the {s.audit['labels']} labels just pulled (by the model that selected the round): "
            f"{s.audit['flagged_frames']} frames flagged for any reason, {audit['swap_flagged']} for a left/right swap; "
            f"of the {len(a.corrupted)} swapped on purpose it flagged {caught}, {as_swap} of them as a swap "
            "(`iterate audit` lists every flag, `--push` sends them back for review)"
        )
    by, value = length
    if by == "minutes":
        say(f"retrain (at most {value:g} min on this machine)…")
        out = retrain(m, ledger, time_limit_s=value * 60, epochs=10_000, on_epoch=on_epoch)
    else:
        say(f"retrain: {value} steps…")
        out = retrain(m, ledger, max_steps=value, epochs=10_000, on_epoch=on_epoch, on_step=_eta(say))
    secs = out.metrics.get("seconds")
    cap = value * 60 if by == "minutes" else None
    say(
        f"retrained {out.metrics.get('steps', '?')} steps: "
        + (training_time(secs, cap) if isinstance(secs, (int, float)) else "time not recorded")
    )
    with status("writing the report…"):
        md = build(m, ledger)
    rep = json.loads(md.with_suffix(".json").read_text())
    steps = out.metrics.get("steps")
    return RoundResult(rnd, out.model_id, rep.get("val") or {}, rep.get("test") or {}, md, steps, secs, audit)


def _eta(say, at: int = 20):
    """An on_step hook that says, once ``at`` steps are done, how long the rest takes on this machine."""
    t0: list[float] = []

    def hook(step: int, total: int, loss: float) -> None:
        if not t0:
            t0.append(time.time())
            return
        if step == at and total > at:
            rate = (time.time() - t0[0]) / max(1, step - 1)
            say(
                f"  {total} steps: ≈ {rate * (total - step):.0f} s more of steps here ({1 / rate:.1f} steps/s; val passes add to it)"
            )

    return hook
