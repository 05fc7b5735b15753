"""Prove an exported model: accuracy and fidelity to the float Keras model, and its latency.

Runs the .tflite through LiteRT exactly as the device will (raw pixels in,
the sidecar's labels), on the source run's saved test split or new data, and
compares it image by image with the run's float Keras model: top-1 agreement
and the largest probability difference are what tell a user the INT8 model
is the model they validated.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.config import Config
from kdefect.core.decisions import rule_from_sidecar
from kdefect.core.run import RunDir
from kdefect.core.sidecar import read_sidecar
from kdefect.edge.interpreter import TFLiteRunner, roles_of
from kdefect.engine.metrics import classification_metrics
from kdefect.errors import DataError, ExportError
from kdefect.utils.io import write_json

log = logging.getLogger(__name__)


def run_tflite(model_path: str | Path, images: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Dequantized class output for every image, one invoke per image (batch 1, as on the device)."""
    return TFLiteRunner(model_path, num_threads=num_threads).run_all(images)[0]


def _decision_shares(rule: Any, probs: np.ndarray, feats: np.ndarray | None) -> dict[str, Any]:
    """What the device's decision rule (sidecar thresholds, OOD gate) does on these images: review and OOD shares."""
    fs = feats if feats is not None else [None] * len(probs)
    ds = [rule(p, f) for p, f in zip(probs, fs, strict=True)]
    out: dict[str, Any] = {"review_share": float(np.mean([d.review for d in ds])) if ds else 0.0}
    if rule.ood is not None:
        out["ood"] = {"method": rule.ood.get("method", rule.ood.get("score")), "threshold": rule.ood["threshold"],
                      "flag_share": float(np.mean([d.ood["flag"] for d in ds])) if ds else 0.0}
    return out


def _verdict(rule: Any, sc: Any, probs: np.ndarray, labels: np.ndarray, run: Any, split: str) -> dict[str, Any]:
    """READY / NOT READY for the exported model itself: the device's calibrated probabilities and thresholds."""
    from kdefect.trust.verdict import Targets, assess, targets_of

    cal = np.stack([rule.probabilities(p) for p in probs]) if len(probs) else probs
    calibrated = bool((sc.readiness or {}).get("calibrated", "decision" in sc.thresholds))
    targets = targets_of(run.config()) if run is not None else Targets()
    return assess(cal, labels, list(sc.labels), sc.good_label, sc.thresholds if calibrated else None, targets, split)


def latency_ms(model_path: str | Path, images: np.ndarray, num_threads: int, n: int = 50, warmup: int = 3
               ) -> dict[str, float]:
    """p50 / p95 / mean milliseconds per image (invoke only, images already loaded)."""
    runner = TFLiteRunner(model_path, num_threads=num_threads)
    if len(images) == 0:
        return {}
    for i in range(warmup):
        runner(images[i % len(images)])
    times = []
    for i in range(n):
        t = time.perf_counter()
        runner(images[i % len(images)])
        times.append((time.perf_counter() - t) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95)),
            "mean": float(np.mean(times)), "n": n}


def _load_data(data: Any, run: Any, classes: list[str], size: list[int], channels: int, resize: str = "squash"
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 images, label indices, description) from the run's test split, a folder, or arrays.

    ``resize``: the sidecar's ``input.resize``, so the host sees the pixels the device will.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], str):
        return np.asarray(data[0]), np.asarray(data[1], int), "arrays"
    from kdefect.data.pipeline import load_images

    if data is None:
        if run is None:
            raise DataError("no data to evaluate on: pass run_dir (its test split is used) or data=FOLDER.")
        from kdefect.data.split import label_indices, load_split

        paths, names = load_split(run.path)["test"]
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"the run's test split has labels {unknown} that the model does not know ({classes}).")
        labels = label_indices(classes, names)
        desc = f"{run.path}/split/test.txt"
    else:
        from kdefect.engine.evaluator import labelled_data

        cfg = run.config() if run is not None else Config()
        cfg.data.image_size, cfg.data.channels = list(size), channels
        paths, labels, _ = labelled_data(str(data), cfg, classes)
        desc = str(data)
    if not len(paths):
        raise DataError(f"no images to evaluate in {desc}.")
    return load_images(paths, size, channels, resize=resize), np.asarray(labels, int), desc


