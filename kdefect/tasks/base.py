"""The ``Task`` contract and the ``TASKS`` registry: what the engine, the exporter and the CLI ask of a task.

``config.task`` names an entry here, and every place that used to branch on the task's name
(``engine.fit/evaluate/predict``, ``export.export_run``, ``kdefect fit --backbone``) looks it up instead.

The engine's lifecycle (``engine.trainer``, ``evaluator``, ``predictor``, ``export.api``) is the classification
one. A task that still brings steps of its own sets the matching hooks (``train``, ``evaluate``, ``predict``,
``export``); detection does. Its training loop runs on the engine's run folder (``prepare_run``) and callback set
(``standard_callbacks``, passed in, so tasks never import the engine). The hooks load their module on first call,
so looking a task up stays TF-free and cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.core.registry import Registry


@dataclass(frozen=True)
class Task:
    """One problem type: its config keys, its label kind and the lifecycle steps it supplies itself.

    ``backbone_key``: the config key ``kdefect fit --backbone`` sets. ``image_labels``: one class per image
    (class weights, a good label and the calibrated verdict apply; the data layer keys on it).
    ``train(cfg, run, index, split, make_callbacks, quiet)`` (the engine has made the run folder and passes
    ``engine.callbacks.standard_callbacks``), ``evaluate(target, data)``, ``predict(target, inputs, out)`` and
    ``export(run, out, mode, readiness)``: ``None`` means the engine's lifecycle runs it.
    """

    name: str
    backbone_key: str
    image_labels: bool = True
    train: Callable[..., Any] | None = None
    evaluate: Callable[..., dict[str, Any]] | None = None
    predict: Callable[..., list[dict[str, Any]]] | None = None
    export: Callable[..., Path] | None = None
    preflight: Callable[..., None] | None = None  # (cfg, split, index): checks before the run folder exists
    # (target, splits, data) -> {split: {"scores", "contains", "classes", "params"}}: each image's best box score,
    # for a verdict on an image-level reject rule (``trust.calibrate`` picks its threshold; detection)
    image_scores: Callable[..., dict[str, Any]] | None = None
    qat: bool = True  # ``kdefect tflite --qat`` applies (fit's closing hint names it)


TASKS = Registry("task")


def get_task(name: str) -> Task:
    """The task registered as ``name``; a ConfigError with the closest name otherwise."""
    return TASKS.get(name)


def _detect_train(cfg: Any, run: Any, index: Any, split: dict[str, Any], make_callbacks: Callable[..., Any],
                  quiet: bool = False) -> Any:
    from kdefect.tasks.detect import train_detector  # lazy: keras-cv loads only for detection

    return train_detector(cfg, run, index, split, make_callbacks, quiet=quiet)


def _detect_evaluate(target: str | Path, data: str | None = None) -> dict[str, Any]:
    from kdefect.tasks.detect_infer import evaluate_detector  # lazy: keras-cv loads only for detection

    return evaluate_detector(target, data=data)


def _detect_predict(target: str | Path, inputs: list[str | Path], out: str | Path | None = None
                    ) -> list[dict[str, Any]]:
    from kdefect.tasks.detect_predict import predict_detector  # lazy: keras-cv loads only for detection

    return predict_detector(target, inputs, out=out)


def _detect_export(run: str | Path, out: str | Path, mode: str = "int8",
                   readiness: dict[str, Any] | None = None) -> Path:
    from kdefect.tasks.detect_infer import export_detector  # lazy: keras-cv loads only for detection

    return export_detector(run, out, mode=mode, readiness=readiness)


def _detect_image_scores(target: str | Path, splits: tuple[str, ...] = ("test",), data: str | None = None
                         ) -> dict[str, dict[str, Any]]:
    from kdefect.tasks.detect_scores import image_scores  # lazy: keras-cv loads only for detection

    return image_scores(target, splits=splits, data=data)


DETECT_MONITORS = ("val_loss", "val_map50")  # train.monitor values a detector accepts (besides auto)


def _detect_preflight(cfg: Any, split: dict[str, Any], index: Any = None) -> None:
    from kdefect.core.catalogue import check_detect_backbone
    from kdefect.errors import ConfigError
    from kdefect.models.backbones import BACKBONES
    from kdefect.tasks.warm_start import check_held_out

    if cfg.train.monitor not in ("auto", *DETECT_MONITORS):
        raise ConfigError(f"train.monitor={cfg.train.monitor} scores image labels; a detector keeps its epoch by "
                          f"{' or '.join(DETECT_MONITORS)} (or auto).")
    check_detect_backbone(cfg.detect.backbone, BACKBONES)
    if index is not None and cfg.detect.backbone_weights not in ("none", "") and len(split.get("test", [])):
        check_held_out(cfg.detect.backbone_weights, [index.paths[i] for i in split["test"]])


TASKS.add("classify", Task("classify", backbone_key="model.backbone"))
TASKS.add("detect", Task("detect", backbone_key="detect.backbone", image_labels=False, train=_detect_train,
                         evaluate=_detect_evaluate, predict=_detect_predict, export=_detect_export,
                         preflight=_detect_preflight, image_scores=_detect_image_scores, qat=False))
