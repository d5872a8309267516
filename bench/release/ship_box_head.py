"""Ship a box head trained on a shipped base's frozen pose weights
(`bench/experiments/person_box/person_box.py --head-out DIR`): the head's checkpoint is checked to hold the base's
keypoint weights unchanged, saved over the base (weights only, half the size, like `bench/release/train_base.py`),
and the base's record gains a ``box_head`` section — how the head was trained and the held-out figures through the
default inference path (flip TTA + refine on the mean of the head's and the keypoint box), overall and per posture.

    python bench/release/ship_box_head.py --head /tmp/iterate-box-head/best.pt [--name lspet_w18s_128] [--localise box_head]

``--localise box_head`` records the inference path that finds the person first (the head's box on the whole frame,
then the pose pass on it): for a head trained with `train.augment.zoom_out`
(`bench/experiments/small_person/small_person.py --train-head`).
Last lines: shipped_pckh05=…, shipped_pckh01=…

``--smoke`` (the test suite's check): the base's own head shipped again (``--head`` defaults to the base), scored on
4 held-out frames, the checkpoint and its record written into the results folder (`ITERATE_BENCH_RESULTS`, else a
temporary one), never into model/weights; with ship_box_head_smoke.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05, upgrade
from iterate.loop.scoring import score  # noqa: E402
from iterate.loop.settings import keypoint_spec  # noqa: E402
from model.checkpoints import load_file, save_atomic  # noqa: E402
from model.infer import load_predictor  # noqa: E402

import _common  # noqa: E402
from _common import REPO, lspet_samples, manifest, per_posture, slim_checkpoint, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--head", help="checkpoint of the box head run (frozen pose weights); required but in --smoke")
    ap.add_argument("--name", default="lspet_w18s_128")
    ap.add_argument("--localise", choices=["frame", "box_head"], default=None, help="record this first-crop path")
    ap.add_argument("--how", default=None, help="how the head was trained (for the record)")
    ap.add_argument("--as", dest="as_name", default=None, help="write a new shipped checkpoint of this name instead")
    ap.add_argument("--smoke", action="store_true", help="4 frames, written into the results folder: the test's check")
    args = ap.parse_args()
    base_path, rec_path = (
        REPO / "model" / "weights" / f"{args.name}.pt",
        REPO / "model" / "weights" / f"{args.name}.json",
    )
    out_dir = base_path.parent  # where the shipped checkpoint goes (smoke: the results folder)
    last_held = 8000
    if args.smoke:
        out_dir = _common.smoke() / "ship_box_head_smoke"
        out_dir.mkdir(parents=True, exist_ok=True)
        args.head, last_held = args.head or str(base_path), 7004
    elif not args.head:
        ap.error("--head is required")
    base, head = load_file(base_path), load_file(args.head)
    moved = [
        k
        for k, v in base["model"].items()
        if not k.startswith("box_head.") and not torch.equal(head["model"][k].to(v.dtype), v)
    ]
    if moved:
        raise SystemExit(f"{args.head}: {len(moved)} keypoint weights differ from {base_path} (e.g. {moved[0]})")
    tmp = out_dir / f".{base_path.name}.candidate"
    slim = slim_checkpoint(base, head["model"])
    if args.localise:
        from model.infer import settings_from_checkpoint

        slim["infer"] = settings_from_checkpoint(base).override(localise=args.localise).to_dict()
    save_atomic(slim, tmp)
    spec = keypoint_spec(manifest())
    held = lspet_samples(7001, last_held)
    pred = load_predictor(tmp).predict(held).keypoints
    s = score(spec, pred, held)
    hist = [h for h in upgrade(head.get("history", [])) if PCKH05 in h]  # a checkpoint of any version
    rec = json.loads(rec_path.read_text())
    rec["box_head"] = {
        "how": args.how
        or "bench/experiments/person_box/person_box.py: train() with model.box_head=true, train.freeze=pose "
        "(keypoint weights unchanged) on LSPET im00001-im05900, val im05901-im06000",
        "localise": args.localise or "frame",
        "steps": head.get("step"),
        "train_seconds": hist[-1]["elapsed_s"] if hist else None,
        "held_out": "LSPET im07001-im08000, the default path: flip TTA + refine on the mean of the head's and the "
        "keypoint box + DARK",
        "held_out_pckh05": s[PCKH05],
        "held_out_pckh01": s[PCKH01],
        "held_out_mean_sms01": s[MEAN_SMS01],
        "held_out_per_posture": per_posture(spec, pred, held),
    }
    out_path, out_rec = out_dir / base_path.name, out_dir / rec_path.name
    if args.as_name:
        out_path = out_dir / f"{args.as_name}.pt"
        out_rec = out_dir / f"{args.as_name}.json"
        rec["derived_from"] = base_path.name
    tmp.replace(out_path)
    out_rec.write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec["box_head"], indent=2))
    if args.smoke:
        figures = {"shipped_pckh05": s[PCKH05], "shipped_pckh01": s[PCKH01]}
        write_result("ship_box_head_smoke", figures, {"checkpoint": str(out_path), "record": str(out_rec)})
        return
    print(f"shipped_pckh05={s[PCKH05]}")
    print(f"shipped_pckh01={s[PCKH01]}")


if __name__ == "__main__":
    main()
