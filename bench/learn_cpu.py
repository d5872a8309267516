"""The CPU default recipe for a fixed wall time on LSPET im00001–im02000, scored on im07001–im08000
(flip TTA + DARK), beside the mean-pose baseline (the mean training pose pasted into each frame's box).

    python bench/learn_cpu.py [--minutes 10]
Last lines: cpu10_pckh05=…, cpu10_pckh01=…, mean_pose_pckh05=…
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lspet import lspet_samples, manifest  # noqa: E402

from model.checkpoints import model_from_checkpoint  # noqa: E402
from model.codec import DarkCodec  # noqa: E402
from model.evaluate import gt_arrays, score  # noqa: E402
from model.geometry import image_box  # noqa: E402
from model.infer import Predictor  # noqa: E402
from model.train import train  # noqa: E402


def mean_pose_predictions(train_s, test_s, sizes_train, sizes_test) -> np.ndarray:
    """Mean pose in whole-frame box coordinates, pasted into each test frame's box."""
    acc, cnt = 0.0, 0.0
    for s, (w, h) in zip(train_s, sizes_train):
        c, side = image_box(w, h)
        rel = (s.keypoints[:, :2] - np.array(c)) / side
        v = (s.keypoints[:, 2] > 0)[:, None]
        acc = acc + np.where(v, rel, 0)
        cnt = cnt + v
    mean = acc / np.maximum(cnt, 1)
    out = []
    for w, h in sizes_test:
        c, side = image_box(w, h)
        out.append(np.array(c) + mean * side)
    return np.stack(out)


def _sizes(samples):
    import cv2

    return [cv2.imread(s.path).shape[1::-1] for s in samples]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--last", type=int, default=2000)
    args = ap.parse_args()
    m = manifest()
    tr, te = lspet_samples(args.first, args.last), lspet_samples(7001, 8000)
    print(f"train {len(tr)} LSPET images, test {len(te)}; {m.model.backbone} {m.model.input_size}² "
          f"→ {m.model.heatmap_size}², batch {m.train.batch_size}, lr {m.train.lr}, {args.minutes} min", flush=True)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        r = train(m, tr, [], d, epochs=1000, time_limit_s=args.minutes * 60,
                  on_epoch=lambda rec: print(f"epoch {rec['epoch']} step {rec['step']} loss {rec['loss']:.3f} "
                                             f"t {rec['elapsed_s']:.0f}s", flush=True))
        train_s = time.time() - t0
        model, _ = model_from_checkpoint(r.last)
    codec = DarkCodec(m.model.input_size, m.model.heatmap_size, m.model.sigma)
    pred = Predictor(model, codec, m.keypoints.flip_index(), flip=True).predict(te).keypoints
    res = score(m, pred, te)
    plain = score(m, Predictor(model, codec, m.keypoints.flip_index(), flip=False).predict(te).keypoints, te)
    mp = score(m, mean_pose_predictions(tr, te, _sizes(tr), _sizes(te)), te)
    gt, vis = gt_arrays(te)
    zero_loss = float(np.mean([w for s in tr for w in (s.keypoints[:, 2] > 0)]))  # for the record only
    print(f"steps={r.steps} samples_per_s={r.steps * m.train.batch_size / train_s:.1f} final_loss={r.history[-1]['loss']:.3f}")
    print(f"no_flip_pckh05={plain['pckh05']:.2f} no_flip_pckh01={plain['pckh01']:.2f} labeled_share={zero_loss:.3f}")
    print(f"mean_sms01={res['mean_sms01']:.2f} mean_pose_pckh01={mp['pckh01']:.2f}")
    print(f"cpu10_pckh05={res['pckh05']:.2f}")
    print(f"cpu10_pckh01={res['pckh01']:.2f}")
    print(f"mean_pose_pckh05={mp['pckh05']:.2f}")


if __name__ == "__main__":
    main()
