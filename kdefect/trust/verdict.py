"""READY / NOT READY: is this model fit to decide parts on the line?

Why a verdict: a model that calls every part good still scores 71 % accuracy
on data that is 71 % good, and a user reading one accuracy figure ships it.
The verdict is computed on the held-out test split with the decision rule the
device applies (calibrated probabilities, the operating point on P(good), the
review threshold), against ``trust.targets``:

- the 95 % Clopper-Pearson **upper bound** of the escape rate (a small test
  set cannot prove a low escape rate, and the verdict says so).  An escape
  is a defective part passed as good *and not sent to review*: the line's
  outcome, with the review queue capped by its own target; the model's own
  escapes before review are reported beside it;
- the recall of every class;
- the false-reject rate (good parts rejected);
- the share of parts sent to human review.

Each missed target is named in words, and so is a degenerate model (a class
never predicted, every defect passed).  TF-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from kdefect.config import TargetsConfig as Targets  # one definition of the targets and their defaults
from kdefect.trust.operating_point import clopper_pearson, decide

READY, NOT_READY = "READY", "NOT READY"


def targets_of(cfg: Any) -> Targets:
    """A run config's ``trust.targets`` (the documented defaults when it has none)."""
    t = getattr(getattr(cfg, "trust", None), "targets", None)
    return Targets(**asdict(t)) if t is not None else Targets()


def defectives_needed(max_upper: float, alpha: float = 0.05) -> int:
    """Fewest defective test parts for which 0 escapes gives a CP upper bound <= ``max_upper``."""
    if max_upper >= 1:
        return 0
    return max(1, math.ceil(math.log(alpha / 2) / math.log(1 - max_upper)))


def assess(probs: np.ndarray, labels: np.ndarray, classes: list[str], good_label: str | None,
           thresholds: dict[str, Any] | None, targets: Targets | None = None, split: str = "test") -> dict[str, Any]:
    """The verdict dict for calibrated ``probs`` (N, K) and true ``labels`` on one split.

    ``thresholds``: the sidecar layout (``review_below``, ``decision.good_min_prob``) or None when the model
    was never calibrated (which alone makes it NOT READY: it has no operating point).
    """
    targets = targets or Targets()
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, int)
    k = len(classes)
    reasons: list[str] = []
    if thresholds is None:
        reasons.append("not calibrated: no operating point, review or unknown-defect thresholds "
                       "(run `kdefect calibrate RUN`)")
    th = thresholds or {}
    good = good_label if good_label in classes else None
    gi = classes.index(good) if good is not None else None
    thr = (th.get("decision") or {}).get("good_min_prob")
    pred = decide(p, gi, float(thr)) if gi is not None and thr is not None and len(p) else p.argmax(1) if len(p) else y
    review_below = float(th.get("review_below", 0.0))
    review = p.max(1) < review_below if len(p) else np.zeros(0, bool)
    support = np.bincount(y, minlength=k)
    hits = np.bincount(y[pred == y], minlength=k)
    predicted = np.bincount(pred, minlength=k)
    recall = {c: float(hits[i] / support[i]) if support[i] else None for i, c in enumerate(classes)}
    out: dict[str, Any] = {
        "split": split, "n": len(y), "calibrated": thresholds is not None, "targets": asdict(targets),
        "per_class_recall": recall, "per_class_support": dict(zip(classes, support.tolist())),
        "review_share": float(review.mean()) if len(review) else 0.0,
        "review_below": review_below, "good_min_prob": None if thr is None else float(thr),
    }
    never = [c for i, c in enumerate(classes) if support[i] and predicted[i] == 0]
    if never:
        reasons.append(f"degenerate: the model never predicts {', '.join(never)} on the {split} split")
    low = [f"{c} {r:.2f}" for c, r in recall.items() if r is not None and r < targets.min_class_recall
           and c not in never]
    if low:
        reasons.append(f"recall below {targets.min_class_recall:.2f}: {', '.join(low)}")
    if gi is not None:
        defective, is_good = y != gi, y == gi
        passed = pred == gi
        model_esc, n_def = int(passed[defective].sum()), int(defective.sum())
        esc = int((passed & ~review)[defective].sum())  # a defect sent to review is seen by an inspector
        fr, n_good = int((pred[is_good] != gi).sum()), int(is_good.sum())
        upper = clopper_pearson(esc, n_def)[1]
        out.update({"escape_rate": esc / n_def if n_def else 0.0, "escapes": esc, "defective": n_def,
                    "escape_upper95": upper, "model_escape_rate": model_esc / n_def if n_def else 0.0,
                    "model_escapes": model_esc, "false_reject_rate": fr / n_good if n_good else 0.0,
                    "false_rejects": fr, "good": n_good})
        reasons += _escape_reasons(esc, model_esc, n_def, upper, targets, f"{split} part", "escape rate",
                                   "passed as good")
        if n_good and fr / n_good > targets.max_false_reject:
            reasons.append(f"false-reject rate {fr / n_good:.1%} > {targets.max_false_reject:.1%} "
                           "(good parts rejected at the operating point)")
    if out["review_share"] > targets.max_review_share:
        reasons.append(f"review share {out['review_share']:.1%} > {targets.max_review_share:.1%} "
                       f"(parts below confidence {review_below:.3f} go to a human)")
    if gi is None:  # say what is not judged: a forgotten good label looks like a clean bill of health otherwise
        said = "null" if not good_label else f"'{good_label}', not a class here"
        out["notes"] = [f"no good class (data.good_label {said}): no escape rate, false-reject rate or operating "
                        "point is judged, only recall and review. If one class is defect-free, set "
                        "data.good_label to it and fit again."]
    out["reasons"] = reasons
    out["ready"] = not reasons
    out["verdict"] = READY if not reasons else NOT_READY
    return out


