"""From model output to a decision: calibrated probabilities, label, review flag, OOD gate.

All parameters come from the sidecar (``thresholds.temperature``,
``thresholds.review_below``, ``thresholds.decision`` = the operating point
``{"good_label", "good_min_prob"}``, and the OOD gate in ``ood`` or
``thresholds.ood``) so the device applies exactly what the run validated; the
CLI may override the review threshold and the temperature.  The ``knn`` gate
scores the model's feature output against a bank beside the model
(``kdefect.core.knn``); the others need only the class output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.knn import KNN, load_gate
from kdefect.errors import EdgeError

log = logging.getLogger(__name__)

_EPS = 1e-12
OOD_METHODS = ("msp", "entropy", "energy", "knn")


@dataclass
class Decision:
    """One classified part."""

    label: str
    score: float
    probs: dict[str, float]
    review: bool
    ood: dict[str, Any] | None = None
    verdict: str | None = None  # "pass" / "fail" at the operating point; None when the model has no good label
    boxes: list[dict[str, Any]] | None = None  # a detector's boxes (kdefect.edge.detector); None for a classifier


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


@dataclass(frozen=True)
class DecisionRule:
    """Turns one output vector into a ``Decision``.

    ``output_kind``: ``"probs"`` (softmax inside the model, the kdefect default)
    or ``"logits"``. Temperature T rescales logits (for probabilities: log p / T),
    which changes the scores and the review flags, never the label.
    """

    labels: tuple[str, ...]
    temperature: float = 1.0
    review_below: float = 0.0
    output_kind: str = "probs"
    ood: dict[str, Any] | None = None
    good_label: str | None = None
    good_min_prob: float | None = None
    knn: KNN | None = field(default=None, compare=False, repr=False)  # the bank of a "knn" gate

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise EdgeError(f"temperature must be > 0 (got {self.temperature}); fix thresholds.temperature in the sidecar.")
        if self.good_label is not None and self.good_label not in self.labels:
            raise EdgeError(f"good label {self.good_label!r} is not one of the model's labels {list(self.labels)}; "
                            "fix good_label in the sidecar.")
        if self.ood is not None:
            method = self.ood.get("method", self.ood.get("score"))
            if method not in OOD_METHODS or "threshold" not in self.ood:
                raise EdgeError(f"sidecar 'ood' must be {{'method': one of {OOD_METHODS}, 'threshold': t}}; got {self.ood}.")
            if method == "energy" and self.output_kind != "logits":
                raise EdgeError("sidecar 'ood' method 'energy' needs a model that outputs logits; use 'msp' or 'entropy'.")
            if method == "knn" and self.knn is None:
                raise EdgeError("sidecar 'ood' method 'knn' needs its feature bank: build the rule with "
                                "rule_from_sidecar(sidecar, model_path=...) so the bank beside the model is loaded.")

    def _logits(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out, dtype=np.float64).reshape(-1)
        return out if self.output_kind == "logits" else np.log(np.maximum(out, _EPS))

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64). With T == 1 and probability outputs: the model's own (dequantised)."""
        out = np.asarray(out, dtype=np.float64).reshape(-1)
        if self.output_kind != "logits" and self.temperature == 1.0:
            return out
        return softmax(self._logits(out) / self.temperature)

    def __call__(self, out: np.ndarray, features: np.ndarray | None = None) -> Decision:
        """``out``: the class output; ``features``: the feature output (needed by a ``knn`` gate only)."""
        out = np.asarray(out).reshape(-1)
        if out.size != len(self.labels):
            raise EdgeError(f"model gives {out.size} outputs but the sidecar lists {len(self.labels)} labels; "
                            "the sidecar belongs to another model: export again.")
        p = self.probabilities(out)
        i = int(np.argmax(p))
        score = float(p[i])
        return Decision(
            label=self.labels[i],
            score=round(score, 6),
            probs={lab: round(float(v), 6) for lab, v in zip(self.labels, p)},
            review=score < self.review_below,
            ood=self._ood(out, p, features),
            verdict=self._verdict(p, i),
        )

    def _verdict(self, p: np.ndarray, top: int) -> str | None:
        """Pass iff P(good) >= the operating point (``kdefect.trust.operating_point.decide``), else argmax == good."""
        if self.good_label is None:
            return None
        g = self.labels.index(self.good_label)
        ok = p[g] >= self.good_min_prob if self.good_min_prob is not None else top == g
        return "pass" if ok else "fail"

    def _ood(self, out: np.ndarray, p: np.ndarray, features: np.ndarray | None) -> dict[str, Any] | None:
        if self.ood is None:
            return None
        method, thr = self.ood.get("method", self.ood.get("score")), float(self.ood["threshold"])
        if method == "knn":
            if features is None:
                raise EdgeError("this model's OOD gate is 'knn': pass the model's feature output with the class "
                                "output (EdgeClassifier.decide does).")
            s = float(self.knn.score(np.asarray(features).reshape(1, -1))[0])
        elif method == "msp":
            s = 1.0 - float(p.max())
        elif method == "entropy":
            s = float(-(p * np.log(np.maximum(p, _EPS))).sum())
        else:
            z = self._logits(out) / self.temperature
            s = float(-self.temperature * (z.max() + np.log(np.exp(z - z.max()).sum())))
        return {"method": method, "score": round(s, 6), "threshold": thr, "flag": s > thr}


