"""Object detection task: train keras-cv YOLOv8 / RetinaNet into a kdefect run folder.

``kdefect fit`` calls :func:`train_detector` for ``task: detect``; the run folder
has the same layout as a classifier's (config, classes, split lists, history,
model, metrics, manifest) plus ``detector.weights.h5`` (weights of the model the
config rebuilds: robust across keras-cv versions) and PR-curve plots.
Evaluation, prediction and export live in ``detect_infer`` and are re-exported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdefect.config import Config
from kdefect.core.run import RunDir
from kdefect.errors import ConfigError, DataError
from kdefect.keras import keras, tf
from kdefect.utils.io import atomic_path

log = logging.getLogger(__name__)

WEIGHTS = "detector.weights.h5"


def input_size(cfg: Config) -> tuple[int, int]:
    """The detector's (h, w); refuses ``data.resize`` letterbox / crop (boxes are only scaled, as in squash)."""
    resize = getattr(cfg.data, "resize", "auto")
    if resize not in ("auto", "squash"):  # detection: auto means squash
        raise ConfigError(f"data.resize {resize!r}: detection supports squash only (boxes are scaled with the "
                          "whole image, not letterboxed or cropped); set data.resize: squash.")
    s = list(cfg.data.image_size)
    return (int(s[0]), int(s[-1]))


def build_from_config(cfg: Config, num_classes: int) -> keras.Model:
    """The trainable detector ``cfg`` describes (no weights loaded unless ``model.weights`` is a file)."""
    from kdefect.models.detectors import Anchors, build_detector

    d = cfg.detect
    return build_detector(d.architecture, d.backbone, num_classes, input_size(cfg), d.fpn_depth,
                          cfg.model.weights, d.head_convs, Anchors.from_config(d))


def load_detector(run: str | Path | RunDir) -> tuple[keras.Model, Config, list[str]]:
    """Rebuild a run's detector from its config and load its trained weights."""
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    cfg = run.config()
    classes, _ = run.classes()
    if not (run.path / WEIGHTS).is_file():
        raise DataError(f"'{run.path / WEIGHTS}' does not exist: the detection run did not finish. Run `kdefect fit`.")
    cfg.model.weights = "none"
    model = build_from_config(cfg, len(classes))
    model.load_weights(str(run.path / WEIGHTS))
    return model, cfg, classes


