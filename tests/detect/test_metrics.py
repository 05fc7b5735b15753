"""COCO mAP (pycocotools) and recall at the operating threshold on hand-made boxes."""

from __future__ import annotations

import numpy as np

from kdefect.core.detect_decode import Detections
from kdefect.tasks.detect_metrics import detection_metrics

GT = [np.array([[10, 10, 50, 60], [70, 20, 120, 90]], np.float32), np.array([[5, 5, 30, 30]], np.float32),
      np.zeros((0, 4), np.float32)]
LABELS = [np.array([0, 1]), np.array([1]), np.zeros(0, int)]
SIZES = [(128, 128)] * 3


def _det(boxes, classes, scores):
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, int), np.asarray(scores,
                                                                                                        np.float32))


def test_perfect_predictions_give_map_one(tmp_path):
    dets = [_det(b, c, np.full(len(c), 0.9)) for b, c in zip(GT, LABELS)]
    m = detection_metrics(GT, LABELS, dets, SIZES, ["a", "b"], 0.5, pr_dir=tmp_path)
    assert m["map50"] == 1.0 and abs(m["map"] - 1.0) < 1e-9
    assert m["recall"] == 1.0 and m["missed"] == 0 and m["false_positives"] == 0
    assert abs(m["per_class"]["a"]["ap50"] - 1.0) < 1e-9 and m["per_class"]["b"]["recall"] == 1.0
    assert (tmp_path / "pr_curves" / "a.png").stat().st_size > 1000


def test_missed_wrong_class_and_low_score_are_counted():
    dets = [_det(GT[0][:1], [0], [0.9]),                    # second box of image 0 missed
            _det([[5, 5, 30, 30]], [0], [0.9]),             # right place, wrong class -> FP + miss
            _det([[1, 1, 9, 9], [40, 40, 60, 60]], [1, 1], [0.8, 0.1])]  # FP on an empty image (+ one below thr)
    m = detection_metrics(GT, LABELS, dets, SIZES, ["a", "b"], 0.5)
    assert m["recall"] == 1 / 3 and m["missed"] == 2
    assert m["per_class"]["b"]["missed"] == 2 and m["per_class"]["b"]["false_positives"] == 1
    assert m["false_positives"] == 2
    assert m["per_class"]["a"]["ap50"] < 1.0 and m["per_class"]["b"]["ap50"] == 0.0
    assert 0 < m["map50"] < 1
    sweep = {r["score_threshold"]: r for r in m["threshold_sweep"]}
    assert sweep[0.05]["recall"] == 1 / 3 and sweep[0.05]["false_positives_per_image"] == 1.0  # the 0.1 FP counts
    assert sweep[0.55]["false_positives_per_image"] == 2 / 3
    recalls = [r["recall"] for r in m["threshold_sweep"]]
    assert recalls == sorted(recalls, reverse=True)  # a higher threshold never finds more


def test_no_detections_at_all():
    dets = [_det(np.zeros((0, 4)), [], []) for _ in GT]
    m = detection_metrics(GT, LABELS, dets, SIZES, ["a", "b"], 0.5)
    assert m["recall"] == 0.0 and m["missed"] == 3 and m["map50"] == 0.0