def rule_from_thresholds(labels: list[str] | tuple[str, ...], thresholds: dict[str, Any] | None,
                         output_kind: str = "probs", ood: dict[str, Any] | None = None, good_label: str | None = None,
                         review_below: float | None = None, temperature: float | None = None,
                         knn: KNN | None = None) -> DecisionRule:
    """A rule from a sidecar-layout ``thresholds`` dict (device sidecar, or ``thresholds_from(calibration)`` on the host)."""
    th = thresholds or {}
    ood = ood if ood is not None else th.get("ood")
    if ood and ood.get("method", ood.get("score")) == "energy" and output_kind != "logits":
        log.warning("the sidecar asks for the 'energy' OOD score, which needs logits, but this model outputs "
                    "probabilities: OOD is off (ood: null). Export with logits or calibrate an 'msp' threshold.")
        ood = None
    decision = th.get("decision") or {}
    good = decision.get("good_label", good_label)
    return DecisionRule(
        labels=tuple(labels),
        temperature=float(temperature if temperature is not None else th.get("temperature") or 1.0),
        review_below=float(review_below if review_below is not None else th.get("review_below") or 0.0),
        output_kind=output_kind,
        ood=ood,
        good_label=good if good in labels else None,
        good_min_prob=decision.get("good_min_prob"),
        knn=knn,
    )


def rule_from_sidecar(sidecar: Any, review_below: float | None = None, temperature: float | None = None,
                      model_path: str | Path | None = None, bank: bytes | None = None) -> DecisionRule:
    """The sidecar's decision parameters, with optional CLI overrides; a ``knn`` gate loads its bank beside ``model_path``.

    ``bank``: the bank's bytes when the caller has already read and checked them (``edge.signing``).
    """
    out = sidecar.output or {}
    kind = str(out.get("kind", out.get("activation", "probs"))).lower()
    kind = "logits" if kind in ("logits", "linear", "none") else "probs"
    gate = sidecar.ood if sidecar.ood is not None else (sidecar.thresholds or {}).get("ood")
    knn = None
    if gate and gate.get("method") == "knn":
        if model_path is None:
            raise EdgeError("the sidecar's OOD gate is 'knn': pass model_path so its feature bank can be loaded.")
        knn = load_gate(model_path, gate, bank)
    return rule_from_thresholds(sidecar.labels, sidecar.thresholds, kind, ood=gate,
                                good_label=sidecar.good_label, review_below=review_below, temperature=temperature,
                                knn=knn)