def assess_images(scores: np.ndarray, contains: np.ndarray, classes: list[str], threshold: float | None,
                  targets: Targets | None = None, split: str = "test") -> dict[str, Any]:
    """The verdict of an image-level reject rule on boxes (detectors): reject iff the best box >= ``threshold``.

    ``scores`` (N,): each image's best box score (``core.detect_decode.image_score``); ``contains`` (N, K) bool:
    which classes each image's ground truth holds (an image with none is defect-free).  The dict has the
    classifier verdict's keys (``format_verdict`` prints both); a class's recall is the share of the images
    holding it that are rejected, and there is no review queue.
    """
    targets = targets or Targets()
    s = np.asarray(scores, np.float64).reshape(-1)
    has = np.asarray(contains, bool).reshape(len(s), len(classes))
    defective = has.any(1)
    reasons: list[str] = []
    notes: list[str] = []
    if threshold is None:
        reasons.append("not calibrated: no operating threshold (run `kdefect calibrate RUN`)")
    rejected = s >= (threshold if threshold is not None else np.inf)
    support = has.sum(0)
    recall = {c: float(rejected[has[:, i]].mean()) if support[i] else None for i, c in enumerate(classes)}
    esc, n_def = int((~rejected & defective).sum()), int(defective.sum())
    fr, n_good = int((rejected & ~defective).sum()), int((~defective).sum())
    upper = clopper_pearson(esc, n_def)[1]
    out: dict[str, Any] = {
        "split": split, "n": len(s), "calibrated": threshold is not None, "targets": asdict(targets),
        "decision": "image", "reject_min_score": None if threshold is None else float(threshold),
        "per_class_recall": recall, "per_class_support": dict(zip(classes, support.tolist())),
        "review_share": 0.0, "review_below": 0.0,
        "escape_rate": esc / n_def if n_def else 0.0, "escapes": esc, "defective": n_def, "escape_upper95": upper,
        "model_escape_rate": esc / n_def if n_def else 0.0, "model_escapes": esc,
        "false_reject_rate": fr / n_good if n_good else 0.0, "false_rejects": fr, "good": n_good,
    }
    if threshold is not None:
        reasons += _escape_reasons(esc, esc, n_def, upper, targets, f"{split} image", "image escape rate", "passed")
        low = [f"{c} {r:.2f}" for c, r in recall.items() if r is not None and r < targets.min_class_recall]
        if low and not (n_def and esc == n_def):
            reasons.append(f"image recall below {targets.min_class_recall:.2f}: {', '.join(low)}")
        if n_good and fr / n_good > targets.max_false_reject:
            reasons.append(f"false-reject rate {fr / n_good:.1%} > {targets.max_false_reject:.1%} "
                           "(defect-free images rejected at the operating threshold)")
    if not n_good and threshold is not None and targets.max_false_reject < 1.0:
        # Without defect-free images a detector that rejects every part would look perfect: the escape rate is 0
        # and nothing measures the scrap.  A safety verdict cannot rest on that (NEU-DET is such a set).
        reasons.append(f"false-reject rate not measured: the {split} split has no defect-free image, so a model "
                       "that rejects every part would pass; add defect-free images (an image with no boxes), "
                       "or accept any scrap with trust.targets.max_false_reject=1.0")
    elif not n_good:
        notes.append(f"no defect-free {split} images: the false-reject rate is not measured")
    out["notes"] = notes
    out["reasons"] = reasons
    out["ready"] = not reasons
    out["verdict"] = READY if not reasons else NOT_READY
    return out



