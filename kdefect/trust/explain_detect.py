"""``kdefect explain DETECTOR.tflite IMAGES --method drise [--box K]``: one D-RISE map per image, for one box.

Why apart from ``explain_run``: a detector is explained per box, not per
class, and only D-RISE applies; LIME, SHAP, occlusion and Grad-CAM explain
a classifier's class probability.  The detector runs as the device runs it
(``model_fn.TFLiteDetector``); a run folder is explained on its exported
detector ``.tflite``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ModelError
from kdefect.trust.saliency_settings import ExplainSettings
from kdefect.utils.io import write_bytes, write_json

log = logging.getLogger(__name__)

CLASSIFIER_METHODS = ("gradcam", "lime", "shap", "occlusion")


def is_detector(model_path: str | Path) -> bool:
    """True for a detector ``.tflite`` (its sidecar's task) or a detector run folder (its config's task)."""
    p = Path(model_path)
    if p.suffix == ".tflite":
        from kdefect.core.sidecar import parse_sidecar, sidecar_path

        sp = sidecar_path(p)  # a missing sidecar is refused later, with its own message, by the model's loader
        return sp.is_file() and parse_sidecar(sp.read_bytes(), sp).task == "detect"
    run_dir = p if p.is_dir() else p.parent
    if not (run_dir / "config.yaml").is_file():
        return False
    from kdefect.core.run import RunDir

    return RunDir.open(run_dir).config().task == "detect"


def detector_tflite(model_path: str | Path) -> Path:
    """The ``.tflite`` to explain: the file itself, or a detector run's newest export."""
    from kdefect.trust.model_fn import exported_tflite

    p = Path(model_path)
    if p.suffix == ".tflite":
        return p
    found = exported_tflite(p if p.is_dir() else p.parent)
    if found is None:
        raise ModelError(f"'{p}' is a detector run without an exported .tflite: D-RISE explains the model the device "
                         "runs, so export it first (kdefect tflite RUN).")
    return found


def default_methods(model_path: str | Path, detector: bool | None = None) -> list[str]:
    """What ``kdefect explain`` runs without --method: drise for a detector, lime for a .tflite, else gradcam."""
    if is_detector(model_path) if detector is None else detector:
        return ["drise"]
    return ["lime"] if str(model_path).endswith(".tflite") else ["gradcam"]


def check_methods(model_path: str | Path, methods: list[str], class_name: str | None,
                  detector: bool | None = None) -> bool:
    """True when ``methods`` ask for D-RISE on a detector; a mix of model kind and method is a ``ModelError``.

    ``detector``: ``is_detector(model_path)`` when the caller has it already (it reads the sidecar or config).
    """
    detector = is_detector(model_path) if detector is None else detector
    if detector and methods != ["drise"]:
        raise ModelError(f"'{model_path}' is a detector: explain its boxes with --method drise (--box K); "
                         f"{', '.join(CLASSIFIER_METHODS)} explain a classifier's class.")
    if not detector and "drise" in methods:
        raise ModelError(f"--method drise explains a detector's box, and '{model_path}' is a classifier: use "
                         f"--method {', '.join(CLASSIFIER_METHODS[1:])} (or gradcam on the Keras model).")
    if detector and class_name is not None:
        raise ModelError("--class does not apply to a detector: choose the box with --box K (0 = the highest score).")
    return detector


def explain_detector_files(model_path: str | Path, inputs: list[str | Path], out_dir: str | Path,
                           settings: ExplainSettings | None = None, box: int = 0, threads: int = 1,
                           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``<stem>_drise.png`` per image (map + the explained box) and ``explanations.json``; returns the summary.

    An image on which the detector keeps no box ``box`` is listed as skipped (with the reason); when no image
    has it, nothing is explained and a ``ModelError`` says why.
    """
    from PIL import Image

    from kdefect.data.images import collect_images
    from kdefect.tasks.detect_predict import annotate
    from kdefect.trust.explain import overlay, png_bytes
    from kdefect.trust.explain_drise import drise_map
    from kdefect.trust.model_fn import TFLiteDetector
    from kdefect.trust.saliency import cost_of, display

    settings = settings or ExplainSettings()
    fn = TFLiteDetector(detector_tflite(model_path), threads=threads)
    files = collect_images(list(inputs))
    out, rows, done = Path(out_dir), [], []
    for f in files:
        img = fn.load(f)
        base = fn(img[None])[0]
        boxes = [{"box": [round(float(v), 2) for v in b], "class_id": int(c), "label": fn.labels[int(c)],
                  "score": round(float(s), 5)} for b, c, s in zip(base.boxes, base.classes, base.scores)]
        row: dict[str, Any] = {"image": str(f), "detections": boxes}
        if box >= len(boxes):
            row["skipped"] = f"the detector keeps {len(boxes)} box(es) here, no box {box}"
            log.warning("%s: %s", f.name, row["skipped"])
        else:
            s = drise_map(fn, img, settings, box, base=base)
            s.model_images += 1  # the unmasked image, run above
            done.append(s)
            shown = Image.fromarray(overlay(np.clip(img, 0, 255).astype(np.uint8), display(s.heat)))
            png = png_bytes(np.asarray(annotate(shown, [boxes[box]], width=1)))
            row.update(explained={"index": box, **boxes[box], "weight_spread": round(s.spread, 6)},
                       drise=str(write_bytes(out / f"{f.stem}_drise.png", png)))
        rows.append(row)
        if progress is not None:
            progress(1)
    if not done:
        raise ModelError(f"no image has a box {box} at the model's score_threshold "
                         f"({fn.params.get('score_threshold')}): nothing to explain; try --box 0 or other images.")
    summary = {"model": str(fn.path), "model_kind": fn.kind, "task": "detect", "batch": fn.batch,
               "input_size": list(fn.size), "settings": settings.to_dict(), "images": rows,
               "cost": {"drise": {**cost_of(done), "invokes": fn.invokes, "model_s": round(fn.seconds, 3)}}}
    write_json(out / "explanations.json", summary)
    log.info("explained box %d on %d of %d image(s) with D-RISE -> %s", box, len(done), len(files), out)
    return summary
