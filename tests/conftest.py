"""Shared fixtures: real data from ../shared/data (read-only) and small manifests written into tmp dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from iterate.core.presets import LSP_JOINTS
from iterate.loop.settings import studio_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ITERATE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
LSPET = SHARED / "lspet"

LSP_NAMES = list(LSP_JOINTS)


def pytest_configure(config):
    if not LSPET.is_dir():
        raise pytest.UsageError(f"real test data not found at {SHARED} (set ITERATE_SHARED_DATA)")


@pytest.fixture(scope="session")
def lspet_coco() -> dict:
    return json.loads((LSPET / "annotations.coco.json").read_text())


def lspet_subset(coco: dict, ids: list[int], out: Path) -> Path:
    """Write a COCO file holding LSPET images `ids` (file names stay relative to lspet/)."""
    keep = set(ids)
    sub = {
        "images": [i for i in coco["images"] if i["id"] in keep],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        "categories": coco["categories"],
    }
    out.write_text(json.dumps(sub))
    return out


def demo_manifest_dict() -> dict:
    """The demo's manifest as a dict for a test to change: without its ``train.replay``, whose source (the base's
    own frames) a test that replaces the sources does not have."""
    d = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    d["train"].pop("replay", None)
    return d


def lsp_manifest(tmp: Path, sources: list[dict], **over) -> Path:
    """A manifest for the 14 LSP joints in `tmp` with the given sources."""
    repo_manifest = demo_manifest_dict()
    model = {**repo_manifest["model"], "base": None}  # tests train small nets from scratch
    m = {**repo_manifest, "project": "test", "workspace": str(tmp / "ws"), "sources": sources, "model": model, **over}
    path = tmp / "data_manifest.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


# -- a real Label Studio server for the whole session ----------------------------------------------------
STUDIO_TOKEN_ENV = "ITERATE_TEST_LS_TOKEN"
STUDIO_TOKEN = "iterate-test-token-3f9a"  # a test server's own secret, not a real credential
TEMPLATE = Path(os.environ.get("ITERATE_LS_TEMPLATE", Path.home() / ".cache" / "iterate-tests" / "ls-1.23.2"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def studio_manifest(tmp: Path, port: int, sources: list[dict], title: str, **over) -> Path:
    ls = {
        "url": f"http://127.0.0.1:{port}",
        "project_title": title,
        "token_env": STUDIO_TOKEN_ENV,
        "data_root": "/",
        "batch_size": 4,
    }
    return lsp_manifest(tmp, sources, label_studio=ls, **over)


@pytest.fixture(scope="session")
def studio(tmp_path_factory):
    """A real local Label Studio 1.23.2 (from .venv-studio), started once; a template data dir makes it fast."""
    from annotation import server
    from iterate.core.manifest import load_manifest

    os.environ[STUDIO_TOKEN_ENV] = STUDIO_TOKEN
    if not (TEMPLATE / "label_studio.sqlite3").exists():  # first run on this machine: migrate once (≈ 1 min)
        tdir = tmp_path_factory.mktemp("ls-template")
        tm = load_manifest(studio_manifest(tdir, _free_port(), [], "template"))
        server.start(studio_settings(tm))
        server.stop(studio_settings(tm))
        TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
        import shutil

        shutil.copytree(
            server.data_dir(studio_settings(tm)),
            TEMPLATE,
            ignore=shutil.ignore_patterns("server.pid", "server.log"),
            dirs_exist_ok=True,
        )
    tmp = tmp_path_factory.mktemp("studio")
    port = _free_port()
    m = load_manifest(studio_manifest(tmp, port, [], "session"))
    server.start(studio_settings(m), template=TEMPLATE)
    yield {"port": port, "manifest": m}
    server.stop(studio_settings(m))


# -- a real PostgreSQL server for the whole session (the team ledger backend) -----------------------------
@pytest.fixture(scope="session")
def postgres():
    from pg_server import PostgresServer

    srv = PostgresServer().start()
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request) -> str | None:
    """Run a test on both ledger backends: None (SQLite in the workspace) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").new_database()
