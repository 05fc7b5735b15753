"""The READY / NOT READY verdict on hand-built predictions (no model, no TF)."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.trust.verdict import Targets, assess, defectives_needed, format_verdict

CLASSES = ["good", "scratch", "spot"]


def _onehot(pred: list[int], conf: float = 0.98) -> np.ndarray:
    p = np.full((len(pred), 3), (1 - conf) / 2)
    p[np.arange(len(pred)), pred] = conf
    return p


def _thresholds(good_min_prob: float = 0.5, review_below: float = 0.0) -> dict:
    return {"temperature": 1.0, "review_below": review_below,
            "decision": {"good_label": "good", "good_min_prob": good_min_prob}}


def test_perfect_model_with_enough_defects_is_ready():
    y = np.array([0] * 100 + [1] * 60 + [2] * 60)
    v = assess(_onehot(list(y)), y, CLASSES, "good", _thresholds())
    assert v["ready"] and v["verdict"] == "READY" and v["reasons"] == []
    assert v["escape_rate"] == 0 and v["escape_upper95"] < 0.05
    assert v["per_class_recall"] == {"good": 1.0, "scratch": 1.0, "spot": 1.0}
    assert "verdict: READY" in format_verdict(v)


def test_all_good_model_is_degenerate_and_says_why():
    y = np.array([0] * 70 + [1] * 15 + [2] * 15)
    v = assess(_onehot([0] * 100), y, CLASSES, "good", _thresholds())
    assert not v["ready"] and v["verdict"] == "NOT READY"
    text = " ".join(v["reasons"])
    assert "never predicts scratch, spot" in text
    assert "every defective test part (30) is passed as good" in text
    assert v["escape_rate"] == 1.0
    assert "NOT READY" in format_verdict(v)


def test_small_test_set_cannot_prove_the_escape_bound():
    y = np.array([0] * 40 + [1] * 10 + [2] * 10)
    v = assess(_onehot(list(y)), y, CLASSES, "good", _thresholds())
    assert not v["ready"]
    assert any("20 defective test parts" in r and f">= {defectives_needed(0.05)}" in r for r in v["reasons"])
    assert defectives_needed(0.05) == 72  # 0 escapes in 72 gives a two-sided 95% upper bound just under 5%


def test_each_missed_target_is_named():
    y = np.array([0] * 100 + [1] * 80 + [2] * 80)
    pred = list(y)
    pred[:40] = [1] * 40  # 40% of good parts rejected
    pred[100:130] = [2] * 30  # scratch recall 50/80
    v = assess(_onehot(pred, conf=0.6), y, CLASSES, "good", _thresholds(review_below=0.7))
    text = " | ".join(v["reasons"])
    assert "recall below 0.80: good 0.60, scratch 0.62" in text
    assert "false-reject rate 40.0%" in text
    assert "review share 100.0% > 20.0%" in text
    assert not v["ready"]


def test_operating_point_moves_decisions_and_uncalibrated_is_not_ready():
    y = np.array([0] * 100 + [1] * 100)
    p = np.zeros((200, 3))
    p[:, 0] = np.r_[np.full(100, 0.9), np.full(100, 0.6)]  # defects look fairly good
    p[:, 1] = 1 - p[:, 0]
    assert assess(p, y, CLASSES, "good", _thresholds(0.5))["escape_rate"] == 1.0
    v = assess(p, y, CLASSES, "good", _thresholds(0.7))
    assert v["escape_rate"] == 0.0 and v["false_reject_rate"] == 0.0
    raw = assess(p, y, CLASSES, "good", None)
    assert not raw["ready"] and "not calibrated" in raw["reasons"][0]


def test_no_good_class_judges_recall_and_review_only():
    y = np.array([0, 1, 2] * 30)
    v = assess(_onehot(list(y)), y, CLASSES, None, {"temperature": 1.0, "review_below": 0.5},
               Targets(min_class_recall=0.9))
    assert v["ready"] and "escape_rate" not in v
    assert "note: no good class (data.good_label null): no escape rate" in format_verdict(v)  # said, not implied
    named = format_verdict(assess(_onehot(list(y)), y, CLASSES, "ok", {"review_below": 0.5}))
    assert "data.good_label 'ok', not a class here" in named and "set data.good_label to it" in named
    with_good = assess(_onehot(list(y)), y, CLASSES, "good", _thresholds())
    assert "notes" not in with_good and "note:" not in format_verdict(with_good)


@pytest.mark.parametrize("upper", [0.01, 0.05, 0.1])
def test_defectives_needed_matches_clopper_pearson(upper):
    from kdefect.trust.operating_point import clopper_pearson

    n = defectives_needed(upper)
    assert clopper_pearson(0, n)[1] <= upper < clopper_pearson(0, n - 1)[1]


def test_a_defect_sent_to_review_is_not_an_escape():
    y = np.array([0] * 100 + [1] * 100)
    p = np.zeros((200, 3))
    p[:, 0] = np.r_[np.full(100, 0.99), np.full(99, 0.01), 0.6]  # one defect passed, but with low confidence
    p[:, 1] = 1 - p[:, 0]
    v = assess(p, y, CLASSES, "good", _thresholds(0.5, review_below=0.7))
    assert v["model_escapes"] == 1 and v["escapes"] == 0  # the inspector sees it
    v = assess(p, y, CLASSES, "good", _thresholds(0.5, review_below=0.0))
    assert v["model_escapes"] == v["escapes"] == 1
