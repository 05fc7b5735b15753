"""Detection metrics: COCO mAP via pycocotools, recall at the operating threshold, PR curves.

Why pycocotools: mAP has many subtly different definitions; the COCO reference
implementation is the one papers (and NEU-DET baselines) quote.  Recall at the
chosen score threshold is reported beside it because a missed defect is what
costs money on a line: ``missed`` counts ground-truth boxes no detection above
the threshold matches (same class, IoU >= 0.5).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.detect_decode import Detections, iou_matrix
from kdefect.data.boxes import xyxy_to_xywh
from kdefect.utils.io import atomic_path

log = logging.getLogger(__name__)


def _coco(gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], sizes: list[tuple[int, int]],
          classes: list[str]) -> Any:
    from pycocotools.coco import COCO  # lazy: pycocotools loads only to score boxes

    images, anns = [], []
    for i, (b, c, (w, h)) in enumerate(zip(gt_boxes, gt_labels, sizes)):
        images.append({"id": i, "width": int(w), "height": int(h)})
        for box, lab in zip(xyxy_to_xywh(b), np.asarray(c).reshape(-1)):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(lab), "bbox": box.tolist(),
                         "area": float(box[2] * box[3]), "iscrowd": 0})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": k, "name": n} for k, n in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_eval(gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], dets: list[Detections],
              sizes: list[tuple[int, int]], classes: list[str]) -> Any:
    """Run COCOeval (bbox); returns the evaluated object (``.eval['precision']`` etc.) or None without GT."""
    from pycocotools.cocoeval import COCOeval  # lazy: pycocotools loads only to score boxes

    gt = _coco(gt_boxes, gt_labels, sizes, classes)
    res = [{"image_id": i, "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
           for i, d in enumerate(dets) for b, c, s in zip(xyxy_to_xywh(d.boxes), d.classes, d.scores)]
    if not gt.dataset["annotations"]:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(res) if res else _coco([np.zeros((0, 4))] * len(dets), [np.zeros(0)] * len(dets),
                                                sizes, classes)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def recall_at(gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], dets: list[Detections], k: int,
              threshold: float, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (found, total, false positives) at ``threshold``: greedy, best score first, one match per box."""
    found, total, fps = np.zeros(k, int), np.zeros(k, int), np.zeros(k, int)
    for b, c, d in zip(gt_boxes, gt_labels, dets):
        c = np.asarray(c, int).reshape(-1)
        total += np.bincount(c, minlength=k)
        keep = d.scores >= threshold
        db, dc, ds = d.boxes[keep], d.classes[keep], d.scores[keep]
        used = np.zeros(len(c), bool)
        ious = iou_matrix(db, b) if len(db) and len(c) else np.zeros((len(db), len(c)))
        for j in np.argsort(-ds, kind="stable"):
            cand = np.where((c == dc[j]) & ~used & (ious[j] >= iou))[0] if len(c) else []
            if len(cand):
                used[cand[np.argmax(ious[j, cand])]] = True
            else:
                fps[dc[j]] += 1
        found += np.bincount(c[used], minlength=k)
    return found, total, fps


SWEEP = (0.05, 0.1, 0.15, 0.25, 0.4, 0.55)


def threshold_sweep(gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], dets: list[Detections],
                    classes: list[str], thresholds: tuple[float, ...] = SWEEP) -> list[dict[str, Any]]:
    """Recall, missed boxes and false positives per image at several score thresholds.

    Why: missed defects are what the line pays for, and one global threshold
    can leave a faint class (NEU's crazing) almost unfound while its AP is
    fine; this table shows what lowering ``detect.score_threshold`` buys.
    """
    rows = []
    n = max(len(dets), 1)
    for t in thresholds:
        found, total, fps = recall_at(gt_boxes, gt_labels, dets, len(classes), t)
        rows.append({"score_threshold": float(t),
                     "recall": float(found.sum() / total.sum()) if total.sum() else None,
                     "missed": int(total.sum() - found.sum()), "false_positives_per_image": float(fps.sum() / n),
                     "per_class_recall": {c: (float(found[j] / total[j]) if total[j] else None)
                                          for j, c in enumerate(classes)}})
    return rows


def detection_metrics(gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray], dets: list[Detections],
                      sizes: list[tuple[int, int]], classes: list[str], score_threshold: float,
                      pr_dir: str | Path | None = None) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95 (overall and per class), recall / missed / FP at ``score_threshold``."""
    k = len(classes)
    ev = coco_eval(gt_boxes, gt_labels, dets, sizes, classes)
    found, total, fps = recall_at(gt_boxes, gt_labels, dets, k, score_threshold)
    per_class: dict[str, Any] = {}
    prec = ev.eval["precision"] if ev is not None else None  # (T iou, R recall, K, A area, M maxdets)
    for j, name in enumerate(classes):
        ap50 = ap = -1.0
        if prec is not None:
            p50, pall = prec[0, :, j, 0, -1], prec[:, :, j, 0, -1]
            ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else -1.0
            ap = float(pall[pall > -1].mean()) if (pall > -1).any() else -1.0
        per_class[name] = {"ap50": ap50, "ap": ap, "recall": float(found[j] / total[j]) if total[j] else None,
                           "missed": int(total[j] - found[j]), "false_positives": int(fps[j]), "boxes": int(total[j])}
    out = {
        "map50": float(ev.stats[1]) if ev is not None else -1.0,
        "map": float(ev.stats[0]) if ev is not None else -1.0,
        "score_threshold": float(score_threshold),
        "recall": float(found.sum() / total.sum()) if total.sum() else None,
        "missed": int(total.sum() - found.sum()), "false_positives": int(fps.sum()),
        "gt_boxes": int(total.sum()), "images": len(dets), "per_class": per_class, "classes": list(classes),
        "threshold_sweep": threshold_sweep(gt_boxes, gt_labels, dets, classes),
    }
    if pr_dir is not None and prec is not None:
        out["pr_curves"] = plot_pr_curves(prec, classes, Path(pr_dir))
    return out


def plot_pr_curves(precision: np.ndarray, classes: list[str], out_dir: Path) -> list[str]:
    """One PNG per class: precision vs recall at IoU 0.5 (COCO's 101-point interpolation)."""
    import matplotlib  # lazy: matplotlib loads only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only when a plot is drawn

    recall = np.linspace(0, 1, precision.shape[1])
    written = []
    for j, name in enumerate(classes):
        p = precision[0, :, j, 0, -1]
        fig, ax = plt.subplots(figsize=(4, 3.5))
        ax.plot(recall[p > -1], p[p > -1])
        ap = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"{name}: AP@0.5 = {ap:.3f}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "pr_curves" / f"{name}.png"
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=80, format="png")
        plt.close(fig)
        written.append(str(path.relative_to(out_dir)))
    return written
