"""Nothing the user made is deleted: the demo works in a folder of its own, and workspaces that would hold or
be the user's files are refused (issue: "the demo deletes folders")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.errors import IterateError, ManifestError
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.demo import DEMO_MARK, demo_workspace, fresh_demo_workspace

from conftest import REPO, demo_manifest_dict


def _manifest(folder: Path, **over) -> Path:
    d = demo_manifest_dict()
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "val.coco.json").write_text((REPO / "demo_data" / "val.coco.json").read_text())
    d["sources"] = [{"kind": "coco", "path": "data/val.coco.json", "images": str(REPO / "demo_data"), "split": "val"}]
    d["model"]["base"] = None
    d["label_studio"]["url"] = "http://127.0.0.1:9"  # nothing answers: a test must never get as far as a server
    d.update(over)
    p = folder / "data_manifest.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _user_project(tmp_path: Path) -> tuple[Path, Path]:
    """A real project: manifest, data, and a workspace whose ledger holds a label version."""
    p = _manifest(tmp_path / "proj")
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led, led.transaction():
        from iterate.core.ledger import Frame

        led.add_frame(Frame("f1", str(tmp_path / "x.png"), "s", None, None, 10, 10, "h", 0, "pool"))
        led.add_label("f1", [[1.0, 2.0, 2]] * 14, source="coco")
    return p, m.workspace_dir


def test_demo_default_folder_is_its_own_not_the_projects_workspace(tmp_path):
    p, ws = _user_project(tmp_path)
    m = load_manifest(p)
    assert demo_workspace(m) != ws and demo_workspace(m).parent == ws.parent
    assert ws not in demo_workspace(m).parents


def test_demo_refuses_a_folder_it_did_not_create_and_keeps_every_file(tmp_path):
    p, ws = _user_project(tmp_path)
    before = sorted((q.relative_to(ws), q.stat().st_size) for q in ws.rglob("*") if q.is_file())
    r = CliRunner().invoke(app, ["demo", "-m", str(p), "--workspace", str(ws)])
    assert r.exit_code == 2, r.output
    assert "was not created by `iterate demo`" in r.output and "Traceback" not in r.output
    after = sorted((q.relative_to(ws), q.stat().st_size) for q in ws.rglob("*") if q.is_file())
    assert after == before
    with Ledger(ws) as led:
        assert led.current_label("f1") is not None


def test_demo_folder_is_marked_and_only_a_marked_folder_is_recreated(tmp_path):
    d = tmp_path / "demo-ws"
    fresh_demo_workspace(d)
    assert (d / DEMO_MARK).is_file()
    (d / "ledger.sqlite").write_text("old run")
    fresh_demo_workspace(d)  # the demo's own folder: recreated
    assert not (d / "ledger.sqlite").exists() and (d / DEMO_MARK).is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "ledger.sqlite").write_text("a user's ledger")
    with pytest.raises(IterateError, match="not created by `iterate demo`"):
        fresh_demo_workspace(other)
    (other / DEMO_MARK).write_text("forged")  # a mark must be the demo's own text
    with pytest.raises(IterateError):
        fresh_demo_workspace(other)
    assert (other / "ledger.sqlite").read_text() == "a user's ledger"
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh_demo_workspace(empty)  # an empty folder holds nothing to lose
    assert (empty / DEMO_MARK).is_file()


@pytest.mark.parametrize(
    "workspace, expected",
    [
        ("/", "is the root folder"),
        ("~", "is the home folder"),
        (".", "holds the manifest"),
        ("..", "holds the manifest"),
        ("data", "holds sources[0].path"),
    ],
)
def test_dangerous_workspaces_are_refused(tmp_path, workspace, expected):
    p = _manifest(tmp_path / "proj", workspace=workspace)
    with pytest.raises(ManifestError, match=re.escape(expected)):
        load_manifest(p)


def test_workspace_naming_a_file_is_refused(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "afile").write_text("x")
    p = _manifest(tmp_path / "proj", workspace="afile")
    with pytest.raises(ManifestError, match="is a file"):
        load_manifest(p)


def test_status_with_root_workspace_creates_nothing(tmp_path):
    p = _manifest(tmp_path / "proj", workspace="/")
    r = CliRunner().invoke(app, ["status", "-m", str(p)])
    assert r.exit_code == 2 and "root folder" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1
    assert not Path("/ledger.sqlite").exists()


def test_demo_with_workspace_above_the_manifest_deletes_nothing(tmp_path):
    p = _manifest(tmp_path / "a" / "b", workspace="../..")
    r = CliRunner().invoke(app, ["demo", "-m", str(p)])
    assert r.exit_code == 2 and "holds the manifest" in r.output
    assert p.is_file() and (p.parent / "data" / "val.coco.json").is_file()