def _keras_probs(run: Any, images: np.ndarray) -> np.ndarray | None:
    if run is None or not run.model_path.is_file():
        return None
    from kdefect.tasks.heads import load_model

    model = load_model(run.model_path)
    return np.asarray(model.predict(images.astype(np.float32), batch_size=32, verbose=0))


def evaluate_tflite(
    model_path: str | Path,
    run_dir: str | Path | None = None,
    data: Any = None,
    threads: tuple[int, ...] = (1, os.cpu_count() or 1),
    latency_images: int = 50,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class recall, escape rate, agreement with the float Keras model and latency.

    ``run_dir`` defaults to the sidecar's ``source_run``; ``data``: None (the run's test split), a
    folder of class sub-folders, or ``(uint8 images, label indices)``. ``out``: folder for metrics.json.
    """
    model_path = Path(model_path)
    sc = read_sidecar(model_path)
    src = run_dir or sc.source_run
    run = RunDir.open(src) if src and Path(src).exists() and (Path(src) / "config.yaml").is_file() else None
    if src and run is None and data is None:
        raise DataError(f"source run '{src}' of {model_path} is not available; pass data=FOLDER or run_dir=RUN.")
    classes, good = list(sc.labels), sc.good_label
    images, labels, desc = _load_data(data, run, classes, sc.input.size, sc.input.channels, sc.input.resize)
    probs, feats = TFLiteRunner(model_path, roles=roles_of(sc.output)).run_all(images)
    if probs.shape[1] != len(classes):
        raise ExportError(f"{model_path} outputs {probs.shape[1]} values but its sidecar lists {len(classes)} labels.")
    metrics = classification_metrics(labels, probs, classes, good)
    rule = rule_from_sidecar(sc, model_path=model_path)  # built once: a kNN gate loads its bank here
    result: dict[str, Any] = {
        "model": str(model_path), "data": desc, "quantization": sc.quantization, "n": len(labels),
        "accuracy": metrics["accuracy"], "macro_recall": metrics["macro_recall"],
        "per_class_recall": {c: v["recall"] for c, v in metrics["per_class"].items()},
        "escape_rate": metrics.get("escape_rate"), "size_bytes": model_path.stat().st_size, "metrics": metrics,
        "decisions": _decision_shares(rule, probs, feats),
        "verdict": _verdict(rule, sc, probs, labels, run, "test" if data is None else "given data"),
    }
    kprobs = _keras_probs(run, images)
    if kprobs is not None:
        result["keras_accuracy"] = float((kprobs.argmax(1) == labels).mean())
        result["top1_agreement"] = float((kprobs.argmax(1) == probs.argmax(1)).mean())
        result["agreement"] = result["top1_agreement"]
        result["max_prob_diff"] = float(np.abs(kprobs - probs).max())
        result["mean_prob_diff"] = float(np.abs(kprobs - probs).mean())
    result["latency_ms"] = {str(t): latency_ms(model_path, images, t, latency_images) for t in dict.fromkeys(threads)}
    out_dir = Path(out) if out else model_path.parent / f"{model_path.stem}_evaluation"
    write_json(out_dir / "metrics.json", result)
    result["metrics_file"] = str(out_dir / "metrics.json")  # for the caller to show; not part of the file
    log.info("%s: accuracy %.4f, agreement %s, p50 %.2f ms (1 thread) on %d images", model_path.name,
             result["accuracy"], result.get("top1_agreement"), result["latency_ms"][str(threads[0])].get("p50", 0),
             result["n"])
    return result
