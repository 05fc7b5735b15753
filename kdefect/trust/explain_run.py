"""``kdefect explain MODEL IMAGES --method ...``: open the model, explain each image, write overlays + cost.

Why two kinds of MODEL: an auditor's question is about the ``.tflite`` that
decided on the line, so LIME, SHAP and occlusion run on it through the
device's runner, preprocessing and decision rule (``model_fn.TFLiteProbs``).
A run folder (or ``.keras``) is explained on its exported ``model.tflite``
when the run has one, else on the float model; Grad-CAM always needs the
Keras model's gradients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ModelError
from kdefect.trust.model_fn import KerasProbs, ProbsFn, TFLiteProbs, exported_tflite
from kdefect.trust.saliency import AGNOSTIC, METHODS, ExplainSettings, Saliency, cost_of, display, explain_one
from kdefect.utils.io import write_bytes, write_json

log = logging.getLogger(__name__)


@dataclass
class Explainable:
    """What the methods need: the probability function, the Keras model (Grad-CAM) and an image loader."""

    fn: ProbsFn | None
    keras_model: Any
    labels: tuple[str, ...]
    load: Callable[[list[Path]], np.ndarray]
    source: str


def open_model(model_path: str | Path, methods: list[str], threads: int = 1, batch: int = 1) -> Explainable:
    """A ``.tflite`` (device path) or a run folder / ``.keras`` file, loaded only as far as ``methods`` need."""
    p = Path(model_path)
    if p.suffix == ".tflite":
        if "gradcam" in methods:
            raise ModelError("Grad-CAM needs the Keras model's gradients: pass the run folder or its model.keras, "
                             "or use --method lime, shap or occlusion on the .tflite.")
        fn = TFLiteProbs(p, threads=threads, batch=batch)
        return Explainable(fn, None, fn.labels, lambda files: np.stack([fn.load(f) for f in files]), str(p))
    from kdefect.core.run import RunDir
    from kdefect.data.pipeline import load_images, resize_mode
    from kdefect.trust.outputs import load_model

    run_dir = p if p.is_dir() else p.parent if (p.parent / "config.yaml").is_file() else None
    if run_dir is not None:
        run = RunDir.open(run_dir)
        labels, resize, keras_path = run.classes()[0], resize_mode(run.config().data), run.model_path
        tfl = exported_tflite(run.path)
    else:
        from kdefect.utils.io import read_json

        cj = p.parent / "classes.json"
        labels, resize, keras_path, tfl = (read_json(cj)["classes"] if cj.is_file() else None), "squash", p, None
    agnostic = any(m in AGNOSTIC for m in methods)
    if tfl is not None and agnostic:
        log.info("LIME / SHAP / occlusion run on the exported %s (the model the device runs)", tfl)
        fn: ProbsFn | None = TFLiteProbs(tfl, threads=threads, batch=batch)
        if "gradcam" not in methods:
            return Explainable(fn, None, fn.labels, lambda files: np.stack([fn.load(f) for f in files]), str(tfl))
    model = load_model(keras_path)
    labels = tuple(labels or [str(i) for i in range(int(model.output_shape[-1]))])
    if tfl is None and agnostic:
        log.warning("%s has no exported model.tflite: explaining the float Keras model, not the device model.", p)
        fn = KerasProbs(model, labels)
    elif tfl is None:
        fn = None
    _, h, w, c = model.input_shape
    return Explainable(fn, model, labels, lambda files: load_images([str(f) for f in files], (h, w), c, resize=resize),
                       str(keras_path))


def explain_files(model_path: str | Path, inputs: list[str | Path], out_dir: str | Path, methods: list[str],
                  settings: ExplainSettings | None = None, class_name: str | None = None, threads: int = 1,
                  progress: Callable[[int], None] | None = None, box: int = 0) -> dict[str, Any]:
    """Overlay PNGs ``<stem>_<method>.png`` per image and ``explanations.json`` (classes, cost); returns the summary.

    A detector (its sidecar or run config says ``task: detect``) is explained with D-RISE on box ``box``
    (``explain_detect``); the classifier methods refuse it, and D-RISE refuses a classifier.
    """
    from kdefect.engine.predictor import collect_images
    from kdefect.trust.explain import overlay, png_bytes
    from kdefect.trust.explain_detect import check_methods, explain_detector_files

    bad = [m for m in methods if m not in (*METHODS, "drise")]
    if bad or not methods:
        raise ModelError(f"explanation method(s) {bad or methods} unknown; use {', '.join(METHODS)} or drise.")
    settings = settings or ExplainSettings()
    if check_methods(model_path, methods, class_name):
        return explain_detector_files(model_path, inputs, out_dir, settings, box, threads, progress)
    ex = open_model(model_path, methods, threads, settings.batch)
    if class_name is not None and class_name not in ex.labels:
        raise ModelError(f"--class '{class_name}' is not one of the model's classes {list(ex.labels)}.")
    files = collect_images(list(inputs))
    images = ex.load(files)
    probs = ex.fn(images) if ex.fn is not None else np.asarray(ex.keras_model.predict(images, verbose=0))
    out, rows = Path(out_dir), []
    cost: dict[str, list[Saliency]] = {m: [] for m in methods}
    for f, img, p in zip(files, images, probs, strict=True):
        cls = ex.labels.index(class_name) if class_name is not None else int(np.argmax(p))
        row: dict[str, Any] = {"image": str(f), "explained": ex.labels[cls], "probs": dict(zip(ex.labels, map(float, p)))}
        for m in methods:
            s = explain_one(m, ex.fn, img, cls, settings, ex.keras_model)
            cost[m].append(s)
            shown = np.clip(img, 0, 255).astype(np.uint8)
            row[m] = str(write_bytes(out / f"{f.stem}_{m}.png", png_bytes(overlay(shown, display(s.heat)))))
        rows.append(row)
        if progress is not None:
            progress(1)
    summary = {"model": ex.source, "model_kind": ex.fn.kind if ex.fn is not None else "keras",
               "batch": getattr(ex.fn, "batch", None), "settings": settings.to_dict(), "images": rows,
               "cost": {m: cost_of(v) for m, v in cost.items()}}
    write_json(out / "explanations.json", summary)
    log.info("explained %d image(s) with %s -> %s", len(files), ", ".join(methods), out)
    return summary
