"""`iterate demo`: the whole loop on the bundled demo data (what the README's first command runs).

Starts the local Label Studio (or uses the manifest's server when one answers), ingests the demo data, then
two rounds of select → push → oracle annotator → sync-labels → retrain → report, and prints each round's
figures. Every run starts from a fresh workspace of its own (``.iterate-demo`` beside the manifest's workspace,
marked as made by the demo); it never deletes a folder it did not create, so running it twice is safe.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import IterateError
from ..manifest import Manifest, check_workspace, load_manifest
from ._options import DEFAULT, ManifestOpt, console


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
                raise IterateError(f"{ws} exists and was not created by `iterate demo`: the demo deletes nothing it did "
                                   "not create; move the folder away or pass --workspace to another folder")
        else:
            shutil.rmtree(ws)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / DEMO_MARK).write_text(_MARK_TEXT)


def _figures(r: dict | None, split: str) -> str:
    if not r or r.get("pckh") is None:
        return f"{split}: –"
    return (f"{split} PCKh@0.5 {r['pckh05']:.1f} %, PCKh@0.1 {r['pckh']:.1f} %, MeanSmS@0.1 {r['mean_sms']:.1f} % "
            f"({r['frames']} frames)")


def demo(
    manifest: ManifestOpt = DEFAULT,
    labels: Annotated[Path, typer.Option(help="ground truth the oracle annotator answers from")] = Path("demo_data/pool.coco.json"),
    minutes: Annotated[Optional[list[float]], typer.Option(help="retrain wall time per round (minutes)")] = None,
    keep_server: Annotated[bool, typer.Option(help="leave the local Label Studio running at the end")] = False,
    workspace: Annotated[Optional[Path], typer.Option(help="the demo's own folder (default: the manifest's workspace "
                                                            "name + '-demo'); recreated on every run")] = None,
) -> None:
    """Run the loop on the bundled demo data: two rounds of select → Label Studio → sync → retrain → report.

    Example: iterate demo
    """
    from annotation import server
    from annotation.client import Studio
    from annotation.oracle import autolabel
    from annotation.sync import sync_labels
    from model.retrain import retrain
    from reports.report import build, evaluate_checkpoint

    from ..chunks import chunk_progress, current_chunk
    from ..ingest import ingest
    from ..ledger import Ledger
    from ..select import select

    t0 = time.time()
    m = load_manifest(manifest)
    # the demo never touches the manifest's workspace: it works in a folder of its own that it marks as its own
    m.workspace = str((workspace if workspace is not None else demo_workspace(m)).expanduser().resolve())
    check_workspace(m, manifest)
    minutes = minutes or [3.0, 5.0]
    token_var = m.label_studio.token_env
    if not os.environ.get(token_var):
        os.environ[token_var] = secrets.token_urlsafe(24)  # this process and its server only; never shown or stored
    fresh_demo_workspace(m.workspace_dir)
    started = False
    if Studio.from_manifest(m).health():
        console.print(f"using the Label Studio that answers at {m.label_studio.url}")
    else:
        with console.status("starting a local Label Studio (first start ≈ 1 min)…"):
            server.start(m)
        started = True
        console.print(f"Label Studio is up at {m.label_studio.url}")
    results = []
    try:
        ledger = Ledger(m.workspace_dir)
        ledger.lock("iterate demo")
        studio = Studio.from_manifest(m)
        console.rule("ingest")
        for s in ingest(m, ledger):
            console.print(f"{s.source}: {s.added} frames, {s.labels_added} labels ({s.split})")
        if m.model.base:
            with console.status("scoring the base model on the val and test splits…"):
                base = {sp: evaluate_checkpoint(m, ledger, m.resolve(m.model.base), sp) for sp in ("val", "test")}
            results.append((0, "base", base["val"] or {}, base["test"] or {}, m.model.base))
            console.print(f"base model, before any labels: {_figures(base['val'], 'val')}; {_figures(base['test'], 'test')}",
                          highlight=False)
        for rnd, mins in enumerate(minutes, 1):
            cur = current_chunk(chunk_progress(m, ledger))
            budget = cur.target - cur.labeled - cur.pending
            console.rule(f"round {rnd}: chunk {cur.index} ({cur.fraction:.0%} of D = {budget} frames)")
            with console.status("selecting…"):
                sel = select(m, ledger, budget)
            console.print(f"selected {len(sel.frame_ids)} frames ({'cold start' if sel.cold_start else sel.strategy}); "
                          f"pushed {sel.push.pushed} tasks to Label Studio project {sel.push.project_id}")
            a = autolabel(m, ledger, studio, m.resolve(labels) if not labels.is_absolute() else labels)
            console.print(f"oracle annotator answered {a.answered} tasks in Label Studio")
            s = sync_labels(m, ledger, studio)
            console.print(f"sync-labels: {s.new} new labels, {len(s.invalid)} invalid, {s.skipped} skipped")
            console.print(f"retrain ({mins:g} min on this machine)…")
            out = retrain(m, ledger, time_limit_s=mins * 60, epochs=10_000,
                          on_epoch=lambda r: "pckh01" in r and console.print(
                              f"  epoch {r['epoch'] + 1} (step {r['step']}): loss {r['loss']:.3f}, "
                              f"val PCKh@0.1 {r['pckh01']:.1f} %, @0.5 {r['pckh05']:.1f} %", highlight=False))
            with console.status("writing the report…"):
                md = build(m, ledger)
            rep = json.loads(md.with_suffix(".json").read_text())
            results.append((rnd, out.model_id, rep.get("val") or {}, rep.get("test") or {}, md))
            console.print(f"round {rnd}: {_figures(rep.get('val'), 'val')}; {_figures(rep.get('test'), 'test')} — report {md}",
                          highlight=False)
        ledger.close()
    finally:
        if started and not keep_server:
            server.stop(m)
    console.rule("demo done")
    for rnd, mid, val, test, md in results:
        name = "base model" if rnd == 0 else f"round {rnd}: model #{mid}"
        console.print(f"{name}  {_figures(val, 'val')}  |  {_figures(test, 'test')}  {md}", highlight=False)
    console.print(f"reports: {m.workspace_dir / 'reports'} (latest.md); wall time {time.time() - t0:.0f} s")


def register(app) -> None:
    app.command("demo")(demo)
