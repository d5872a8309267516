"""Against a real local Label Studio: push 500 tasks with predictions, then sync 5,000 annotated tasks (the
annotations bulk-imported with their tasks, in the shape the UI writes), and in the same run the server's bare
JSON export of the same 5,000 tasks (one request, nothing parsed): the floor any sync stands on.

    python bench/speed/ls_roundtrip.py [--smoke]      (needs .venv-studio: bash scripts/setup_studio.sh)
Last lines: push_500_s=…, sync_5000_s=…, export_5000_s=…, sync_over_export=…
``--smoke``: 20 pushed and 50 annotated tasks (the test suite's check that the bench still runs), results in
``ls_roundtrip_smoke.json``. The annotated tasks are bulk-imported and then recorded in the ledger as pushed, as a
push would: `sync-labels` reads only the tasks the ledger pushed.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from annotation import server  # noqa: E402
from annotation.client import Studio  # noqa: E402
from annotation.labeling import to_result  # noqa: E402
from annotation.push import ensure_project, image_url, push  # noqa: E402
from annotation.sync import sync_labels  # noqa: E402
from iterate.core.ledger import Ledger  # noqa: E402
from iterate.core.manifest import load_manifest  # noqa: E402
from iterate.loop.ingest import ingest  # noqa: E402
from iterate.loop.settings import labeling, studio_settings  # noqa: E402

import _common  # noqa: E402
from _common import LSPET, REPO, write_result  # noqa: E402

TEMPLATE = Path(os.environ.get("ITERATE_LS_TEMPLATE", Path.home() / ".cache" / "iterate-tests" / "ls-1.23.2"))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="20 pushed + 50 annotated tasks")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
    n_push, n_sync = (20, 50) if args.smoke else (500, 5000)
    # the test suite's throwaway server secret: the cached template data dir was created with it
    os.environ["ITERATE_BENCH_LS_TOKEN"] = "iterate-test-token-3f9a"
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        man = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
        man["train"].pop("replay", None)  # its source (the base's frames) is not among this bench's sources
        man.update(
            workspace=str(d / "ws"),
            model={**man["model"], "base": None},
            sources=[{"name": "pool", "kind": "images", "path": str(LSPET / "images"), "split": "pool"}],
            label_studio={
                "url": f"http://127.0.0.1:{port}",
                "project_title": "bench",
                "data_root": "/",
                "token_env": "ITERATE_BENCH_LS_TOKEN",
                "batch_size": 500,
            },
            selection={"dedup_hamming": 0},
        )
        (d / "m.yaml").write_text(yaml.safe_dump(man))
        m = load_manifest(d / "m.yaml")
        tmpl = TEMPLATE if (TEMPLATE / "label_studio.sqlite3").exists() else None
        t0 = time.time()
        server.start(studio_settings(m), template=tmpl)
        print(f"server up in {time.time() - t0:.1f} s ({'template copy' if tmpl else 'fresh data dir'})")
        try:
            led = Ledger(m.workspace_dir)
            ingest(m, led)
            frames = led.frames("pool")
            st = Studio.from_settings(studio_settings(m))
            rng = np.random.default_rng(0)
            first = frames[:n_push]
            preds = {f.id: (rng.uniform(0, 100, (14, 2)), rng.random(14)) for f in first}
            ensure_project(labeling(m), led, st)
            t0 = time.perf_counter()
            s = push(labeling(m), led, st, [f.id for f in first], predictions=preds, model_version="bench")
            t_push = time.perf_counter() - t0
            assert s.pushed == n_push, (s.pushed, s.refused[:3])
            # 5,000 annotated tasks, bulk-imported with annotations in the UI's shape
            pid = s.project_id
            many = frames[n_push : n_push + n_sync]
            for i in range(0, len(many), 1000):
                batch = []
                chunk = many[i : i + 1000]
                for f in chunk:
                    kps = [
                        [float(x), float(y), int(v)]
                        for x, y, v in zip(
                            rng.uniform(1, f.width - 1, 14), rng.uniform(1, f.height - 1, 14), rng.choice([1, 2], 14)
                        )
                    ]
                    batch.append(
                        {
                            "data": {"image": image_url(labeling(m), f.path), "frame_id": f.id},
                            "annotations": [
                                {"result": to_result(labeling(m), kps, f.width, f.height, {"posture": "upright"})}
                            ],
                        }
                    )
                tids = st.import_tasks(pid, batch)
                with led.transaction():  # as push records them: sync reads only the ledger's own tasks
                    for f, tid in zip(chunk, tids, strict=True):
                        led.add_task(f.id, pid, tid)
            ids = [t["id"] for t in st.tasks(pid, fields="task_only") if t.get("total_annotations", 1)]
            t_export = []
            for _ in range(2):  # the server's bare export of every task (the 5,000 annotated + 500 pushed)
                t0 = time.perf_counter()
                raw = st._http.get(
                    f"/api/projects/{pid}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
                )
                t_export.append(time.perf_counter() - t0)
                assert raw.status_code == 200 and len(raw.content) > 1000
            t0 = time.perf_counter()
            r = sync_labels(labeling(m), led, st)
            t_sync = time.perf_counter() - t0
            print(
                f"synced: {r.new} new labels from {r.tasks} tasks, {len(r.invalid)} invalid; "
                f"{len(ids)} tasks in the project; bare export {t_export[0]:.2f} / {t_export[1]:.2f} s"
            )
            assert r.new == n_sync, r
            led.close()
        finally:
            server.stop(studio_settings(m))
    export = min(t_export)
    write_result(
        "ls_roundtrip_smoke" if args.smoke else "ls_roundtrip",
        {
            "push_500_s": round(t_push, 2),
            "sync_5000_s": round(t_sync, 2),
            "export_5000_s": round(export, 2),
            "sync_over_export": round(t_sync / export, 3),
        },
        {
            "tasks_in_project": len(ids),
            "export_runs_s": [round(t, 2) for t in t_export],
            "label_studio": "1.23.2, local, SQLite",
        },
    )


if __name__ == "__main__":
    main()
