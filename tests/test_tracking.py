"""Experiment tracking: a real retrain and report, read back with the MLflow client from the workspace's store."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.tracking import file_sha256, tracking_uri

from conftest import LSPET, lsp_manifest, lspet_subset


@pytest.fixture
def project(tmp_path, lspet_coco, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    srcs = []
    for name, lo, hi, split in (("tr", 7001, 7012, "train"), ("va", 7101, 7110, "val"), ("te", 7301, 7308, "test")):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp_path / f"{name}.json")
        srcs.append({"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split})
    p = lsp_manifest(tmp_path, srcs, train={"epochs": 2, "batch_size": 4, "warmup_steps": 1, "eval_every_steps": 1})
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p


def test_retrain_and_report_are_one_mlflow_run(project):
    from mlflow.tracking import MlflowClient

    r = CliRunner().invoke(app, ["retrain", "-m", str(project)])
    assert r.exit_code == 0, r.output
    assert "MLflow run " in r.output
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    m = load_manifest(project)
    assert tracking_uri(m).endswith(os.path.join("ws", "mlflow", "mlflow.db"))
    client = MlflowClient(tracking_uri(m))
    exp = client.get_experiment_by_name(m.project)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["model.backbone"] == "hrnet_w18_small" and p["train.epochs"] == "2" and p["train.batch_size"] == "4"
    assert (p["labels.train"], p["labels.val"]) == ("12", "10")
    assert sum(int(v) for k, v in p.items() if k.startswith("labels.posture.")) == 12  # per stratum
    assert p["init"] == "scratch" and p["code.version"] and p["ledger"].startswith("sqlite")
    steps = client.get_metric_history(run.info.run_id, "loss")
    assert len(steps) == 6 and [s.step for s in steps] == [1, 2, 3, 4, 5, 6]  # 12 frames / batch 4 × 2 epochs
    assert len(client.get_metric_history(run.info.run_id, "val_pckh_at_0.1")) == 2  # val every epoch
    with Ledger(m.workspace_dir) as led:
        model = led.latest_model()
    tags = run.data.tags
    assert tags["iterate.model_id"] == str(model.id) and tags["iterate.checkpoint"] == model.path
    assert tags["iterate.checkpoint_sha256"] == file_sha256(model.path)
    assert run.data.metrics["best_val_pckh_at_0.1"] == pytest.approx(model.metrics["val_pckh@0.1"])
    # the report: its figures and files on the same run, and it names the run
    assert "report_val_pckh_at_0.1" in run.data.metrics and "report_test_pckh_at_0.5" in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id, "report-round-00")}
    assert {"report-round-00/round-00.md", "report-round-00/round-00.json"} <= files
    assert any(f.endswith(".png") for f in files)
    md = (m.workspace_dir / "reports" / "latest.md").read_text()
    assert f"Tracked as MLflow run `{run.info.run_id}`" in md
    # the dataset version the retrain recorded (issue 32): every labeled frame of every split, named in the model's
    # record, the run and the report
    assert model.dataset_version == 1
    assert (p["dataset.version"], p["dataset.frames"], p["dataset.labels"]) == ("1", "30", "30")
    assert tags["iterate.dataset_version"] == "v1" and len(tags["iterate.dataset_hash"]) == 64
    assert "trained on dataset v1: 12 frames (v1, hash `" in md


def test_tracking_off_and_an_unreachable_server(project, monkeypatch):
    import yaml

    doc = yaml.safe_load(project.read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    r = CliRunner().invoke(app, ["retrain", "-m", str(project)])
    assert r.exit_code == 2 and "MLflow tracking store http://127.0.0.1:9 cannot be used" in r.output, r.output
    assert "Traceback" not in r.output
    doc["tracking"] = {"mlflow": False}
    project.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(app, ["retrain", "-m", str(project), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "MLflow run" not in r.output


def _wandb_records(run_dir):
    """Every record of an offline W&B run file, read with W&B's own protobuf schema; the file framing (LevelDB's
    log format: 32 KiB blocks, a 7-byte header per chunk, after W&B's 7-byte file header) is read here."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind in (2, 3):
            buf += chunk
        elif kind == 4:
            chunks.append(buf + chunk)
            buf = b""
    out = []
    for c in chunks:
        r = pb.Record()
        r.ParseFromString(c)
        out.append(r)
    return out


