"""The detector's verdict on hand-built scores: image reject threshold, image escape rate, the device's rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdefect.core import detect_decode as dd
from kdefect.trust.operating_point import choose_reject_threshold
from kdefect.trust.verdict import Targets, assess_images, format_verdict

CLASSES = ["scratch", "spot"]


def _contains(n_scratch: int, n_spot: int, n_good: int) -> np.ndarray:
    rows = [[True, False]] * n_scratch + [[False, True]] * n_spot + [[False, False]] * n_good
    return np.asarray(rows, bool).reshape(-1, 2)


def test_threshold_is_the_highest_that_keeps_val_escapes_under_target():
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.05, 0.6, 0.7, 0.95, 0.5, 0.02, 0.01])
    defective = np.array([True] * 10 + [False] * 2)
    # 10 defective: 10 % allows 1 escape (the lowest, 0.05), so the threshold is the next lowest, 0.1
    thr = choose_reject_threshold(scores, defective, 0.10)
    assert thr == pytest.approx(0.1)
    escapes = int((scores[defective] < thr).sum())
    assert escapes == 1
    # 1 % of 10 allows none: every defective image must reach the threshold
    assert choose_reject_threshold(scores, defective, 0.01) == pytest.approx(0.05)
    assert (scores[defective] >= 0.05).all()


def test_threshold_with_ties_never_exceeds_the_target():
    scores = np.array([0.4, 0.4, 0.4, 0.9])
    thr = choose_reject_threshold(scores, np.ones(4, bool), 0.25)
    assert (scores < thr).sum() <= 1


def test_no_defective_validation_image_gives_no_threshold():
    assert choose_reject_threshold(np.array([0.1, 0.2]), np.zeros(2, bool), 0.01) is None


def test_perfect_detector_with_enough_defective_images_is_ready():
    contains = _contains(60, 60, 50)
    scores = np.where(contains.any(1), 0.9, 0.05)
    v = assess_images(scores, contains, CLASSES, 0.5, Targets())
    assert v["ready"] and v["verdict"] == "READY" and v["reasons"] == []
    assert v["escapes"] == 0 and v["defective"] == 120 and v["escape_upper95"] < 0.05
    assert v["false_rejects"] == 0 and v["good"] == 50
    assert v["per_class_recall"] == {"scratch": 1.0, "spot": 1.0}
    text = format_verdict(v)
    assert "reject at box score" in text and ">= 0.5000" in text and "verdict: READY" in text


def test_escapes_and_class_recall_name_the_failure():
    contains = _contains(60, 60, 50)
    scores = np.where(contains.any(1), 0.9, 0.05)
    scores[60:75] = 0.1  # 15 of 60 spot images pass
    v = assess_images(scores, contains, CLASSES, 0.5, Targets())
    assert not v["ready"] and v["escapes"] == 15
    assert v["escape_upper95"] > 15 / 120  # the Clopper-Pearson upper bound lies above the rate
    text = " ".join(v["reasons"])
    assert "image escape rate 15/120" in text and "spot 0.75" in text and "scratch" not in text


def test_rejecting_every_good_image_is_a_false_reject_failure():
    contains = _contains(60, 60, 50)
    v = assess_images(np.full(170, 0.9), contains, CLASSES, 0.5, Targets())
    assert not v["ready"] and v["false_reject_rate"] == 1.0
    assert any("false-reject rate" in r for r in v["reasons"])


def test_small_test_set_cannot_be_ready_and_says_how_many_are_needed():
    contains = _contains(10, 10, 5)
    v = assess_images(np.where(contains.any(1), 0.9, 0.0), contains, CLASSES, 0.5, Targets())
    assert not v["ready"] and "needs >= 72" in " ".join(v["reasons"])


def test_uncalibrated_and_degenerate_detectors_are_not_ready():
    contains = _contains(60, 60, 0)
    v = assess_images(np.full(120, 0.9), contains, CLASSES, None, Targets())
    assert not v["ready"] and "not calibrated" in v["reasons"][0]
    v = assess_images(np.full(120, 0.1), contains, CLASSES, 0.5, Targets())
    assert not v["ready"] and "every defective test image (120) is passed" in v["reasons"][0]
    assert any("false-reject rate not measured" in r for r in v["reasons"][1:])


def test_device_rule_uses_the_best_box_and_the_sidecar_threshold():
    logits = np.full((10, 2), -6.0, np.float32)
    logits[3, 1] = 0.0  # one anchor at sigmoid 0.5
    raw = {"boxes": np.zeros((10, 64), np.float32), "scores": logits}
    score = dd.image_score(raw)
    assert score == pytest.approx(0.5)
    assert dd.rejects(score, {"reject_min_score": 0.4, "score_threshold": 0.9})
    assert not dd.rejects(score, {"reject_min_score": 0.6, "score_threshold": 0.1})
    assert dd.rejects(score, {"score_threshold": 0.25})  # uncalibrated export: the box threshold


def test_sidecar_refuses_a_non_numeric_reject_threshold(tmp_path):
    from kdefect.core.sidecar import parse_sidecar
    from kdefect.errors import ModelIntegrityError

    d = {"sha256": "x", "task": "detect", "labels": ["a"], "input": {"size": [64, 64]},
         "detection": {"architecture": "yolov8", "reject_min_score": 0.3}}
    assert parse_sidecar(json.dumps(d).encode()).detection["reject_min_score"] == 0.3
    d["detection"]["reject_min_score"] = "low"
    with pytest.raises(ModelIntegrityError, match="reject_min_score"):
        parse_sidecar(json.dumps(d).encode())


def test_an_escape_bound_of_zero_is_refused_in_the_config():
    from kdefect.config import load_config
    from kdefect.errors import ConfigError

    with pytest.raises(ConfigError, match="max_escape_upper"):
        load_config(overrides=["trust.targets.max_escape_upper=0"])


def test_no_defect_free_test_image_is_not_ready_because_scrap_is_unmeasured():
    # NEU-DET holds only defective images: a detector that rejects everything has 0 escapes there
    contains = _contains(60, 60, 0)
    v = assess_images(np.full(120, 0.9), contains, CLASSES, 0.5, Targets())
    assert v["escapes"] == 0 and v["good"] == 0
    assert not v["ready"] and "false-reject rate not measured" in " ".join(v["reasons"])
    # a user who accepts any scrap opts out explicitly, and the gap stays a note
    v = assess_images(np.full(120, 0.9), contains, CLASSES, 0.5, Targets(max_false_reject=1.0))
    assert v["ready"] and any("not measured" in n for n in v["notes"])
