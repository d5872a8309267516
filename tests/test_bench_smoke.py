"""Benches that would otherwise rot unseen (issue "One loop", `bench/ls_roundtrip.py` failed for months once the
demo manifest gained `train.replay`): their smoke modes run here, results redirected to a temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_ls_roundtrip_bench_smoke(tmp_path, studio):
    env = {**os.environ, "ITERATE_BENCH_RESULTS": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ls_roundtrip.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    last = dict(line.split("=", 1) for line in r.stdout.strip().splitlines()[-4:])
    assert set(last) == {"push_500_s", "sync_5000_s", "export_5000_s", "sync_over_export"}
    rec = json.loads((tmp_path / "ls_roundtrip_smoke.json").read_text())
    assert rec["details"]["tasks_in_project"] == 50 and rec["figures"]["sync_5000_s"] > 0
