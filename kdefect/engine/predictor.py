"""``predict``: class, score and every class probability per image, as CSV.

Why the device's decision rule on the host: a calibrated run (``kdefect
calibrate``) or an exported model's sidecar carries the temperature, the review
threshold, the OOD gate and the operating point; ``predict`` applies them with
``kdefect.core.decisions`` exactly as ``kdefect-edge`` does, so a part the host
sends to review is one the line would send to review too.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.calibration import load_calibration, thresholds_from
from kdefect.core.decisions import rule_from_sidecar, rule_from_thresholds
from kdefect.core.knn import KNN
from kdefect.core.run import RunDir
from kdefect.core.sidecar import read_sidecar
from kdefect.data.images import check_images, collect_images
from kdefect.tasks.base import get_task
from kdefect.tasks.outputs import split_outputs
from kdefect.utils.io import write_text

log = logging.getLogger(__name__)


def _readable(paths: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """Split files into decodable ones and {path: reason}, with the same check as training data."""
    reasons = check_images(paths)
    good = [p for p, r in zip(paths, reasons) if r is None]
    return good, {str(p): f"unreadable image: {r}" for p, r in zip(paths, reasons) if r is not None}


def _knn_flags(run: RunDir, gate: dict[str, Any], features: np.ndarray) -> list[bool]:
    """Host-only unknown-defect flag: kNN distance to the training features (``feature_ood`` of calibration.json)."""
    knn = KNN.fit(split_outputs(run, "train")["features"], k=int(gate["k"]))  # as trust.calibrate.host_knn
    return [bool(v) for v in knn.score(features) > float(gate["threshold"])]


def _keras_outputs(target: Path, files: list[Path], chunk: int = 256) -> tuple[np.ndarray, None, list[str], Any,
                                                                              list[bool] | None]:
    """(probabilities, None, classes, decision rule, host kNN OOD flags or None) from a run's Keras model.

    The rule and the kNN gate come from the run's calibration when ``target`` is
    the calibrated ``model.keras`` (a different .keras gets raw probabilities).
    """
    from scipy.special import softmax  # lazy: scipy loads only when used

    from kdefect.data.pipeline import load_images, resize_mode  # lazy: data.pipeline loads TensorFlow
    from kdefect.tasks.heads import load_model, predict_heads

    run = RunDir.open(target)
    cfg, classes = run.config(), run.classes()[0]
    model_file = target if target.suffix in (".keras", ".h5") else run.model_path
    cal = load_calibration(run) if model_file == run.model_path else None
    model, logits, feats = load_model(model_file), [], []
    for i in range(0, len(files), chunk):  # bounded memory on big folders
        imgs = load_images([str(f) for f in files[i:i + chunk]], tuple(cfg.data.image_size), cfg.data.channels,
                           resize=resize_mode(cfg.data))
        heads = predict_heads(model, imgs)
        logits.append(heads["logits"])
        feats.append(heads["features"])
    gate = (cal or {}).get("feature_ood")
    knn = _knn_flags(run, gate, np.concatenate(feats)) if gate else None
    rule = rule_from_thresholds(classes, thresholds_from(cal))
    return softmax(np.concatenate(logits), axis=1), None, classes, rule, knn


def _tflite_outputs(target: Path, files: list[Path]) -> tuple[np.ndarray, np.ndarray | None, list[str], Any, None]:
    """(probabilities, features or None, labels, the sidecar's decision rule, None) from an exported model.

    A model exported with the kNN gate also gives its feature output: the rule scores it as the device does.
    """
    from kdefect.data.pipeline import load_images  # lazy: data.pipeline loads TensorFlow
    from kdefect.edge.interpreter import TFLiteRunner, roles_of

    sc = read_sidecar(target)
    h, w = sc.input.size
    imgs = load_images([str(f) for f in files], (h, w), sc.input.channels, resize=sc.input.resize)
    probs, feats = TFLiteRunner(target, roles=roles_of(sc.output)).run_all(imgs)
    return probs, feats, list(sc.labels), rule_from_sidecar(sc, model_path=target), None


def _task_of(target: Path) -> str:
    if target.suffix == ".tflite":

        return read_sidecar(target).task
    return RunDir.open(target).config().task


def default_predictions_path(model: str | Path) -> Path:
    """Where ``kdefect predict`` writes by default: beside the model (in the run folder for a run), not the cwd."""
    p = Path(model)
    return (p if p.is_dir() else p.parent) / "predictions.csv"


def predict(model: str | Path, inputs: list[str | Path], out: str | Path | None = None) -> list[dict[str, Any]]:
    """Classify images with a run, a ``.keras`` model or a ``.tflite`` model; optionally write a CSV.

    Each row: the class, its (calibrated) probability, every class probability,
    and the review / OOD flags and pass-fail verdict of the calibrated decision rule.
    """
    target = Path(model)
    task = get_task(_task_of(target))
    if task.predict is not None:
        return task.predict(target, list(inputs), out=out)
    files = collect_images(list(inputs))
    readable, bad = _readable(files)
    probs, feats, classes, rule, knn = np.zeros((0, 0)), None, [], None, None
    if readable:
        probs, feats, classes, rule, knn = (_tflite_outputs if target.suffix == ".tflite" else _keras_outputs)(
            target, readable)
    rows = decision_rows(files, readable, bad, probs, feats, rule, knn)
    if bad:
        log.warning("%d file(s) could not be read; they are listed with an error in the output", len(bad))
    if out is not None:
        write_text(out, csv_text(rows, classes, knn is not None))
        log.info("%d predictions -> %s", len(rows), out)
    return rows


def decision_rows(files: list[Path], readable: list[Path], bad: dict[str, str], probs: np.ndarray,
                  feats: np.ndarray | None, rule: Any, knn: list[bool] | None) -> list[dict[str, Any]]:
    """One output row per file, in ``files`` order: the decision rule's verdict, or the read error."""
    rows: list[dict[str, Any]] = []
    by_path = {str(f): p for f, p in zip(readable, probs)}
    feat_by_path = dict(zip(map(str, readable), feats)) if feats is not None else {}
    knn_by_path = dict(zip(map(str, readable), knn)) if knn is not None else {}
    for f in files:
        p = by_path.get(str(f))
        if p is None:
            rows.append({"path": str(f), "class": "", "score": "", "error": bad[str(f)]})
            continue
        d = rule(p, feat_by_path.get(str(f)))
        row: dict[str, Any] = {"path": str(f), "class": d.label, "score": d.score, "error": "",
                               "review": d.review, "ood": bool(d.ood and d.ood["flag"]), "verdict": d.verdict or ""}
        if knn is not None:
            row["ood_knn"] = knn_by_path[str(f)]
        row.update({f"p_{c}": v for c, v in d.probs.items()})
        rows.append(row)
    return rows


def output_columns(classes: list[str], has_knn: bool) -> list[str]:
    return ["path", "class", "score", "review", "ood", *(["ood_knn"] if has_knn else []), "verdict",
            *[f"p_{c}" for c in classes], "error"]


def csv_text(rows: list[dict[str, Any]], classes: list[str], has_knn: bool) -> str:
    """The predictions CSV (floats with 6 decimals)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=output_columns(classes, has_knn))
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
