"""Calibration, review threshold, operating point and OOD on constructed data (fast, numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.trust import calibrate, ood, operating_point, uncertainty


def _overconfident(n: int = 8000, k: int = 4, seed: int = 0):
    """Logits that are well calibrated at T=1, then scaled x5: a deliberately over-confident model."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, np.sqrt(2.0), (n, k))
    logits[np.arange(n), y] += 2.0  # Gaussian shift mu, variance s2: posterior = softmax(mu / s2 * z) = softmax(z)
    return logits * 5.0, y


def test_temperature_scaling_lowers_ece_on_overconfident_model():
    logits, y = _overconfident()
    val, test = slice(0, 4000), slice(4000, None)
    t = calibrate.fit_temperature(logits[val], y[val])
    assert 4.0 < t < 6.0  # recovers roughly the x5 scaling
    before = calibrate.expected_calibration_error(calibrate.apply_temperature(logits[test], 1.0), y[test])
    after = calibrate.expected_calibration_error(calibrate.apply_temperature(logits[test], t), y[test])
    assert before > 0.1
    assert after < 0.03 and after < before / 4
    # argmax (the decision) never changes
    assert (calibrate.apply_temperature(logits, t).argmax(1) == logits.argmax(1)).all()
    assert calibrate.nll(logits[test], y[test], t) < calibrate.nll(logits[test], y[test], 1.0)


def test_ece_known_value_and_reliability_plot(tmp_path):
    probs = np.array([[0.9, 0.1]] * 10)
    y = np.array([0] * 7 + [1] * 3)  # confidence 0.9, accuracy 0.7
    assert calibrate.expected_calibration_error(probs, y) == pytest.approx(0.2)
    p = calibrate.plot_reliability(probs, y, tmp_path / "r.png", probs)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 10, 0.0, 0.3084971),      # rule of three territory; exact value
    (0, 300, 0.0, 0.01222),       # "0 escapes in 300" only proves < 1.22%
    (5, 100, 0.01643, 0.11284),
    (10, 10, 0.6915029, 1.0),
])
def test_clopper_pearson_known_values(k, n, lo, hi):
    got = operating_point.clopper_pearson(k, n)
    assert got[0] == pytest.approx(lo, abs=2e-5)
    assert got[1] == pytest.approx(hi, abs=2e-5)


def test_wilson_contains_point_and_is_narrower_than_cp():
    lo, hi = operating_point.wilson(5, 100)
    clo, chi = operating_point.clopper_pearson(5, 100)
    assert lo < 0.05 < hi and (hi - lo) < (chi - clo)


def test_operating_point_meets_escape_target_on_validation():
    rng = np.random.default_rng(1)
    n, k, good = 2000, 4, 0
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1.2, (n, k))
    logits[np.arange(n), y] += 2.0
    probs = calibrate.apply_temperature(logits, 1.0)
    argmax_escape = ((probs.argmax(1) == good) & (y != good)).sum() / (y != good).sum()
    for target in (0.0, 0.005, 0.02):
        thr = operating_point.choose_threshold(probs[:, good], y, good, target)
        r = operating_point.evaluate_threshold(probs, y, good, thr)
        assert r["escape_rate"] <= target + 1e-12
        assert r["escape_rate_ci95"][0] <= r["escape_rate"] <= r["escape_rate_ci95"][1]
        assert 0 < r["false_reject_rate"] < 1  # the cost is reported
    assert argmax_escape > 0.02  # so the threshold really had work to do
    rows = operating_point.escape_table(probs, y, good, targets=(0.0, 0.05))
    assert rows[0]["false_reject_rate"] >= rows[1]["false_reject_rate"]


def test_risk_coverage_monotone_and_review_threshold_meets_target():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.3, 1.0, 4000)
    correct = rng.uniform(size=4000) < conf  # higher confidence, fewer errors
    rc = uncertainty.risk_coverage(conf, correct)
    assert np.all(np.diff(rc["coverage"]) > 0) and np.all(np.diff(rc["threshold"]) < 0)
    assert rc["coverage"][-1] == 1.0 and rc["risk"][-1] == pytest.approx(1 - correct.mean())
    assert rc["risk"][len(rc["risk"]) // 10] < rc["risk"][-1]  # confident part is safer
    for target in (0.01, 0.05, 0.2):
        thr = uncertainty.review_threshold(conf, correct, target)
        ev = uncertainty.evaluate_review(conf, correct, thr)
        assert ev["residual_error"] <= target
        assert ev["review_share"] == pytest.approx(uncertainty.review_share_for_risk(conf, correct, target))
    assert uncertainty.review_threshold(conf, np.ones_like(correct), 0.01) == 0.0  # nothing to review
    assert uncertainty.review_threshold(np.array([0.9]), np.array([False]), 0.01) > 0.9  # review all
    assert 0 < uncertainty.aurc(conf, correct) < 1 - correct.mean()


def test_entropy_and_max_prob():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert uncertainty.entropy(p) == pytest.approx([0.0, 1.0], abs=1e-6)
    assert uncertainty.max_prob(p) == pytest.approx([1.0, 1 / 3])


def test_ood_scores_separate_constructed_unknown_class():
    rng = np.random.default_rng(3)
    means = rng.normal(0, 4, (4, 16))
    y = rng.integers(0, 4, 1200)
    feats = means[y] + rng.normal(0, 1, (1200, 16))
    known = y < 3
    maha = ood.Mahalanobis.fit(feats[known][:600], y[known][:600])
    s = maha.score(feats)
    res = ood.held_out_auroc(s[600:], y[600:], 3)
    assert res["auroc"] > 0.95 and res["n_out"] > 50
    # energy: a known class gets one large logit, the unknown one none
    logits = np.where(known[:, None], 0.0, 0.0) + rng.normal(0, 0.5, (1200, 3))
    logits[np.arange(1200)[known], y[known]] += 6
    assert ood.auroc(ood.energy_score(logits[known]), ood.energy_score(logits[~known])) > 0.95
    assert ood.auroc(np.zeros(5), np.zeros(5)) == 0.5


def test_knn_score_flags_unknown_between_known_clusters():
    """A class sitting between two known clusters: the kNN distance flags it, the bank is unit-normalised."""
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0, 0], 0.3, (200, 3))
    b = rng.normal([0, 5, 0], 0.3, (200, 3))
    unknown = rng.normal([3, 3, 0.0], 0.3, (100, 3))
    knn = ood.KNN.fit(np.r_[a, b], k=5)
    assert np.allclose(np.linalg.norm(knn.bank, axis=1), 1.0)
    known_test = np.r_[rng.normal([5, 0, 0], 0.3, (50, 3)), rng.normal([0, 5, 0], 0.3, (50, 3))]
    assert ood.auroc(knn.score(known_test), knn.score(unknown)) > 0.95
    assert ood.KNN.fit(a[:3], k=50).k == 3  # k never exceeds the bank
    with pytest.raises(ValueError, match="at least one"):
        ood.KNN.fit(np.zeros((0, 3)))


def test_auroc_counts_ties_as_half_and_matches_the_rank_sum():
    """AUROC by sorted search (no scipy.stats import in a fit) equals the Mann-Whitney rank-sum form."""
    from scipy.stats import rankdata

    assert ood.auroc(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])) == 4.5 / 6  # 2: 1 below + half a tie; 4: 3
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.integers(0, 8, rng.integers(1, 40)).astype(float), rng.integers(0, 9, rng.integers(1, 40))
        r = rankdata(np.r_[a, b])
        want = (r[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b))
        assert ood.auroc(a, b.astype(float)) == pytest.approx(want, abs=1e-12)