def _items(items) -> dict:
    """A history/config record's items: key → value (W&B writes a key as ``key`` or as its ``nested_key`` parts)."""
    import json

    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def test_retrain_and_report_are_one_wandb_run_offline(project, tmp_path, monkeypatch):
    """``tracking: {backend: wandb}`` with no API key: W&B's offline mode writes the run under the workspace; read
    back: the parameters, the loss per step, val figures, the checkpoint, the report's figures and files, one run id."""
    import yaml

    pytest.importorskip("wandb")
    for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    doc = yaml.safe_load(project.read_text())
    doc["tracking"] = {"backend": "wandb"}
    project.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(app, ["retrain", "-m", str(project)])
    assert r.exit_code == 0, r.output
    assert "W&B run " in r.output and "offline files in" in r.output and "MLflow" not in r.output
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    m = load_manifest(project)
    assert not (m.workspace_dir / "mlflow").exists()
    with Ledger(m.workspace_dir) as led:
        model = led.latest_model()
        rec = led.get(f"tracking_run:{model.id}")
    assert rec["backend"] == "wandb"
    runs = sorted((m.workspace_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(d.name.endswith(rec["run_id"]) for d in runs)  # retrain, then the report's reopen
    train, rep = (_wandb_records(d) for d in runs)
    history = [_items(x.history.item) for x in train if x.HasField("history")]
    loss = [(h["iterate/step"], h["loss"]) for h in history if "loss" in h]
    assert [s for s, _ in loss] == [1, 2, 3, 4, 5, 6]  # 12 frames / batch 4 × 2 epochs, by the training step
    assert sum("val_pckh_at_0.1" in h for h in history) == 2  # val every epoch
    best = [h["best_val_pckh_at_0.1"] for h in history if "best_val_pckh_at_0.1" in h]
    assert best == [pytest.approx(model.metrics["val_pckh@0.1"])]
    config = {k: v for x in train if x.HasField("config") for k, v in _items(x.config.update).items()}
    assert config["model.backbone"] == "hrnet_w18_small" and config["train.batch_size"] == 4
    assert config["labels.train"] == 12 and config["iterate.model_id"] == str(model.id)
    assert config["iterate.checkpoint_sha256"] == file_sha256(model.path)
    assert [x.exit.exit_code for x in train if x.HasField("exit")] == [0]
    rep_hist = [_items(x.history.item) for x in rep if x.HasField("history")]
    assert any("report_val_pckh_at_0.1" in h and "report_test_pckh_at_0.5" in h for h in rep_hist)
    files = runs[1] / "files" / "report-round-00"
    assert (files / "round-00.md").read_text() == (m.workspace_dir / "reports" / "round-00.md").read_text()
    md = (m.workspace_dir / "reports" / "latest.md").read_text()
    assert f"Tracked as W&B run `{rec['run_id']}`" in md


def test_the_older_mlflow_switch_still_turns_tracking_off(project):
    import yaml

    doc = yaml.safe_load(project.read_text())
    for tracking, kind in (({"mlflow": False}, "none"), ({"backend": "none"}, "none"), ({}, "mlflow")):
        doc["tracking"] = tracking
        project.write_text(yaml.safe_dump(doc, sort_keys=False))
        assert load_manifest(project).tracking.kind == kind
    doc["tracking"] = {"backend": "tensorboard"}
    project.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(app, ["status", "-m", str(project)])
    assert r.exit_code == 2 and "tracking.backend" in r.output and "Traceback" not in r.output
