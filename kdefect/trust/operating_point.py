"""Safe operating point: the threshold on P(good) that keeps escapes under a target.

Why: a missed defect (escape) can be a safety hazard, a false reject only
costs a re-inspection.  The threshold is chosen on validation so that at most
``target`` of the defective parts are passed as good; the test escape rate is
reported with its exact 95% Clopper-Pearson upper bound, because with a few
hundred defective parts "0 escapes" still only proves "< ~1%".
Decision rule: pass as good iff P(good) >= threshold, else the most probable
defect class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import betaincinv, ndtri  # not scipy.stats: 0.5-2 s more to import on each fit


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) binomial interval for k successes out of n."""
    if n <= 0:
        return 0.0, 1.0
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return lo, hi


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval (good coverage for proportions near 0 or 1)."""
    if n <= 0:
        return 0.0, 1.0
    z = float(ndtri(1 - alpha / 2))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def decide(probs: np.ndarray, good_index: int, threshold: float) -> np.ndarray:
    """Class index per part: good iff P(good) >= threshold, else the most probable defect class."""
    p = np.asarray(probs, np.float64)
    masked = p.copy()
    masked[:, good_index] = -np.inf
    defect = masked.argmax(axis=1)
    return np.where(p[:, good_index] >= threshold, good_index, defect)


def choose_threshold(p_good: np.ndarray, y_true: np.ndarray, good_index: int, target_escape: float) -> float:
    """Lowest P(good) threshold whose validation escape rate is <= target (lowest = fewest false rejects)."""
    p_good = np.asarray(p_good, np.float64)
    y = np.asarray(y_true, int)
    d = np.sort(p_good[y != good_index])[::-1]  # defective parts, most good-looking first
    if len(d) == 0:
        return 0.5
    allowed = math.floor(target_escape * len(d) + 1e-9)
    if allowed >= len(d):
        return 0.0
    # every defective part with p >= threshold escapes: stay just above the (allowed+1)-th largest
    return float(np.nextafter(d[allowed], np.inf))


def choose_reject_threshold(scores: np.ndarray, defective: np.ndarray, target_escape: float) -> float | None:
    """Highest image reject threshold whose validation escape rate is <= target (highest = fewest false rejects).

    For detectors: an image is rejected iff its best box scores >= the threshold, so a defective image escapes
    iff its score is below it.  None when validation has no defective image (nothing to choose on).
    """
    s = np.asarray(scores, np.float64)
    d = np.sort(s[np.asarray(defective, bool)])  # defective images, least suspicious first
    if len(d) == 0:
        return None
    allowed = math.floor(target_escape * len(d) + 1e-9)
    # the ``allowed`` lowest-scoring defective images escape; the next one must be rejected
    return float(d[min(allowed, len(d) - 1)])


def evaluate_threshold(probs: np.ndarray, y_true: np.ndarray, good_index: int, threshold: float) -> dict[str, Any]:
    """Escape rate (+95% CP bounds), false-reject rate (+bounds) and accuracy at a threshold."""
    y = np.asarray(y_true, int)
    pred = decide(probs, good_index, threshold)
    defective, good = y != good_index, y == good_index
    esc, n_def = int((pred[defective] == good_index).sum()), int(defective.sum())
    fr, n_good = int((pred[good] != good_index).sum()), int(good.sum())
    return {
        "threshold": float(threshold),
        "escape_rate": esc / n_def if n_def else 0.0, "escapes": esc, "defective": n_def,
        "escape_rate_ci95": list(clopper_pearson(esc, n_def)),
        "false_reject_rate": fr / n_good if n_good else 0.0, "false_rejects": fr, "good": n_good,
        "false_reject_rate_ci95": list(clopper_pearson(fr, n_good)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
    }


def escape_table(probs: np.ndarray, y_true: np.ndarray, good_index: int,
                 targets: tuple[float, ...] = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05),
                 val: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One row per escape target: threshold from ``val`` (probs, y) or from the data itself, evaluated on it."""
    vp, vy = val if val is not None else (probs, y_true)
    rows = []
    for t in targets:
        thr = choose_threshold(np.asarray(vp)[:, good_index], vy, good_index, t)
        rows.append({"target_escape": t, **evaluate_threshold(probs, y_true, good_index, thr)})
    return rows