def _escape_reasons(esc: int, model_esc: int, n_def: int, upper: float, targets: Targets, what: str, name: str,
                    passed: str) -> list[str]:
    """Why the escape target fails (a model that passes every defect, or a bound above the target), if it does.

    ``what``: one defective item ("test part", "test image"); ``model_esc``: escapes before review.
    """
    if n_def and model_esc == n_def:
        return [f"degenerate: every defective {what} ({n_def}) is {passed}"]
    if upper <= targets.max_escape_upper:
        return []
    need = defectives_needed(targets.max_escape_upper)
    small = (f"; with only {n_def} defective {what}s even 0 escapes cannot show it (needs >= {need})"
             if n_def < need else "")
    return [f"{name} {esc}/{n_def} = {esc / max(n_def, 1):.1%}, upper bound {upper:.1%} "
            f"> {targets.max_escape_upper:.1%}{small}"]

def format_verdict(v: dict[str, Any]) -> str:
    """The short table printed by fit, evaluate and calibrate, ending with the verdict and its reasons."""
    rows = [f"fit for use on the {v['split']} split ({v['n']} {'images' if v.get('decision') == 'image' else 'parts'}):"]
    width = max([len(c) for c in v["per_class_recall"]] + [12])
    for c, r in v["per_class_recall"].items():
        rows.append(f"  recall {c:<{width}} {'n/a' if r is None else f'{r:.3f}'}"
                    f"  (n={v['per_class_support'][c]})")
    if "escape_rate" in v:
        rows.append(f"  escape rate{'':<{width - 5}} {v['escape_rate']:.3%} ({v['escapes']}/{v['defective']}), "
                    f"95% upper bound {v['escape_upper95']:.3%}; before review {v['model_escapes']}/{v['defective']}")
        rows.append(f"  false rejects{'':<{width - 7}} {v['false_reject_rate']:.3%} ({v['false_rejects']}/{v['good']})")
    if v.get("decision") == "image":  # detectors: reject an image on its best box; no review queue
        thr = v["reject_min_score"]
        rows.append(f"  reject at box score{' ' * max(width - 13, 0)} {'n/a' if thr is None else f'>= {thr:.4f}'}")
    else:
        rows.append(f"  review share{'':<{width - 6}} {v['review_share']:.3%}")
    rows += [f"  note: {n}" for n in v.get("notes", [])]
    rows.append(f"verdict: {v['verdict']}")
    rows += [f"  - {r}" for r in v["reasons"]]
    return "\n".join(rows)


def verdict_of(cal: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verdict stored in a ``calibration.json`` (None when absent)."""
    return (cal or {}).get("verdict")
