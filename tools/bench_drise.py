"""D-RISE cost on an INT8 YOLOv8 (yolo_v8_tiny) .tflite at 64 and 128 px, with the default settings.

Trains the smallest detector for a few steps on kdefect's synthetic VOC defects at each size (the cost of an
invoke does not depend on how well it is trained), exports it INT8 as `kdefect tflite` does, then explains the
top box of a few defect images with D-RISE through the device's runner and decoder: seconds per image, model
images per image, and how much of it is the bare interpreter (the rest: masking, decoding, NMS, similarity).

    nice -n 10 python tools/bench_drise.py --out tools/results/drise
Writes <out>.json and <out>.md (command, date, machine, every number).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import header, md_table

from kdefect.utils.io import write_json, write_text

NOTE = ("\nThe detectors are trained for 3 steps only: the cost of an invoke does not depend on the weights, but an "
        "untrained head keeps many weak boxes (`boxes_kept_unmasked`), so decoding and NMS cost more than for a "
        "trained model. `interpreter_share`: bare invokes / D-RISE seconds; the rest is the device's numpy decoder "
        "(anchors, NMS) run once per masked image, masking and the similarity.\n")


def exported_detector(size: int, work: Path) -> tuple[Path, Path]:
    """A few-step yolo_v8_tiny run at ``size`` px, exported INT8 (with its sidecar), and its data root."""
    from kdefect import fit
    from kdefect.config import SyntheticConfig, load_config
    from kdefect.data.synthetic import materialize_synthetic
    from kdefect.export import export_run

    root = materialize_synthetic(SyntheticConfig(n_per_class=8, size=size, seed=1), "voc", work / "cache")
    cfg = load_config(overrides=[
        "task=detect", f"name=drise{size}", f"runs_dir={work / 'runs'}", f"data.source=voc:{root}",
        f"data.image_size=[{size},{size}]", "data.batch_size=8", "detect.backbone=yolo_v8_tiny", "detect.jitter=[]",
        "detect.score_threshold=0.05", "train.epochs=1", "train.steps_per_epoch=3"])
    run = fit(cfg, quiet=True)
    return Path(export_run(str(run.path), out=work / f"det{size}.tflite", allow_unready=True)["model"]), root


def measure(model: Path, images: list[Path], masks: int) -> dict:
    from kdefect.trust.explain_drise import drise_map
    from kdefect.trust.model_fn import TFLiteDetector
    from kdefect.trust.saliency_settings import ExplainSettings

    fn = TFLiteDetector(model)
    settings = ExplainSettings(drise_masks=masks)
    x = [fn.load(f) for f in images]
    fn(x[0][None])  # warm-up
    t, calls, kept = [], [], []
    for im in x:
        s = drise_map(fn, im, settings)
        t.append(s.seconds)
        calls.append(s.model_images)
        kept.append(len(s.detections.boxes))
    t0 = time.perf_counter()
    for _ in range(50):
        fn.runner(x[0])
    invoke_ms = (time.perf_counter() - t0) / 50 * 1000
    return {"size": fn.size[0], "masks": masks, "cells": settings.drise_cells, "keep": settings.drise_keep,
            "images": len(x), "s_per_image": round(float(np.mean(t)), 3), "s_max": round(float(np.max(t)), 3),
            "model_images_per_image": float(np.mean(calls)), "invoke_ms": round(invoke_ms, 3),
            "interpreter_share": round(invoke_ms * float(np.mean(calls)) / 1000 / float(np.mean(t)), 3),
            "boxes_kept_unmasked": float(np.mean(kept))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contention", default="", help="what else shared the CPU, if anything (said in the results)")
    ap.add_argument("--out", default="tools/results/drise")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--masks", type=int, default=1000)
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model, root = exported_detector(size, Path(tmp))
            imgs = [p for p in sorted((root / "images").glob("*.png")) if "good" not in p.name][: args.images]
            rows.append(measure(model, imgs, args.masks))
            print(rows[-1], flush=True)
    result = {**header(), "rows": rows}
    write_json(Path(args.out).with_suffix(".json"), result)
    cols = ["size", "masks", "cells", "keep", "images", "s_per_image", "s_max", "model_images_per_image",
            "invoke_ms", "interpreter_share", "boxes_kept_unmasked"]
    write_text(Path(args.out).with_suffix(".md"),
               f"# D-RISE cost (INT8 yolo_v8_tiny .tflite)\n\nCommand: `{result['command']}`  \nDate: {result['date']}  \n"
               f"Machine: {result['machine']['machine']}, {result['machine']['cpu_count']} cores "
               f"({result['machine']['cpu']}), "
               f"{'shared with other jobs: ' + args.contention if args.contention else 'otherwise idle'}\n\n" + md_table(rows, cols) + NOTE)


if __name__ == "__main__":
    main()
