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
    assert len(client.get_metric_history(run.info.run_id, "val_pckh01")) == 2  # val every epoch
    with Ledger(m.workspace_dir) as led:
        model = led.latest_model()
    tags = run.data.tags
    assert tags["iterate.model_id"] == str(model["id"]) and tags["iterate.checkpoint"] == model["path"]
    assert tags["iterate.checkpoint_sha256"] == file_sha256(model["path"])
    assert run.data.metrics["best_val_pckh01"] == pytest.approx(model["metrics"]["val_pckh01"])
    # the report: its figures and files on the same run, and it names the run
    assert "report_val_pckh" in run.data.metrics and "report_test_pckh05" in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id, "report-round-00")}
    assert {"report-round-00/round-00.md", "report-round-00/round-00.json"} <= files
    assert any(f.endswith(".png") for f in files)
    md = (m.workspace_dir / "reports" / "latest.md").read_text()
    assert f"Tracked as MLflow run `{run.info.run_id}`" in md
    # the dataset version the retrain recorded (issue 32): every labeled frame of every split, named in the model's
    # record, the run and the report
    assert model["dataset_version"] == 1
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
