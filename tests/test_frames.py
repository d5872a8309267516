"""Frames that used to break the loop (issue "Hardening", item 4): huge, degenerate, un-nameable, changed or
deleted after ingest. Each is named and skipped, never a traceback or a crash; `iterate frames remove` retires
a frame with its history kept."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.settings import train_setup

from conftest import LSPET, lsp_manifest


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels (its data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _folder(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in (7001, 7002, 7003, 7004):
        shutil.copy(LSPET / "images" / f"im{i:05d}.jpg", d)
    cv2.imwrite(str(d / "sliver.png"), np.full((1, 60000, 3), 128, np.uint8))
    cv2.imwrite(str(d / "tall.png"), np.full((2000, 40, 3), 128, np.uint8))  # 50:1
    (d / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    with open(os.fsencode(d) + b"/caf\xe9.jpg", "wb") as fh:  # latin-1 bytes: not valid UTF-8
        fh.write((LSPET / "images" / "im07005.jpg").read_bytes())
    return d


def test_bad_frames_are_named_and_skipped_the_rest_is_kept(tmp_path):
    d = _folder(tmp_path)
    p = lsp_manifest(tmp_path, [{"name": "f", "kind": "images", "path": str(d)}], selection={"dedup_hamming": 0})
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert (
        "sliver.png (60000×1 pixels: a side is under 16 px)" in out
        and "tall.png (40×2000 pixels: aspect beyond 20:1)" in out
    )
    assert "bomb.png (100000×100000 pixels is more than the 80 megapixel limit)" in out
    assert "caf\\xe9.jpg (the file name is not valid UTF-8: rename it)" in out
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        assert sorted(os.path.basename(f.path) for f in led.frames()) == [
            f"im{i:05d}.jpg" for i in (7001, 7002, 7003, 7004)
        ]


def test_predict_on_an_un_nameable_file_does_not_crash(tmp_path):
    """`cv2.imread` on a non-UTF-8 path could kill the process: predict runs in a subprocess to see that."""
    from model.checkpoints import save_atomic
    from model.hrnet import build_model
    from model.train import checkpoint_dict

    d = _folder(tmp_path)
    m = load_manifest(lsp_manifest(tmp_path, []))
    ck = tmp_path / "net.pt"
    save_atomic(checkpoint_dict(build_model("hrnet_w18_small", 14, 128, 32), train_setup(m)), ck)
    out = tmp_path / "preds.json"
    r = subprocess.run(
        [sys.executable, "-m", "iterate.cli", "predict", "--model", str(ck), str(d), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    names = sorted(os.path.basename(q["file_name"]) for q in json.loads(out.read_text()))
    assert "café.jpg".encode("latin-1").decode("utf-8", "surrogateescape") in names  # read from its bytes
    assert len(names) == 5 and "Traceback" not in r.stdout + r.stderr
    assert "bomb.png" in r.stdout and "sliver.png" in r.stdout  # named as skipped


def test_changed_and_deleted_frames_are_reported_and_can_be_retired(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in (7001, 7002, 7003):
        shutil.copy(LSPET / "images" / f"im{i:05d}.jpg", d)
    p = lsp_manifest(tmp_path, [{"name": "f", "kind": "images", "path": str(d)}], selection={"dedup_hamming": 0})
    assert CliRunner().invoke(app, ["ingest", "-m", str(p)]).exit_code == 0
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ids = {os.path.basename(f.path): f.id for f in led.frames()}
    shutil.copy(LSPET / "images" / "im07010.jpg", d / "im07001.jpg")  # replaced by another picture
    (d / "im07002.jpg").unlink()
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    out = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert f"frame {ids['im07001.jpg']} is changed since it was ingested" in out
    assert f"frame {ids['im07002.jpg']} is gone from disk" in out
    r = CliRunner().invoke(app, ["frames", "remove", ids["im07001.jpg"], ids["im07002.jpg"], "-m", str(p)])
    assert r.exit_code == 0 and "retired 2 frame(s)" in r.output, r.output
    with Ledger(m.workspace_dir) as led:
        assert [f.id for f in led.frames()] == [ids["im07003.jpg"]]
        assert len(led.retired_frames()) == 2 and led.frame(ids["im07001.jpg"]) is not None  # history kept
        assert led.count_frames() == {"pool": 1}
    r = CliRunner().invoke(app, ["frames", "remove", "nope", "-m", str(p)])
    assert r.exit_code == 2 and "no frame with id nope" in r.output
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])  # retired frames are not reported again
    assert r.exit_code == 0 and "gone from disk" not in r.output
