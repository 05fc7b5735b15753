"""``kdefect predict`` for detectors: boxes / classes / scores per image as JSON or CSV + annotated PNGs.

Works on a run folder (Keras) or an exported ``.tflite`` (its sidecar); both
decode with ``kdefect.core.detect_decode`` so the host shows what the device sees.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core import detect_decode as dd
from kdefect.utils.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)


def _raw_source(model_path: Path) -> tuple[Any, dict[str, Any], list[str]]:
    """A callable image(H,W,3 uint8) -> raw-head dict, the decoding params and the labels."""
    if model_path.suffix == ".tflite":
        from kdefect.core.sidecar import read_sidecar
        from kdefect.edge.interpreter import TFLiteRunner

        sc = read_sidecar(model_path)
        runner = TFLiteRunner(model_path)
        return (lambda im: dd.split_outputs(runner(im), sc.detection)), sc.detection, sc.labels
    from kdefect.models.detectors import raw_head
    from kdefect.tasks.detect import load_detector
    from kdefect.tasks.detect_infer import decode_params

    model, cfg, classes = load_detector(model_path)
    raw = raw_head(model, cfg.detect.architecture)

    def run(im: np.ndarray) -> dict[str, np.ndarray]:
        b, s = raw(im[None].astype(np.float32), training=False)
        return {"boxes": np.asarray(b)[0], "scores": np.asarray(s)[0]}

    from kdefect.core.calibration import load_calibration
    from kdefect.core.run import RunDir

    params = decode_params(cfg)
    reject = ((load_calibration(RunDir.open(model_path)) or {}).get("decision") or {}).get("reject_min_score")
    if reject is not None:  # the run's operating threshold, as the export carries it to the device
        params["reject_min_score"] = float(reject)
    return run, params, classes


PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


def annotate(im: Any, dets: list[dict[str, Any]], width: int = 2) -> Any:
    """Draw one rectangle + label + score per detection (``to_list`` rows) on a Pillow image, in place."""
    from PIL import ImageDraw

    pen = ImageDraw.Draw(im)
    for d in dets:
        color = PALETTE[d["class_id"] % len(PALETTE)]
        pen.rectangle(d["box"], outline=color, width=width)
        pen.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['label']} {d['score']:.2f}", fill=color)
    return im


def draw(path: Path, dets: list[dict[str, Any]], out: Path) -> None:
    """Annotated copy of the image: one rectangle + label + score per detection (Pillow)."""
    from PIL import Image

    im = annotate(Image.open(path).convert("RGB"), dets)
    with atomic_path(out, suffix=".png") as tmp:
        im.save(tmp, format="PNG")


def predict_detector(model_path: str | Path, inputs: list[str | Path] | str | Path,
                     out: str | Path | None = None, annotate: bool = True) -> list[dict[str, Any]]:
    """Detections per image (boxes xyxy in original pixels); ``out`` .json / .csv, PNGs in ``<out stem>_annotated/``.

    Each image also gets the line's decision: ``reject`` iff its ``best_score`` reaches the operating threshold.
    """
    from kdefect.data.images import collect_images

    files = collect_images([inputs] if isinstance(inputs, (str, Path)) else list(inputs))
    run, params, labels = _raw_source(Path(model_path))
    h, w = params["input_size"]
    results = []
    for f in files:
        im, (ow, oh) = dd.prepare_image(f, (h, w))
        raw = run(im)
        det = dd.decode(raw, params).scaled(ow / w, oh / h)
        score = dd.image_score(raw)
        results.append({"path": str(f), "width": ow, "height": oh, "reject": dd.rejects(score, params),
                        "best_score": round(score, 5), "detections": det.to_list(labels)})
    if out is not None:
        out = Path(out)
        if out.suffix.lower() == ".csv":
            buf = io.StringIO()
            wr = csv.writer(buf)
            wr.writerow(["path", "label", "score", "xmin", "ymin", "xmax", "ymax"])
            for r in results:
                for d in r["detections"]:
                    wr.writerow([r["path"], d["label"], d["score"], *d["box"]])
            write_text(out, buf.getvalue())
        else:
            write_json(out, results)
        if annotate:
            folder = out.parent / f"{out.stem}_annotated"
            for r in results:
                draw(Path(r["path"]), r["detections"], folder / f"{Path(r['path']).stem}.png")
    log.info("%d image(s), %d detection(s)", len(results), sum(len(r["detections"]) for r in results))
    return results
