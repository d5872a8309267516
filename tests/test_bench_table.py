"""The benchmarks table in docs/benchmarks.md is generated from bench/results/*.json (`scripts/bench_table.py`):
the committed table matches the results files, and a changed figure makes `--check` fail, naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "bench_table.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_committed_bench_table_is_current():
    r = _run("--check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_changed_result_makes_check_fail(tmp_path):
    results = tmp_path / "bench" / "results"  # the repo's layout, so the table's relative links are the same
    results.mkdir(parents=True)
    for p in (REPO / "bench" / "results").glob("*.json"):
        shutil.copy(p, results / p.name)
    (results / "simulate-x").mkdir()  # folders and files of another shape are skipped, not read as rows
    (results / "simulate-x" / "result.json").write_text(json.dumps({"name": "x", "figures": {"a": 1}}))
    (results / "notes.json").write_text("[1, 2]")
    (results / "broken.json").write_text("{not json")
    (results / "recipe.md").write_text("| a table |\n")
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    shutil.copy(REPO / "docs" / "benchmarks.md", doc)
    args = ("--results", str(results), "--doc", str(doc))

    ok = _run("--check", *args)
    assert ok.returncode == 0, ok.stdout + ok.stderr  # the same files and the same relative links: up to date

    rec = json.loads((results / "learn_cpu.json").read_text())
    rec["figures"]["cpu_steps_pckh05"] += 1.0
    (results / "learn_cpu.json").write_text(json.dumps(rec, indent=1))
    stale = _run("--check", *args)
    assert stale.returncode == 1
    lines = stale.stdout.strip().splitlines()
    assert len(lines) == 1 and "benchmarks.md" in lines[0] and "learn_cpu.json" in lines[0], stale.stdout

    wrote = _run(*args)
    assert wrote.returncode == 0, wrote.stderr
    assert "notes.json (not a bench results file" in wrote.stdout and "simulate-x/ (folder)" in wrote.stdout
    assert f"`cpu_steps_pckh05`={rec['figures']['cpu_steps_pckh05']}" in doc.read_text()
    assert _run("--check", *args).returncode == 0

    doc.write_text("# no markers\n")
    assert _run("--check", *args).returncode == 2
