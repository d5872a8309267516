"""Ingest and manifest hardening, third pass (issue 29, items 4, 5, 8, 9, 10, 13, 17 and 19): source names that
would write outside the workspace, Label Studio images outside their folder, COCO sizes that disagree with the
decoded image, two videos of one name, the workspace ingesting itself, 1-frame videos, duplicate YAML keys, fps
that overflows, strata named like the labeling config's own controls, quoting in `init`, booleans as numbers
and video frames under the images' size rule. Real data from ../shared/data."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from iterate.cli import app

from conftest import SHARED, lsp_manifest

DANCE = SHARED / "sleap_dance" / "dance.mp4"


def _one_line(r, code: int = 2) -> str:
    out = r.output
    assert r.exit_code == code, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return lines[0]


def _ingest(p):
    return CliRunner().invoke(app, ["ingest", "-m", str(p)])


def _files(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- item 4: a source name is a plain folder name -------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["../../../outside", "a/b", "a\\b", "..", ".", ".hidden", "x..y", "CON", "nul.txt", "Com1", "a\x00b", "a\nb", ""],
)
def test_unsafe_source_names_are_refused_at_load(tmp_path, name):
    p = lsp_manifest(tmp_path, [{"name": name, "kind": "video", "path": str(DANCE), "every": 150}])
    line = _one_line(_ingest(p))
    assert "sources[0].name" in line and "plain folder name" in line
    assert not (tmp_path / "ws").exists() and _files(tmp_path.parent / "outside") == []


def test_a_name_taken_from_the_path_is_checked_too(tmp_path):
    (tmp_path / ".slp").write_bytes(b"")
    p = lsp_manifest(tmp_path, [{"kind": "sleap", "path": str(tmp_path / ".slp")}])
    line = _one_line(_ingest(p))
    assert "sources[0]" in line and "give the source a plain `name`" in line


def test_frames_folder_is_checked_to_stay_inside_the_workspace(tmp_path):
    """A planted symlink `frames/dance → outside`: the write is refused, nothing lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "ws" / "frames").mkdir(parents=True)
    os.symlink(outside, tmp_path / "ws" / "frames" / "dance")
    p = lsp_manifest(tmp_path, [{"name": "dance", "kind": "video", "path": str(DANCE), "every": 150}])
    line = _one_line(_ingest(p))
    assert "'dance'" in line and "outside the workspace" in line
    assert _files(outside) == []


def test_a_plain_name_still_works(tmp_path):
    p = lsp_manifest(tmp_path, [{"name": "dance-cam_1.v2", "kind": "video", "path": str(DANCE), "every": 150}])
    r = _ingest(p)
    assert r.exit_code == 0, r.output
    assert len(_files(tmp_path / "ws" / "frames" / "dance-cam_1.v2")) == 3
