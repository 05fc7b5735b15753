"""Choose a trained detector's NMS IoU on its *validation* split, not on test.

Evaluates one finished detection run (float Keras model, numpy decoder, COCO mAP) on its validation split at
each ``detect.iou_threshold`` given, and writes ``tools/results/<out>.{json,md}``. No training; the run folder's
weights and split lists are read as they are.

    python tools/bench_nms.py --run /tmp/det128/bench_yolov8_128 --ious 0.5 0.6 0.7 --out detect_nms
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, header, md_table, write_md

from kdefect.utils.io import write_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished detection run folder")
    ap.add_argument("--ious", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default="detect_nms")
    args = ap.parse_args()

    from kdefect.core.run import RunDir
    from kdefect.tasks.detect import load_detector
    from kdefect.tasks.detect_infer import evaluate_arrays, split_arrays

    run = RunDir.open(args.run)
    model, cfg, classes = load_detector(run)
    arr, _ = split_arrays(cfg, run, None, split=args.split)
    rows = []
    for iou in args.ious:
        cfg.detect.iou_threshold = iou
        m = evaluate_arrays(model, cfg, classes, arr)
        rows.append({"nms_iou": iou, "map50": m["map50"], "map": m["map"], "recall": m["recall"],
                     **{f"ap50_{c}": v["ap50"] for c, v in m["per_class"].items()}})
        print(rows[-1], flush=True)
    res = {**header(), "run": str(run.path), "split": args.split, "images": len(arr.images),
           "trained_iou_threshold": run.config().detect.iou_threshold, "rows": rows}
    write_json(RESULTS / f"{args.out}.json", res)
    cols = ["nms_iou", "map50", "map", "recall", *[f"ap50_{c}" for c in classes]]
    write_md(RESULTS / f"{args.out}.md", "\n".join([
        f"# NMS IoU chosen on the {args.split} split: {Path(args.run).name}", "",
        f"- date: {res['date']}", f"- machine: {res['machine']['cpu']} ({res['machine']['cpu_count']} cores)",
        f"- command: `{res['command']}`", f"- run: `{res['run']}` ({len(arr.images)} {args.split} images; "
        f"trained and shipped with detect.iou_threshold {res['trained_iou_threshold']})", "",
        md_table(rows, cols),
        "mAP with pycocotools at detect.eval_score_threshold; recall at detect.score_threshold. The test split is "
        "not used here, so the setting it picks can be reported on test without bias."]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
