"""`iterate simulate` on LSPET images the base model never saw: pool im06001–im06900 (labels hidden),
val im06901–im07000 (gap focus), test im07001–im07400; rounds follow the 10/40/50 % chunk plan of D = 300.

    python bench/simulate_lspet.py [--seeds 0,1] [--minutes 0.75] [--base CHECKPOINT] [--out simulate-lspet]
Last lines: one `<strategy>_labels_to_reach_random=…` per strategy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LSPET, REPO  # noqa: E402


def subset(coco: dict, lo: int, hi: int, path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "images": [i for i in coco["images"] if lo <= i["id"] <= hi],
                "annotations": [a for a in coco["annotations"] if lo <= a["image_id"] <= hi],
                "categories": coco["categories"],
            }
        )
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--minutes", type=float, default=0.75)
    ap.add_argument("--budgets", default="30,120,150")
    ap.add_argument("--out", type=Path, default=Path("simulate-lspet"))
    ap.add_argument(
        "--base", default="", help="checkpoint each round fine-tunes from (default: the manifest's model.base)"
    )
    args = ap.parse_args()
    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = [
            subset(coco, 6001, 6900, d / "pool.json"),
            subset(coco, 6901, 7000, d / "val.json"),
            subset(coco, 7001, 7400, d / "test.json"),
        ]
        cmd = [
            str(Path(sys.executable).with_name("iterate")),
            "simulate",
            "-m",
            str(REPO / "data_manifest.yaml"),
            "--pool",
            str(files[0]),
            "--val",
            str(files[1]),
            "--test",
            str(files[2]),
            "--images",
            str(LSPET),
            "--budgets",
            args.budgets,
            "--seeds",
            args.seeds,
            "--minutes",
            str(args.minutes),
            "--out",
            str(args.out),
        ]
        if args.base:
            cmd += ["--base", args.base]
        subprocess.run(cmd, check=True)
    s = json.loads((args.out / "simulate.json").read_text())
    for name, c in s["strategies"].items():
        print(
            f"{name}: labels {c['labels']} PCKh@0.5 {[round(x, 1) for x in c['pckh05']]} "
            f"PCKh@0.1 {[round(x, 2) for x in c['pckh01']]}"
        )
    print(f"simulate_wall_s={s['wall_s']}")
    for name, c in s["strategies"].items():
        print(f"{name}_labels_to_reach_random={c.get('labels_to_reach_random_final_pckh05')}")


if __name__ == "__main__":
    main()
