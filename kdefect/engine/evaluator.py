"""``evaluate``: recompute a run's metrics on its saved test split or on new data.

The test split is read from the run folder, so every later evaluation (Keras
or TFLite) scores exactly the images the run never trained on.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.config import Config
from kdefect.core.calibration import apply_temperature, load_calibration, thresholds_from
from kdefect.core.registry import closest_name
from kdefect.core.run import RunDir
from kdefect.core.sidecar import read_sidecar
from kdefect.engine.metrics import classification_metrics, plot_confusion_matrix
from kdefect.errors import DataError
from kdefect.keras import keras
from kdefect.tasks.base import get_task
from kdefect.tasks.heads import load_model
from kdefect.utils.io import write_json, write_text

log = logging.getLogger(__name__)


def predict_probs(model: keras.Model, paths: list[str], cfg: Config, quiet: bool = True) -> np.ndarray:
    """Class probabilities for image files, through the same tf.data path as training."""
    import dataclasses

    from kdefect.data.pipeline import make_dataset, resize_mode

    k = int(model.output_shape[-1])
    data_cfg = dataclasses.replace(cfg.data, resize=resize_mode(cfg.data))  # an old run's config: squash
    ds = make_dataset(list(paths), np.zeros(len(paths), int), k, data_cfg, training=False, seed=cfg.seed)
    ds = ds.map(lambda x, y: x)
    return model.predict(ds, verbose=0 if quiet else 1)


def _per_class_csv(metrics: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["class", "precision", "recall", "f1", "support"])
    for c, m in metrics["per_class"].items():
        w.writerow([c, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]])
    return buf.getvalue()


def evaluate_model(model: keras.Model, paths: list[str], labels: np.ndarray, classes: list[str], cfg: Config,
                   out_dir: str | Path | None = None, good_label: str | None = None, skipped: int = 0,
                   quiet: bool = True, judge: tuple[dict[str, Any] | None, Any, str] | None = None,
                   probs: np.ndarray | None = None) -> dict[str, Any]:
    """Score ``model`` on labelled image files; write the confusion matrix and per-class CSV to ``out_dir``.

    ``judge``: (calibration thresholds in the sidecar layout or None, ``Targets``, split name) adds the
    READY / NOT READY ``verdict`` on these images, with the calibrated decision rule.
    ``probs``: the model's probabilities for ``paths`` when already computed (``fit`` takes them from the
    outputs cache that calibration reads too, so the test split is run through the model once, not twice).
    """
    if probs is None:
        probs = predict_probs(model, paths, cfg, quiet=quiet)
    metrics = classification_metrics(np.asarray(labels), probs, classes, good_label, skipped=skipped)
    if judge is not None:
        from kdefect.trust.verdict import assess

        thresholds, targets, split = judge
        t = float((thresholds or {}).get("temperature", 1.0))
        calibrated = apply_temperature(np.log(np.maximum(probs, 1e-12)), t)
        metrics["verdict"] = assess(calibrated, labels, classes, good_label, thresholds, targets, split=split)
    if out_dir is not None:
        out = Path(out_dir)
        plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes, str(out / "confusion_matrix.png"))
        write_text(out / "per_class.csv", _per_class_csv(metrics))
        _write_predictions(out / "test_predictions.csv", paths, labels, probs, classes)
    return metrics


def _write_predictions(path: Path, paths: list[str], labels: np.ndarray, probs: np.ndarray,
                       classes: list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "true", "pred", "score", *[f"p_{c}" for c in classes]])
    for p, y, pr in zip(paths, labels, probs):
        w.writerow([p, classes[int(y)], classes[int(pr.argmax())], f"{pr.max():.6f}", *[f"{v:.6f}" for v in pr]])
    write_text(path, buf.getvalue())


def resolve_run(target: str | Path) -> RunDir:
    """A run folder, or a model file inside one."""
    return RunDir.open(target)


def labelled_data(data: str, cfg: Config, classes: list[str]) -> tuple[list[str], np.ndarray, int]:
    """New labelled data as (paths, labels in the model's class order, skipped count); unknown classes refused."""
    from kdefect.data.sources import index_dataset
    from kdefect.data.split import own_test_part

    dcfg = copy.deepcopy(cfg.data)
    dcfg.source, dcfg.format = str(data), "auto"
    index = index_dataset(dcfg)
    index = own_test_part(index, data)  # a data set split into train/ test/: its test/ images only
    unknown = sorted(set(index.classes) - set(classes))
    if unknown:
        hints = "".join(_rename_hint(u, sorted(set(classes) - set(index.classes))) for u in unknown)
        raise DataError(f"'{data}' has classes the model was not trained on: {', '.join(unknown)}. "
                        f"The model knows: {', '.join(classes)}.{hints} Class names are matched exactly; leave out "
                        "the images of a class the model never saw.")
    remap = np.array([classes.index(c) for c in index.classes])
    return list(index.paths), remap[index.labels], len(index.skipped)


def _rename_hint(name: str, missing: list[str]) -> str:
    """`` 'Scratch' looks like the model's 'scratch': rename it.`` when a known class absent from the data matches
    ``name`` up to case and separators (or closely), else ``""``: folders named on another machine often differ so."""
    close = closest_name(name, missing, cutoff=0.75)
    return f" '{name}' looks like the model's '{close}': rename it." if close else ""


def _with_image_verdict(task: Any, target: Path, data: str | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """Add the READY / NOT READY verdict of a task's image reject rule (detection) at its operating threshold.

    The threshold is the run's (``calibration.json``) or, for a ``.tflite``, the one its sidecar carries to the
    device; none (never calibrated) is NOT READY.
    """
    if task.image_scores is None:
        return metrics
    from kdefect.trust.verdict import assess_images, targets_of

    got = task.image_scores(target, ("test",), data)["test"]
    if target.suffix == ".tflite":
        thr = got["params"].get("reject_min_score")
        src = read_sidecar(target).source_run
        cfg = RunDir.open(src).config() if src and Path(src).is_dir() else None
    else:
        run = RunDir.open(target)
        cal = load_calibration(run)
        thr, cfg = ((cal or {}).get("decision") or {}).get("reject_min_score"), run.config()
    metrics["verdict"] = assess_images(got["scores"], got["contains"], got["classes"], thr, targets_of(cfg),
                                       split="test" if data is None else str(data))
    return metrics


def evaluate(target: str | Path, data: str | None = None, out: str | Path | None = None,
             quiet: bool = False) -> dict[str, Any]:
    """Evaluate a run folder, a ``.keras`` model in one, or a ``.tflite`` model."""
    target = Path(target)
    if target.suffix == ".tflite":
        task = get_task(read_sidecar(target).task)
        if task.evaluate is not None:
            return _with_image_verdict(task, target, data, task.evaluate(target, data=data))
        from kdefect.export.evaluate import evaluate_tflite

        return evaluate_tflite(target, data=data, out=out)
    run = resolve_run(target)
    cfg = run.config()
    task = get_task(cfg.task)
    if task.evaluate is not None:
        return _with_image_verdict(task, run.path, data, task.evaluate(run.path, data=data))
    model_file = target if target.suffix in (".keras", ".h5") else run.model_path
    if not model_file.is_file():
        raise DataError(f"'{model_file}' does not exist: the run did not finish. Run `kdefect fit` again.")
    model = load_model(model_file)
    classes, good = run.classes()
    if data is None:
        from kdefect.data.split import label_indices, load_split

        paths, names = load_split(run.path)["test"]
        labels = label_indices(classes, names)
        skipped = 0
        out_dir = Path(out) if out else run.path / "evaluation" / "test"
    else:
        paths, labels, skipped = labelled_data(data, cfg, classes)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(data)).strip("_")[-60:]
        out_dir = Path(out) if out else run.path / "evaluation" / slug
    from kdefect.trust.verdict import targets_of

    cal = load_calibration(run) if model_file == run.model_path else None
    judge = (thresholds_from(cal) if cal else None, targets_of(cfg), "test" if data is None else str(data))
    metrics = evaluate_model(model, paths, labels, classes, cfg, out_dir=out_dir, good_label=good,
                             skipped=skipped, quiet=quiet, judge=judge)
    metrics.update({"model": str(model_file), "data": data or "run test split"})
    write_json(out_dir / "metrics.json", metrics)
    metrics["metrics_file"] = str(out_dir / "metrics.json")  # for the caller to show; not part of the file
    log.info("accuracy %.4f, macro recall %.4f on %d images -> %s", metrics["accuracy"], metrics["macro_recall"],
             metrics["n"], out_dir)
    return metrics
