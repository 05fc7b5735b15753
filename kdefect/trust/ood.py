"""Out-of-distribution scores: send a defect type never seen in training to review.

Why several scores: the energy score (Liu et al. 2020) needs only the logits and
so also works on the device; the Mahalanobis distance on the penultimate
features (Lee et al. 2018, class means + one shared covariance) is usually
sharper for "new kind of defect" but needs the training features, as does the
k-nearest-neighbour distance on normalised features (Sun et al. 2022).  All are
"higher = more unusual".  Quality is measured leave-one-class-out: train
without one class, then AUROC of the score for that class vs the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

from kdefect.core.knn import KNN as KNN  # re-export: one implementation for host and device


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy flipped to "higher = more OOD": -T * logsumexp(z / T)."""
    z = np.asarray(logits, np.float64)
    return -temperature * logsumexp(z / temperature, axis=1)


def max_prob_score(probs: np.ndarray) -> np.ndarray:
    """1 - max probability (the baseline OOD score of Hendrycks & Gimpel 2017)."""
    return 1.0 - np.asarray(probs, np.float64).max(axis=1)


@dataclass
class Mahalanobis:
    """Class-conditional Gaussians with a shared covariance, fitted on training features."""

    means: np.ndarray  # (K, D)
    precision: np.ndarray  # (D, D)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, shrinkage: float = 1e-3) -> Mahalanobis:
        x = np.asarray(features, np.float64)
        y = np.asarray(labels, int)
        ks = np.unique(y)
        means = np.stack([x[y == k].mean(0) for k in ks])
        centred = x - means[np.searchsorted(ks, y)]
        cov = centred.T @ centred / max(len(x) - len(ks), 1)
        cov += shrinkage * (np.trace(cov) / max(cov.shape[0], 1) + 1e-12) * np.eye(cov.shape[0])
        return cls(means=means, precision=np.linalg.pinv(cov, hermitian=True))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Smallest squared Mahalanobis distance to any class mean (higher = more OOD)."""
        x = np.asarray(features, np.float64)
        d = x[:, None, :] - self.means[None]
        return np.einsum("nkd,de,nke->nk", d, self.precision, d).min(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"means": self.means, "precision": self.precision}


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """P(score_out > score_in) + 0.5 P(tie): the Mann-Whitney AUROC of OOD vs in-distribution."""
    a, b = np.asarray(scores_in, np.float64), np.asarray(scores_out, np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    a = np.sort(a)  # per unknown part: known parts scored below it, plus half of those tied with it
    below, upto = np.searchsorted(a, b, "left"), np.searchsorted(a, b, "right")
    return float((below.sum() + 0.5 * (upto - below).sum()) / (len(a) * len(b)))


def fpr_at_tpr(scores_in: np.ndarray, scores_out: np.ndarray, tpr: float = 0.95) -> float:
    """Share of known parts flagged when the threshold catches ``tpr`` of the unknown ones."""
    thr = np.quantile(np.asarray(scores_out, np.float64), 1 - tpr)
    return float((np.asarray(scores_in) >= thr).mean())


def held_out_auroc(scores: np.ndarray, labels: np.ndarray, held_out: int | list[int]) -> dict[str, float]:
    """AUROC and FPR@95 of ``scores`` for the held-out class(es) vs all other samples."""
    y = np.asarray(labels, int)
    out_mask = np.isin(y, np.atleast_1d(held_out))
    s = np.asarray(scores, np.float64)
    return {"auroc": auroc(s[~out_mask], s[out_mask]), "fpr_at_95tpr": fpr_at_tpr(s[~out_mask], s[out_mask]),
            "n_in": int((~out_mask).sum()), "n_out": int(out_mask.sum())}