def train_detector(cfg: Config, run: RunDir, index: Any, split: dict[str, Any],
                   make_callbacks: Callable[..., Any], quiet: bool = False) -> RunDir:
    """Train, evaluate on the test split and write the artefacts of a detection run the engine prepared.

    ``kdefect.fit`` calls it (the ``train`` hook of the ``detect`` task) with the run folder from
    ``engine.trainer.prepare_run`` and ``make_callbacks`` = ``engine.callbacks.standard_callbacks``, passed in
    so that this task layer never imports the engine above it.
    """
    from kdefect.data.detection_pipeline import load_arrays, make_dataset
    from kdefect.models.detectors import compile_detector
    from kdefect.tasks.detect_infer import evaluate_arrays

    size, d = input_size(cfg), cfg.detect
    arrays = {k: load_arrays(index.subset(v), size) for k, v in split.items() if len(v)}
    switch = tf.Variable(True, trainable=False) if d.augment_mosaic and d.mosaic_epochs else None
    weights = None
    if cfg.data.sampling == "balanced":  # repeat-factor sampling: images of rare classes are drawn more often
        from kdefect.data.detection_pipeline import repeat_factors

        weights = repeat_factors(arrays["train"].labels, len(index.classes))
        log.info("data.sampling balanced: images of rare classes drawn up to %.2fx as often (repeat factors, "
                 "%d of %d training images above 1)", weights.max(), int((weights > 1).sum()), len(weights))
    train = make_dataset(arrays["train"], cfg.data.batch_size, True, max_boxes=d.max_boxes,
                         flip=cfg.data.augment.flip, jitter=d.jitter, mosaic=d.augment_mosaic, seed=cfg.seed,
                         repeat=cfg.train.steps_per_epoch is not None, mosaic_switch=switch, weights=weights)
    val = make_dataset(arrays["val"], cfg.data.batch_size, False, max_boxes=d.max_boxes) if "val" in arrays else None
    keras.utils.set_random_seed(cfg.seed)
    model = build_from_config(cfg, len(index.classes))
    warm = None
    if d.backbone_weights not in ("none", ""):  # in-domain warm start (a classifier on the same images)
        from kdefect.tasks.warm_start import load_backbone_weights

        warm = load_backbone_weights(model.backbone, d.backbone_weights, d.backbone_min_match)
    compile_detector(model, d.architecture, cfg.train.learning_rate)
    t0 = time.perf_counter()
    # no checkpoint: the best weights are kept in memory (a detector's .keras is slow to save)
    monitor = _monitor(cfg, val is not None)
    tricks = _tricks(cfg, len(arrays["train"].images), switch)
    if monitor == "val_map50":
        tricks.append(_val_map(cfg, index.classes, arrays["val"]))
    cbs = make_callbacks(cfg.train, cfg.data.batch_size, run.path / "history.csv", monitor,
                         loss_key="val_loss" if val is not None else "loss", start=t0, before_best=tricks)
    history, counter, best, budget = cbs.history, cbs.counter, cbs.best, cbs.budget
    model.fit(train, validation_data=val, epochs=cfg.train.epochs, steps_per_epoch=cfg.train.steps_per_epoch,
              callbacks=cbs.callbacks, verbose=0 if quiet else 2)
    train_s = time.perf_counter() - t0
    with atomic_path(run.path / WEIGHTS, suffix=".weights.h5") as tmp:
        model.save_weights(str(tmp))
    try:
        with atomic_path(run.model_path, suffix=".keras") as tmp:
            model.save(tmp)
    except Exception as exc:  # a wrapped registry backbone may not serialise; the weights file is what we load
        log.warning("model.keras not written (%s); the run loads from %s", exc, WEIGHTS)
    stats = {"train_seconds": round(train_s, 2), "epochs_run": len(history.rows), "best_epoch": max(best.best_epoch, 0) + 1,
             "train_images": counter.images,
             "train_images_per_s": round(counter.images / max(counter.seconds, 1e-9), 2),
             "time_budget_exhausted": bool(budget and budget.exhausted), "params": int(model.count_params()),
             "monitor": best.monitor, "best_value": best.best}
    if warm is not None:
        stats["warm_start"] = {k: warm[k] for k in ("source", "matched_layers", "layers", "matched_share")}
    metrics = {"training": stats}
    if "test" in arrays:
        metrics.update(evaluate_arrays(model, cfg, index.classes, arrays["test"], out_dir=run.path))
    run.write_json("metrics.json", metrics)
    run.write_manifest()
    log.info("detection run %s done: %s", run.path, {k: metrics.get(k) for k in ("map50", "map", "recall")})
    return run


def _monitor(cfg: Config, has_val: bool) -> str:
    """The log key that picks the kept epoch: ``train.monitor`` (auto = val_loss); the loss without validation."""
    if not has_val:
        return "loss"
    return "val_loss" if cfg.train.monitor in ("auto", "val_loss") else cfg.train.monitor


def _val_map(cfg: Config, classes: list[str], val: Any) -> keras.callbacks.Callback:
    """``train.monitor: val_map50``: score every epoch's weights by validation mAP@0.5 (the device's decoder)."""
    from kdefect.models.detectors import raw_head
    from kdefect.tasks.detect_infer import decode_params, map50_of
    from kdefect.tasks.detect_tricks import ValMAP

    params = decode_params(cfg)
    return ValMAP(lambda raw: map50_of(raw, cfg, classes, val, params),
                  lambda model: raw_head(model, cfg.detect.architecture))


def _tricks(cfg: Config, n_train: int, mosaic_switch: Any = None) -> list[keras.callbacks.Callback]:
    """The ``detect.ema`` / ``warmup_epochs`` / ``mosaic_epochs`` callbacks (before KeepBest: it keeps averages)."""
    from kdefect.tasks.detect_tricks import LinearWarmup, MosaicOff, WeightEMA, warmup_steps

    d, out = cfg.detect, []
    if mosaic_switch is not None:
        out.append(MosaicOff(mosaic_switch, d.mosaic_epochs))
    steps = warmup_steps(d.warmup_epochs, n_train, cfg.data.batch_size, cfg.train.steps_per_epoch)
    if steps:
        out.append(LinearWarmup(steps))
    if d.ema:
        out.append(WeightEMA(d.ema_decay, d.ema_tau))
    return out


def __getattr__(name: str) -> Any:  # evaluate / predict / export live in detect_infer (keeps files small)
    if name in ("evaluate_detector", "export_detector"):
        from kdefect.tasks import detect_infer

        return getattr(detect_infer, name)
    if name == "predict_detector":
        from kdefect.tasks.detect_predict import predict_detector

        return predict_detector
    raise AttributeError(f"module 'kdefect.tasks.detect' has no attribute {name!r}")
