"""Label Studio commands: `studio start|stop|status|autolabel`, `push`, `sync-labels`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from iterate.commands._options import DEFAULT, ManifestOpt, console, open_project, read_manifest

studio_app = typer.Typer(help="Run a local Label Studio and answer tasks with an oracle.", no_args_is_help=True)


@studio_app.command("start")
def start(manifest: ManifestOpt = DEFAULT) -> None:
    """Start a local Label Studio (127.0.0.1, data under the workspace), user and token from the environment.

    Example: export LABEL_STUDIO_TOKEN=<a secret> && iterate studio start
    """
    from annotation.server import DEFAULT_USER
    from iterate.loop.studio import start_server

    m = read_manifest(manifest)
    with console.status("starting Label Studio (the first start runs migrations, about a minute)…"):
        st = start_server(m)
    console.print(
        f"Label Studio is up at {st.url} (pid {st.pid}, data in {st.data_dir}); "
        f"log in as {DEFAULT_USER} with the password in LABEL_STUDIO_PASSWORD "
        f"(default: the value of {m.label_studio.token_env})",
        highlight=False,
    )


@studio_app.command("stop")
def stop(manifest: ManifestOpt = DEFAULT) -> None:
    """Stop the local Label Studio.

    Example: iterate studio stop
    """
    from iterate.loop.studio import stop_server

    m = read_manifest(manifest)
    said = {
        "stopped": "stopped",
        "stale": "the pid file was stale (its process is not this workspace's Label Studio): removed it, stopped nothing",
        "none": "no local Label Studio was running",
    }
    console.print(said[stop_server(m)])


@studio_app.command("status")
def status(manifest: ManifestOpt = DEFAULT) -> None:
    """Say whether the manifest's Label Studio answers.

    Example: iterate studio status
    """
    from iterate.loop.studio import server_status

    m = read_manifest(manifest)
    st = server_status(m)
    console.print(f"{st.url}: {'up' if st.running else 'down'}" + (f" (local pid {st.pid})" if st.pid else ""))


@studio_app.command("autolabel")
def autolabel(
    from_: Annotated[Path, typer.Option("--from", help="COCO keypoint labels that answer the tasks")],
    manifest: ManifestOpt = DEFAULT,
    limit: Annotated[int | None, typer.Option(help="answer at most this many tasks")] = None,
) -> None:
    """Oracle annotator: answer pending tasks from existing labels, writing what the UI writes.

    Example: iterate studio autolabel --from demo_data/pool.coco.json
    """
    from iterate.loop.studio import autolabel as run

    m, ledger = open_project(manifest)
    with ledger:
        s = run(m, ledger, from_, limit=limit)
    console.print(
        f"answered {s.answered} task(s); {s.already} already annotated; {len(s.no_label)} without a label in {from_}"
    )


def push(
    round_: Annotated[int, typer.Option("--round", help="the selection round whose frames to push")],
    manifest: ManifestOpt = DEFAULT,
) -> None:
    """Push a selection round's frames to Label Studio (with the round's model as pre-annotations); re-runs add nothing.

    Example: iterate push --round 2
    """
    from iterate.loop.select import push_round
    from iterate.loop.studio import round_frames

    m, ledger = open_project(manifest, write=True, command="iterate push")
    with ledger:
        s = push_round(m, ledger, round_, round_frames(ledger, round_))
    _print_push(s)


def _print_push(s) -> None:
    console.print(
        f"project {s.project_id}: pushed {s.pushed} task(s) in {s.batches} batch(es); {s.already} already there"
        + (f"; {s.recovered} recovered from an interrupted push" if s.recovered else "")
    )
    for r in s.refused:
        console.print(f"[yellow]refused:[/] {escape(r)}", highlight=False)
    for line in s.lost:
        console.print(f"[yellow]lost:[/] {escape(line)}", highlight=False)


def sync_labels(
    manifest: ManifestOpt = DEFAULT,
    full: Annotated[bool, typer.Option(help="re-read every task, not only those updated since the last sync")] = False,
) -> None:
    """Pull finished annotations from Label Studio into the ledger, validated; bad tasks are named and left.

    Example: iterate sync-labels
    """
    from iterate.loop.studio import sync as run

    m, ledger = open_project(manifest, write=True, command="iterate sync-labels")
    with ledger:
        with console.status("pulling annotations…"):
            s = run(m, ledger, full=full)
    t = Table(title="sync-labels")
    for col in ("tasks read", "new labels", "new versions", "unchanged", "skipped", "still pending", "invalid"):
        t.add_column(col, justify="right")
    t.add_row(*(str(x) for x in (s.tasks, s.new, s.updated, s.unchanged, s.skipped, s.pending, len(s.invalid))))
    console.print(t)
    for line in s.invalid:
        console.print(f"[yellow]invalid, not ingested:[/] {escape(line)}", highlight=False)
    for line in s.waiting:
        console.print(f"[yellow]waiting, not ingested:[/] {escape(line)}", highlight=False)
    if s.foreign:
        ids = ", ".join(map(str, s.foreign[:50])) + (f" and {len(s.foreign) - 50} more" if len(s.foreign) > 50 else "")
        console.print(
            f"[yellow]foreign, not read:[/] {len(s.foreign)} task(s) this ledger did not push: {ids}", highlight=False
        )
    for line in s.lost:
        console.print(f"[yellow]lost:[/] {escape(line)}", highlight=False)
    if s.controls:
        c = s.controls[-1]
        console.print(f"round {c['round']} control ({c['model']}): {c['verdict']}", highlight=False)
    a = s.audit
    if a is not None:
        why = ", ".join(f"{k} {v}" for k, v in a["per_reason"].items() if v) or "nothing"
        console.print(
            f"audit of the {a['labels']} label(s) just pulled: {a['flagged_frames']} frame(s) flagged ({why}) — "
            "`iterate audit` lists them, `--push` sends them back for review",
            highlight=False,
        )
    r = s.review
    if r is not None:
        console.print(
            f"review tasks: {r.tasks} read — {r.confirmed} labels confirmed, {r.corrected} corrected (new versions, "
            f"source review), {r.pending} still pending, {r.retired} skipped (frame retired), {len(r.invalid)} invalid",
            highlight=False,
        )
        for line in r.invalid:
            console.print(f"[yellow]review invalid, not ingested:[/] {escape(line)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(studio_app, name="studio")
    app.command("push")(push)
    app.command("sync-labels")(sync_labels)
