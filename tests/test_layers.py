"""The layering rules CI's import-linter cannot see: SQL lives in the ledger alone, and no library function takes
the manifest. Plus a check that import-linter's contracts do catch a broken layer (they are not vacuous)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("iterate", "model", "annotation", "reports")
LIBRARIES = ("model", "annotation", "reports", "iterate/selection")


def _files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (REPO / r).rglob("*.py"))


def test_sql_lives_in_the_ledger_alone():
    ledger = REPO / "iterate" / "core" / "ledger"
    offenders = []
    for p in _files(*PRODUCT):
        if ledger in p.parents:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            # `something.db` (the ledger's connection) or any `.execute(...)` / `.executemany(...)` call
            if isinstance(node, ast.Attribute) and node.attr in (
                "db",
                "_conn",
                "raw",
                "execute",
                "executemany",
                "executescript",
                "exec_driver_sql",
            ):
                offenders.append(f"{p.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    assert not offenders, "SQL outside iterate/core/ledger/:\n" + "\n".join(offenders)


def test_no_library_function_takes_the_manifest():
    offenders = []
    for p in _files(*LIBRARIES):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                for a in args:
                    if a.annotation is not None and "Manifest" in ast.unparse(a.annotation):
                        offenders.append(f"{p.relative_to(REPO)}:{node.lineno}: {node.name}({a.arg}: Manifest)")
    assert not offenders, "\n".join(offenders)


@pytest.mark.skipif(
    shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
    reason="import-linter is not installed in this environment",
)
def test_import_contracts_catch_a_library_importing_the_manifest(tmp_path):
    """Copy the packages, make `reports` import the manifest, and the contracts must fail (then pass on the
    untouched copy)."""
    for pkg in PRODUCT:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    exe = str(Path(sys.executable).parent / "lint-imports")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout[-2000:]
    metrics = tmp_path / "reports" / "metrics.py"
    metrics.write_text("from iterate.core.manifest import Manifest  # noqa: F401\n" + metrics.read_text())
    bad = subprocess.run([exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "reports.metrics -> iterate.core.manifest" in bad.stdout
