"""How `iterate export` scales (issue 32): a synthetic ledger of N labeled frames over real LSPET image paths
(keypoints and strata of the real LSPET labels, cycled; 80 % pool, 10 % val, 10 % test), exported as COCO with
``--images none`` — the version recorded (hashed in one ledger transaction) and the three split files written —
beside the time to read the same rows back from the ledger without writing anything, and the peak memory of each.

Each measurement runs in a fresh process (its peak RSS is the figure): memory flat in N means the export streams.
Goal: 100,000 frames in ≤ 10 s.

    python bench/speed/export_scale.py            # 10k, 30k, 100k frames → bench/results/export_scale.json
    python bench/speed/export_scale.py --smoke    # 1k, 3k (the test suite's check) → export_scale_smoke.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo

import _common
from _common import LSPET, REPO, bare_forward_speed, write_result


def _manifest(ws: Path) -> Path:
    import yaml

    d = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    d["train"].pop("replay", None)
    d.update(project="export-bench", workspace=str(ws), sources=[])
    d["model"]["base"] = None
    p = ws.parent / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def build(ws: Path, n: int) -> Path:
    """A ledger of ``n`` frames (real LSPET paths and labels, cycled), written through the ledger's own methods."""
    from iterate.core.ledger import Frame, Ledger

    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    ims = {i["id"]: i for i in coco["images"]}
    anns = sorted(coco["annotations"], key=lambda a: a["image_id"])
    p = _manifest(ws)
    with Ledger(ws) as led:
        for start in range(0, n, 5000):
            with led.transaction():
                for i in range(start, min(n, start + 5000)):
                    a = anns[i % len(anns)]
                    im = ims[a["image_id"]]
                    split = "val" if i % 10 == 8 else "test" if i % 10 == 9 else "pool"
                    fid = f"{i:016x}"
                    led.add_frame(
                        Frame(
                            fid,
                            str(LSPET / im["file_name"]),
                            f"src{i % 4}",
                            None,
                            None,
                            im["width"],
                            im["height"],
                            f"h{i}",
                            i,
                            split,
                        )
                    )
                    k = a["keypoints"]
                    kps = [[float(k[j]), float(k[j + 1]), int(k[j + 2])] for j in range(0, len(k), 3)]
                    led.add_label(fid, kps, source="coco", attributes=a.get("attributes") or {}, annotator="bench")
    return p


def measure(manifest: Path, what: str, out: Path) -> dict:
    """In this (fresh) process, one of: ``export`` (the version recorded, the files written, as `iterate export
    --images none`), ``read`` (the same rows streamed from the ledger, nothing written) or ``list`` (the labels as
    the list every other command reads them into) → seconds and the process's peak RSS."""
    from iterate.core.ledger import Ledger
    from iterate.core.manifest import load_manifest
    from iterate.loop.export import export

    m = load_manifest(manifest)
    with Ledger(m.workspace_dir) as led:
        t0 = time.perf_counter()
        if what == "export":
            res = export(m, led, out, images="none")
            n = sum(res.files.values())
        elif what == "read":
            n = sum(1 for _ in led.iter_current_labels())
        else:
            n = len(led.current_labels())
        dt = time.perf_counter() - t0
    return {
        "rows": n,
        "s": round(dt, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(manifest: Path, what: str, out: Path) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, "--measure", str(manifest), "--what", what, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        raise SystemExit(r.stdout + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--smoke", action="store_true", help="1,000 and 3,000 frames: the test suite's check")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--what", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.what, Path(args.out))))
        return
    if args.smoke:
        _common.smoke()
    sizes = [1000, 3000] if args.smoke else [int(x) for x in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            d = Path(tmp) / f"n{n}"
            d.mkdir()
            t0 = time.perf_counter()
            manifest = build(d / "ws", n)
            build_s = time.perf_counter() - t0
            ex = _child(manifest, "export", d / "out")
            rd = _child(manifest, "read", d / "out")
            ls = _child(manifest, "list", d / "out")
            rec = {
                "frames": n,
                "annotations": ex["rows"],
                "export_s": ex["s"],
                "peak_rss_mib": ex["peak_rss_mib"],
                "read_s": rd["s"],
                "read_peak_rss_mib": rd["peak_rss_mib"],
                "list_s": ls["s"],
                "list_peak_rss_mib": ls["peak_rss_mib"],
                "files_mib": round(sum(f.stat().st_size for f in (d / "out").rglob("*") if f.is_file()) / 2**20, 2),
                "build_ledger_s": round(build_s, 1),
            }
            runs.append(rec)
            print(
                f"{n} frames: export {rec['export_s']:.2f} s (peak {rec['peak_rss_mib']:.0f} MiB); the same rows read "
                f"back {rec['read_s']:.2f} s (peak {rec['read_peak_rss_mib']:.0f} MiB); as a list "
                f"{rec['list_s']:.2f} s (peak {rec['list_peak_rss_mib']:.0f} MiB)",
                flush=True,
            )
    last, first = runs[-1], runs[0]
    figures = {
        f"export_{last['frames']}_s": last["export_s"],
        f"read_{last['frames']}_s": last["read_s"],
        f"list_peak_rss_{last['frames']}_mib": last["list_peak_rss_mib"],
        f"export_peak_rss_{first['frames']}_mib": first["peak_rss_mib"],
        f"export_peak_rss_{last['frames']}_mib": last["peak_rss_mib"],
        "goal_100k_le_10s": (last["export_s"] <= 10.0) if last["frames"] == 100_000 else None,
    }
    details = {
        "runs": runs,
        "protocol": "synthetic ledger rows over real LSPET image paths and labels (cycled), SQLite, `export("
        "images='none')` as `iterate export --images none` runs it (version hashed and recorded, three COCO files "
        "written); read = the same rows streamed from the ledger, nothing written; list = Ledger.current_labels() (the list "
        "other commands read labels into); each in a fresh process, its peak RSS",
    }
    write_result(
        "export_scale_smoke" if args.smoke else "export_scale", figures, details, speed=bare_forward_speed(seconds=0.5)
    )


if __name__ == "__main__":
    main()
