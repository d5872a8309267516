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
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

from iterate.core.chunks import chunk_progress, current_chunk
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
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


def _no_status(_: str) -> ContextManager:
    return contextlib.nullcontext()


def run_demo(
    m: Manifest,
    labels: Path,
    minutes: list[float],
    *,
    keep_server: bool = False,
    say: Callable[[str], None] = print,
    status: Callable[[str], ContextManager] = _no_status,
    rule: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_result: Callable[[RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Run the loop on ``m`` (whose workspace is the demo's own folder) for ``len(minutes)`` rounds."""
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
            for rnd, mins in enumerate(minutes, 1):
                results.append(_round(m, ledger, rnd, mins, labels, say, status, rule, on_epoch))
                if on_result:
                    on_result(results[-1])
    finally:
        if started and not keep_server:
            stop_server(m)
    return results


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


def _round(
    m: Manifest, ledger: Ledger, rnd: int, mins: float, labels: Path, say, status, rule, on_epoch
) -> RoundResult:
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
    a = autolabel(m, ledger, labels if labels.is_absolute() else m.resolve(labels))
    say(f"oracle annotator answered {a.answered} tasks in Label Studio")
    s = sync(m, ledger)
    say(f"sync-labels: {s.new} new labels, {len(s.invalid)} invalid, {s.skipped} skipped")
    say(f"retrain (at most {mins:g} min on this machine)…")
    out = retrain(m, ledger, time_limit_s=mins * 60, epochs=10_000, on_epoch=on_epoch)
    secs = out.metrics.get("seconds")
    say(
        f"retrained {out.metrics.get('steps', '?')} steps: "
        + (training_time(secs, mins * 60) if isinstance(secs, (int, float)) else "time not recorded")
    )
    with status("writing the report…"):
        md = build(m, ledger)
    rep = json.loads(md.with_suffix(".json").read_text())
    return RoundResult(rnd, out.model_id, rep.get("val") or {}, rep.get("test") or {}, md)
