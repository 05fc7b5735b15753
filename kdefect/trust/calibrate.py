"""Temperature scaling, expected calibration error and the reliability diagram.

Why temperature scaling (Guo et al. 2017): one scalar fitted on validation
logits fixes the over-confidence of deep nets without changing any decision
(argmax is invariant), and the edge runtime can apply it to the TFLite
model's probabilities (softmax(log p / T) == softmax(z / T)).
``calibrate_run`` fits everything a run needs before deployment and writes
``calibration.json`` (the export copies temperature / review_below into the
sidecar).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from kdefect.core.calibration import CALIBRATION_FILE, apply_temperature, load_calibration, thresholds_from
from kdefect.tasks.base import get_task
from kdefect.utils.io import atomic_path, sha256_file

__all__ = ["CALIBRATION_FILE", "apply_temperature", "calibrate_run", "expected_calibration_error", "fit_temperature",
           "host_knn", "load_calibration", "thresholds_from"]

log = logging.getLogger(__name__)

def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T)."""
    lp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-lp[np.arange(len(labels)), np.asarray(labels, int)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T minimising validation NLL (1-D bounded search over log T; convex in 1/T)."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, int)
    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(lambda lt: nll(logits, labels, float(np.exp(lt))),
                          bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    if nll(logits, labels, t) > nll(logits, labels, 1.0):  # never worse than doing nothing
        t = 1.0
    return t


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin: count, mean confidence, accuracy."""
    probs = np.asarray(probs, np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels, int)).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, np.bincount(idx, conf, n_bins) / count, 0.0)
        acc = np.where(count > 0, np.bincount(idx, correct, n_bins) / count, 0.0)
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: sum over bins of (bin share) x |accuracy - confidence| (top-label, equal width)."""
    b = reliability_bins(probs, labels, n_bins)
    n = b["count"].sum()
    return float((b["count"] / max(n, 1) * np.abs(b["accuracy"] - b["confidence"])).sum())


def plot_reliability(
    probs_before: np.ndarray, labels: np.ndarray, path: str | Path, probs_after: np.ndarray | None = None,
    n_bins: int = 15, title: str = "Reliability diagram",
) -> Path:
    """Accuracy vs confidence per bin (before and, if given, after scaling) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for probs, name, color in ((probs_before, "before", "tab:red"), (probs_after, "after", "tab:blue")):
        if probs is None:
            continue
        b = reliability_bins(probs, labels, n_bins)
        m = b["count"] > 0
        ece = expected_calibration_error(probs, labels, n_bins)
        ax.plot(b["confidence"][m], b["accuracy"][m], "o-", color=color, label=f"{name} (ECE {100 * ece:.2f}%)")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def calibrate_run(
    run_dir: str | Path,
    target_risk: float | None = None,
    target_escape: float | None = None,
    n_bins: int = 15,
    ood_tpr: float = 0.95,
    targets: Any = None,
    model: Any = None,
) -> dict[str, Any]:
    """Fit temperature, review threshold, OOD threshold and operating point on val; judge them on test.

    Writes ``calibration.json`` (with the READY / NOT READY ``verdict``) and
    ``reliability.png`` into the run folder and returns the dict.  A task with ``image_scores`` (detection)
    gets its image reject threshold instead (``trust.reject_threshold``).
    ``target_risk`` is the residual error allowed on parts that are not sent to
    review; ``target_escape`` the allowed escape rate; ``targets`` a
    ``kdefect.trust.verdict.Targets``.  Left as None, each comes from the run's
    ``trust`` config.  ``model``: the run's classifier already in memory (``fit`` passes it), else it is loaded
    from ``model.keras``: each load costs about a second, and calibration needs the train, val and test outputs.
    """
    from kdefect.core.run import RunDir
    from kdefect.trust import ood, operating_point, uncertainty
    from kdefect.trust.outputs import load_model, outputs_fresh, split_outputs
    from kdefect.trust.verdict import targets_of

    run = RunDir.open(run_dir)
    tcfg = run.config().trust
    target_risk = tcfg.target_risk if target_risk is None else float(target_risk)
    target_escape = tcfg.target_escape if target_escape is None else float(target_escape)
    targets = targets or targets_of(run.config())
    task = get_task(run.config().task)
    if task.image_scores is not None:  # boxes: one reject threshold on the best box, no temperature
        from kdefect.trust.reject_threshold import calibrate_image_run

        return calibrate_image_run(run, task, target_escape, targets)
    classes, good = run.classes()
    if model is None and not all(outputs_fresh(run, s) for s in ("val", "test", "train")):  # a stale cache too
        model = load_model(run.model_path)  # once for every split
    val, test = split_outputs(run, "val", model), split_outputs(run, "test", model)
    t = fit_temperature(val["logits"], val["y"])
    pv_raw, pt_raw = apply_temperature(val["logits"], 1.0), apply_temperature(test["logits"], 1.0)
    pv, pt = apply_temperature(val["logits"], t), apply_temperature(test["logits"], t)
    review = uncertainty.review_threshold(pv.max(1), pv.argmax(1) == val["y"], target_risk)
    test_review = uncertainty.evaluate_review(pt.max(1), pt.argmax(1) == test["y"], review)
    e_val, e_test = ood.energy_score(val["logits"], t), ood.energy_score(test["logits"], t)
    feature_ood = _knn_gate(run, val, test, ood_tpr, model=model)
    ood_thr = float(np.quantile(e_val, ood_tpr)) if len(e_val) else float("inf")
    msp_thr = float(np.quantile(1 - pv.max(1), ood_tpr)) if len(pv) else 1.0
    out: dict[str, Any] = {
        "model_sha256": sha256_file(run.model_path),
        "temperature": t,
        "review_below": review,
        "target_risk": target_risk,
        "n_bins": n_bins,
        "ece_before": expected_calibration_error(pv_raw, val["y"], n_bins),
        "ece_after": expected_calibration_error(pv, val["y"], n_bins),
        "test_ece_before": expected_calibration_error(pt_raw, test["y"], n_bins),
        "test_ece_after": expected_calibration_error(pt, test["y"], n_bins),
        "nll_before": nll(val["logits"], val["y"], 1.0),
        "nll_after": nll(val["logits"], val["y"], t),
        "test_review": test_review,
        "ood": {"score": "energy", "threshold": ood_thr, "val_tpr": ood_tpr,
                "test_flag_share": float((e_test > ood_thr).mean()) if len(e_test) else 0.0},
        # The best unknown-defect score in the NEU leave-one-class-out benchmark; needs the features (host only).
        **({"feature_ood": feature_ood} if feature_ood else {}),
        # The exported model outputs probabilities, so the device scores OOD by 1 - max calibrated probability.
        "device_ood": {"method": "msp", "threshold": msp_thr, "val_tpr": ood_tpr},
        "baseline": {
            "split": "val", "classes": classes,
            "class_counts": np.bincount(pv.argmax(1), minlength=len(classes)).tolist(),
            "confidence": np.round(pv.max(1), 6).tolist(),
            "review_share": float((pv.max(1) < review).mean()) if len(pv) else 0.0,
            # the share the device will flag (its msp score), so monitor compares like with like
            "ood_share": float((1 - pv.max(1) > msp_thr).mean()) if len(pv) else 0.0,
        },
    }
    if good is not None and good in classes:
        gi = classes.index(good)
        thr = operating_point.choose_threshold(pv[:, gi], val["y"], gi, target_escape)
        out["operating_point"] = {
            "good_label": good, "good_min_prob": thr, "target_escape": target_escape,
            "val": operating_point.evaluate_threshold(pv, val["y"], gi, thr),
            "test": operating_point.evaluate_threshold(pt, test["y"], gi, thr),
        }
        out["decision"] = {"good_label": good, "good_min_prob": thr}
    out["verdict"] = _verdict(out, pv, val["y"], pt, test["y"], classes, good, targets)
    plot_reliability(pt_raw, test["y"], run.path / "reliability.png", pt, n_bins, "Reliability (test split)")
    run.write_json(CALIBRATION_FILE, out)
    run.update_manifest([CALIBRATION_FILE, "reliability.png"])
    log.info("calibrated %s: T=%.3f ECE %.2f%% -> %.2f%% (val), review below %.4f", run.path, t,
             100 * out["ece_before"], 100 * out["ece_after"], review)
    return out


def _verdict(cal: dict[str, Any], pv: np.ndarray, yv: np.ndarray, pt: np.ndarray, yt: np.ndarray,
             classes: list[str], good: str | None, targets: Any) -> dict[str, Any]:
    """READY / NOT READY on the test split with the device's rule; without a test split, on val (never READY)."""
    from kdefect.trust.verdict import assess

    if len(yt):
        return assess(pt, yt, classes, good, thresholds_from(cal), targets, split="test")
    v = assess(pv, yv, classes, good, thresholds_from(cal), targets, split="val")
    v["reasons"].insert(0, "no held-out test split: the thresholds were fitted on this validation split, so "
                           "these figures are optimistic (set data.split with a test fraction)")
    v["ready"], v["verdict"] = False, "NOT READY"
    return v


def host_knn(run: Any, k: int = 10, model: Any = None) -> Any:
    """The host's kNN gate: the float features of the run's training split (cached by ``split_outputs``)."""
    from kdefect.trust import ood
    from kdefect.trust.outputs import split_outputs

    return ood.KNN.fit(split_outputs(run, "train", model)["features"], k=k)


def _knn_gate(run: Any, val: dict[str, Any], test: dict[str, Any], tpr: float, k: int = 10,
              model: Any = None) -> dict[str, Any] | None:
    """kNN distance on the penultimate features (bank: the training split), thresholded at ``tpr`` of validation."""
    if not (run.path / "split" / "train.txt").is_file() or not len(val["features"]):
        return None
    knn = host_knn(run, k, model)
    thr = float(np.quantile(knn.score(val["features"]), tpr))
    flags = knn.score(test["features"]) > thr if len(test["features"]) else np.zeros(0, bool)
    return {"score": "knn", "k": knn.k, "bank": "train", "threshold": thr, "val_tpr": tpr,
            "test_flag_share": float(flags.mean()) if len(flags) else 0.0}
