"""How many ground-truth boxes can RetinaNet learn from? Anchor coverage per anchor setting (numpy, no training).

An anchor is positive for a box when their IoU reaches ``detect.match_iou[1]``; a box with no such anchor gets no
positive anchor of its own (keras-cv's matcher does not force one), so the detector never learns to find it.
For each setting this counts, over every box of a VOC data set squashed to the input size, the share that has at
least one positive anchor, overall and per class. Writes ``tools/results/<out>.{json,md}``.

    python tools/anchor_coverage.py --data /path/to/neu-det --size 160 --out anchor_coverage
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _bench import RESULTS, header, md_table, write_md

from kdefect.core import detect_decode as dd
from kdefect.data.boxes import scale_boxes
from kdefect.data.voc import ImageLookup, parse_voc, voc_annotation_dir
from kdefect.utils.io import write_json

SETTINGS = {  # name -> (anchor sizes, aspect ratios, positive IoU)
    "default": (dd.RETINA_SIZES, dd.RETINA_RATIOS, 0.5),
    "ratios5": (dd.RETINA_SIZES, (0.25, 0.5, 1.0, 2.0, 4.0), 0.5),
    "iou34": (dd.RETINA_SIZES, dd.RETINA_RATIOS, 0.4),
    "sizes16": ((16.0, 32.0, 64.0, 128.0, 256.0), dd.RETINA_RATIOS, 0.5),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a VOC folder (images/ + annotations/)")
    ap.add_argument("--size", type=int, default=160, help="square detector input (boxes are squashed to it)")
    ap.add_argument("--out", default="anchor_coverage")
    args = ap.parse_args()
    root = Path(args.data)
    ann = voc_annotation_dir(root)
    if ann is None:
        print(f"no annotations/ under {root}", file=sys.stderr)
        return 2
    lookup = ImageLookup(root)
    boxes, labels = [], []
    for xml in sorted(ann.glob("*.xml")):
        rec = parse_voc(xml, lookup=lookup)
        boxes.append(scale_boxes(rec.boxes, (rec.width, rec.height), (args.size, args.size)))
        labels += rec.labels
    gt = np.concatenate(boxes)
    rows = []
    for name, (sizes, ratios, pos) in SETTINGS.items():
        best = dd.best_anchor_iou(gt, (args.size, args.size), sizes, ratios)  # what `kdefect data check` warns on
        covered = best >= pos
        per = defaultdict(list)
        for c, ok in zip(labels, covered):
            per[c].append(ok)
        rows.append({"setting": name, "anchor_sizes": list(sizes), "aspect_ratios": list(ratios), "positive_iou": pos,
                     "anchors": len(dd.retina_anchors((args.size, args.size), sizes=sizes, ratios=ratios)), "boxes_covered": float(covered.mean()),
                     "median_best_iou": float(np.median(best)),
                     **{f"covered_{c}": float(np.mean(v)) for c, v in sorted(per.items())}})
        print(rows[-1], flush=True)
    res = {**header(), "data": str(root), "size": args.size, "boxes": len(gt), "rows": rows}
    write_json(RESULTS / f"{args.out}.json", res)
    cols = ["setting", "anchors", "positive_iou", "boxes_covered", "median_best_iou",
            *[k for k in rows[0] if k.startswith("covered_")]]
    write_md(RESULTS / f"{args.out}.md", "\n".join([
        f"# RetinaNet anchor coverage: {root.name}, {len(gt)} boxes squashed to {args.size} px", "",
        f"- date: {res['date']}", f"- machine: {res['machine']['cpu']}", f"- command: `{res['command']}`", "",
        "Settings: " + "; ".join(f"**{n}** sizes {list(s)}, ratios {list(r)}, positive IoU {p}"
                                  for n, (s, r, p) in SETTINGS.items()), "",
        md_table(rows, cols),
        "boxes_covered: the share of boxes with at least one anchor at or above the positive IoU (keras-cv's matcher "
        "gives an uncovered box no positive anchor). median_best_iou: each box's best anchor IoU, median over boxes."])
        + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
