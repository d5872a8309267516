"""Train a shipped base model with the project's own commands (`iterate ingest`, `iterate retrain`).

Data: LSPET im00001–im05900 (train) and im05901–im06000 (val, best checkpoint), optionally only the frames
whose `posture` attribute is in --postures; scored afterwards on the held-out im07001–im08000 (overall and per
posture). Writes model/weights/<name>.pt (weights only, half the size) and its record model/weights/<name>.json.

    python bench/release/train_base.py --minutes 60 [--postures upright,leaning] [--name lspet_w18s_128] [--workdir /tmp/base]
        [--set model.heatmap_size=64 --set model.sigma=3]   (manifest fields changed for this run, values read as YAML)
    python bench/release/train_base.py --rescore --name lspet_upright_w18s_128   (only re-score a shipped base's default path)

The record holds the held-out figures of the whole frame (flip TTA, no refine) and of `iterate predict`'s default
path (`load_predictor`: the settings the checkpoint records), both per posture, the training speed in samples/s and
this machine's bare forward speed.

``--smoke`` (the test suite's check): one epoch at batch 2 on im00001–00008 (val im00009–00012), no MLflow, scored
on 4 held-out frames; the checkpoint, its record and the work folder go into the results folder
(`ITERATE_BENCH_RESULTS`, else a temporary one), never into model/weights; with train_base_smoke.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from iterate.core.ledger import Ledger  # noqa: E402
from iterate.core.manifest import load_manifest  # noqa: E402
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05
from iterate.loop.scoring import score  # noqa: E402
from iterate.loop.settings import keypoint_spec  # noqa: E402
from model.checkpoints import model_from_checkpoint, save_atomic  # noqa: E402
from model.codec import DarkCodec  # noqa: E402
from model.infer import Predictor, load_predictor  # noqa: E402

import _common  # noqa: E402
from _common import (  # noqa: E402
    LSPET,
    REPO,
    apply_overrides,
    bare_forward_speed,
    lspet_samples,
    per_posture,
    slim_checkpoint,
    write_result,
)

OUT = REPO / "model" / "weights"  # smoke mode: the results folder
HELD_LAST = 8000  # held out: LSPET im07001–im<HELD_LAST> (smoke: 7004)
SMOKE = False


def subset(coco: dict, lo: int, hi: int, path: Path, postures: set[str] | None = None) -> Path:
    anns = [
        a
        for a in coco["annotations"]
        if lo <= a["image_id"] <= hi and (not postures or a.get("attributes", {}).get("posture") in postures)
    ]
    keep = {a["image_id"] for a in anns}
    sub = {
        "images": [i for i in coco["images"] if i["id"] in keep],
        "annotations": anns,
        "categories": coco["categories"],
    }
    path.write_text(json.dumps(sub))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/iterate-base"))
    ap.add_argument("--postures", default="", help="comma list: train/val only on frames of these postures")
    ap.add_argument("--name", default="lspet_w18s_128")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a manifest field")
    ap.add_argument(
        "--rescore", action="store_true", help="no training: re-score model/weights/<name>.pt's default path"
    )
    ap.add_argument("--smoke", action="store_true", help="1 epoch on 8 frames, out in the results folder: the test")
    args = ap.parse_args()
    global OUT, HELD_LAST, SMOKE
    last_val = 6000
    if args.smoke:
        if args.rescore:
            ap.error("--smoke trains; it does not re-score")
        results = _common.smoke()
        OUT, HELD_LAST, SMOKE, last_val = results / "train_base_smoke", 7004, True, 12
        if args.workdir == ap.get_default("workdir"):
            args.workdir = results / "train_base_smoke_work"
        args.minutes, args.set = 0.5, ["train.batch_size=2", *args.set]
    if args.rescore:
        record_path = OUT / f"{args.name}.json"
        record = json.loads(record_path.read_text())
        record.update(default_path(OUT / f"{args.name}.pt"))
        cfg = record["config"]  # a record written before the script kept the speeds: add them
        if "train_samples_per_s" not in record:
            record["train_samples_per_s"] = round(record["steps"] * cfg["batch_size"] / record["train_seconds"], 1)
        if "bare_forward_images_per_s" not in record:  # measure it on an otherwise idle machine
            record["bare_forward_images_per_s"] = bare_forward_speed(cfg["backbone"], cfg["input_size"])
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        return _print(record)
    postures = {p for p in args.postures.split(",") if p} or None
    last_train = 5800 if postures else 5900  # keep ~100 val frames after the posture filter
    if args.smoke:
        last_train = 8
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    man = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    man.update(
        project="lspet-base",
        workspace=str(wd / "ws"),
        sources=[
            {
                "name": "lspet-train",
                "kind": "coco",
                "path": str(subset(coco, 1, last_train, wd / "train.json", postures)),
                "images": str(LSPET),
                "split": "train",
            },
            {
                "name": "lspet-val",
                "kind": "coco",
                "path": str(subset(coco, last_train + 1, last_val, wd / "val.json", postures)),
                "images": str(LSPET),
                "split": "val",
            },
        ],
    )
    man["model"]["base"] = None  # from scratch
    man["train"].update(epochs=1000, lr=0.003)  # the wall-time limit ends it; the schedule follows the time
    if args.smoke:
        man["train"]["epochs"] = 1
        man["tracking"] = {**man.get("tracking", {}), "mlflow": False}
    man["train"]["replay"] = None  # the demo's replay source is not in this project
    apply_overrides(man, args.set)
    mpath = wd / "data_manifest.yaml"
    mpath.write_text(yaml.safe_dump(man, sort_keys=False))
    iterate = str(Path(sys.executable).with_name("iterate"))
    cmd = [iterate, "retrain", "-m", str(mpath), "--minutes", str(args.minutes)]
    subprocess.run([iterate, "ingest", "-m", str(mpath)], check=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    m = load_manifest(mpath)
    with Ledger(m.workspace_dir) as led:
        rec = led.latest_model()
    model, ck = model_from_checkpoint(rec.path)
    codec = DarkCodec(ck["input_size"], ck["heatmap_size"], ck["sigma"])
    held = lspet_samples(7001, HELD_LAST)
    pred = Predictor(model, codec, m.keypoints.flip_index(), flip=True).predict(held).keypoints
    s = score(keypoint_spec(m), pred, held)
    postures_held = per_posture(keypoint_spec(m), pred, held)
    OUT.mkdir(parents=True, exist_ok=True)
    save_atomic(slim_checkpoint(ck, model.state_dict()), OUT / f"{args.name}.pt")
    record = {
        "command": " ".join(["python", "bench/release/train_base.py", *sys.argv[1:]])
        + f" (iterate retrain -m <base manifest> --minutes {args.minutes})",
        "data": f"LSPET im00001-im{last_train:05d} train, im{last_train + 1:05d}-im{last_val:05d} val (best checkpoint)"
        + (f", only posture in {sorted(postures)}" if postures else ""),
        "held_out": f"LSPET im07001-im{HELD_LAST:05d}, flip TTA + DARK",
        "epochs": rec.metrics.get("epochs"),
        "best_epoch": rec.metrics.get("best_epoch"),
        "steps": rec.metrics.get("steps"),
        "train_seconds": round(wall, 1),
        "machine": f"{os.cpu_count()} CPU cores"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else " (no GPU)"),
        "train_samples_per_s": round((rec.metrics.get("steps") or 0) * man["train"]["batch_size"] / wall, 1),
        "bare_forward_images_per_s": bare_forward_speed(ck["backbone"], ck["input_size"]),
        "config": ck.get("config", {}),
        "val": {k: v for k, v in rec.metrics.items() if k.startswith("val_")},
        "held_out_pckh05": s[PCKH05],
        "held_out_pckh01": s[PCKH01],
        "held_out_mean_sms01": s[MEAN_SMS01],
        "held_out_per_posture": postures_held,
    }
    record.update(default_path(OUT / f"{args.name}.pt"))
    (OUT / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    _print(record)


def default_path(checkpoint: Path) -> dict:
    """Held-out figures of ``checkpoint`` through `iterate predict`'s path (the settings it records)."""
    pred = load_predictor(checkpoint)
    spec = keypoint_spec(load_manifest(REPO / "data_manifest.yaml", check_sources=False))
    held = lspet_samples(7001, HELD_LAST)
    kps = pred.predict(held).keypoints
    s = score(spec, kps, held)
    return {
        "default_path": f"LSPET im07001-im{HELD_LAST:05d} through load_predictor: {pred.settings.describe()}",
        "default_path_pckh05": s[PCKH05],
        "default_path_pckh01": s[PCKH01],
        "default_path_mean_sms01": s[MEAN_SMS01],
        "default_path_per_posture": per_posture(spec, kps, held),
    }


def _print(record: dict) -> None:
    print(json.dumps(record, indent=2))
    figures = {
        "base_pckh05": record["held_out_pckh05"],
        "base_pckh01": record["held_out_pckh01"],
        "base_default_path_pckh05": record["default_path_pckh05"],
        "base_default_path_pckh01": record["default_path_pckh01"],
    }
    if SMOKE:  # the figures as every bench's results file too (the record is in OUT)
        write_result("train_base_smoke", figures, {"record": str(OUT)}, speed=record["bare_forward_images_per_s"])
        return
    for k, v in figures.items():
        print(f"{k}={v}")


if __name__ == "__main__":
    main()
