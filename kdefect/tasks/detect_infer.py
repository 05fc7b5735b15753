"""Evaluate, predict and export detectors; Keras and TFLite share one numpy decoder.

Both paths stop at the raw head (box regression + class logits) and hand it to
``kdefect.core.detect_decode``; a ``.tflite`` is therefore measured with
exactly the code the device runs, on the run's saved test split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.config import Config
from kdefect.core import detect_decode as dd
from kdefect.core.run import RunDir
from kdefect.errors import DataError, ExportError
from kdefect.keras import keras

log = logging.getLogger(__name__)

QAT_UNSUPPORTED = (
    "QAT is not available for detectors: TF-MOT 0.8.1 `quantize_model` refuses the keras-cv YOLOv8 / RetinaNet "
    "graphs ('Quantizing a keras Model inside another keras Model is not supported': the backbone is a nested "
    "model; they also hold TFOpLambda ops and, for RetinaNet, subclassed keras-cv layers without QuantizeConfigs). "
    "Use full-integer PTQ (mode int8) and check its mAP with `kdefect evaluate model.tflite`."
)


def decode_params(cfg: Config, score_threshold: float | None = None) -> dict[str, Any]:
    """The ``detection`` dict (sidecar) for a run's config."""
    from kdefect.models.detectors import Anchors, decoding_params
    from kdefect.tasks.detect import input_size

    d = cfg.detect
    p = decoding_params(d.architecture, input_size(cfg), Anchors.from_config(d))
    p.update(score_threshold=d.score_threshold if score_threshold is None else score_threshold,
             iou_threshold=d.iou_threshold, max_detections=d.max_detections, class_agnostic=d.class_agnostic_nms,
             outputs={"boxes": 0, "scores": 1})
    return p


def keras_raw_outputs(raw: keras.Model, images: np.ndarray, batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Raw head per image from a Keras raw-head model.

    Through ``predict`` (one traced graph, reused while ``raw`` lives), not eager calls: eager runs the network
    op by op from Python, several times slower, and ``train.monitor: val_map50`` pays this after every epoch.
    """
    if not len(images):
        return []
    b, s = raw.predict(np.asarray(images, np.float32), batch_size=batch, verbose=0)
    return [{"boxes": bb, "scores": ss} for bb, ss in zip(np.asarray(b), np.asarray(s))]


def tflite_raw_outputs(path: str | Path, images: np.ndarray, params: dict[str, Any], threads: int = 1
                       ) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """Raw head per image from a TFLite model (+ per-image latency in ms)."""
    from kdefect.edge.interpreter import TFLiteRunner

    runner = TFLiteRunner(path, num_threads=threads)
    runner(images[0])  # warm-up
    outs, lat = [], []
    for im in images:
        t = time.perf_counter()
        raw = runner(im)
        lat.append((time.perf_counter() - t) * 1000)
        outs.append(dd.split_outputs(raw, params))
    return outs, lat


def evaluate_arrays(model_or_tflite: Any, cfg: Config, classes: list[str], arr: Any, out_dir: Path | None = None,
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
    """mAP etc. of a detector (keras-cv model or .tflite path) on a loaded split, in original-image pixels."""
    from kdefect.models.detectors import raw_head
    from kdefect.tasks.detect_metrics import detection_metrics

    params = dict(params or decode_params(cfg))
    extra: dict[str, Any] = {}
    if isinstance(model_or_tflite, (str, Path)):
        raws, lat = tflite_raw_outputs(model_or_tflite, arr.images, params)
        extra["latency_ms_p50"] = float(np.percentile(lat, 50))
        extra["latency_ms_p95"] = float(np.percentile(lat, 95))
    else:
        raws = keras_raw_outputs(raw_head(model_or_tflite, cfg.detect.architecture), arr.images)
    gt, dets = _in_image_pixels(raws, arr, params, cfg.detect.eval_score_threshold)
    m = detection_metrics(gt, arr.labels, dets, arr.sizes, classes, params["score_threshold"], pr_dir=out_dir)
    m.update(extra)
    return m


def _in_image_pixels(raws: list[dict[str, np.ndarray]], arr: Any, params: dict[str, Any], score_threshold: float
                     ) -> tuple[list[np.ndarray], list[dd.Detections]]:
    """Ground truth and decoded detections, both scaled from the input size back to each original image."""
    h, w = params["input_size"]
    dets = [dd.decode(r, params, score_threshold=score_threshold).scaled(ow / w, oh / h)
            for r, (ow, oh) in zip(raws, arr.sizes)]
    gt = [b * np.array([ow / w, oh / h] * 2, np.float32) for b, (ow, oh) in zip(arr.boxes, arr.sizes)]
    return gt, dets


def map50_of(raw: keras.Model, cfg: Config, classes: list[str], arr: Any, params: dict[str, Any]) -> float:
    """COCO mAP@0.5 of a raw-head model on a loaded split: the number ``train.monitor: val_map50`` keeps.

    Only the mAP (no sweep, no plots), so it is cheap enough to run after every epoch.
    """
    from kdefect.tasks.detect_metrics import coco_eval

    gt, dets = _in_image_pixels(keras_raw_outputs(raw, arr.images), arr, params, cfg.detect.eval_score_threshold)
    ev = coco_eval(gt, arr.labels, dets, arr.sizes, classes)
    return float(ev.stats[1]) if ev is not None else -1.0


def source_index(cfg: Config, data: str | None) -> Any:
    """The box index of the run's ``data.source`` (or of ``data``): indexed once, then cut per split."""
    from kdefect.data.sources import index_dataset

    if data is not None:
        cfg.data.source = str(data)
    return index_dataset(cfg.data, image_labels=False)


def split_arrays(cfg: Config, run: RunDir | None, data: str | None, split: str = "test",
                 index: Any = None) -> tuple[Any, list[str]]:
    """The run's saved ``split`` (or every image of ``data``) loaded at the model's input size.

    ``index``: ``source_index(cfg, data)`` when the caller loads several splits (indexing a VOC folder parses
    every annotation file).
    """
    from kdefect.data.detection_pipeline import load_arrays
    from kdefect.data.split import load_split, own_test_part
    from kdefect.tasks.detect import input_size

    if index is None:
        index = source_index(cfg, data)
    if data is None:
        if run is None:
            raise DataError("no run folder known for this model: pass --data with a VOC folder to evaluate on.")
        wanted = {str(Path(p).resolve()) for p in load_split(run.path).get(split, ([], []))[0]}
        pick = [i for i, p in enumerate(index.paths) if str(Path(p).resolve()) in wanted]
        if not pick:
            raise DataError(f"the {split} split of '{run.path}' matches no image of '{cfg.data.source}'.")
        index = index.subset(np.asarray(pick))
    else:
        index = own_test_part(index, data)  # a data set split into train/ test/: its test/ images only
    return load_arrays(index, input_size(cfg)), index.classes


def evaluate_detector(run_or_model: str | Path, data: str | None = None) -> dict[str, Any]:
    """Recompute detection metrics for a run folder or an exported ``.tflite`` (numpy decoding)."""
    from kdefect.core.sidecar import read_sidecar
    from kdefect.tasks.detect import load_detector

    target = Path(run_or_model)
    if target.suffix == ".tflite":
        sc = read_sidecar(target)
        run = RunDir.open(sc.source_run) if sc.source_run and Path(sc.source_run).is_dir() else None
        if run is None and data is None:
            raise DataError(f"'{target}' names no existing source run; pass --data with a VOC folder.")
        cfg = run.config() if run else Config(task="detect")
        arr, classes = split_arrays(cfg, run, data)
        if classes != sc.labels:
            raise DataError(f"the data's classes {classes} differ from the model's labels {sc.labels}.")
        m = evaluate_arrays(target, cfg, sc.labels, arr, params=sc.detection)
        m["model"] = str(target)
        from kdefect.utils.io import write_json

        write_json(target.with_suffix(".metrics.json"), m)
        return m
    model, cfg, classes = load_detector(target)
    run = RunDir.open(target)
    arr, data_classes = split_arrays(cfg, run, data)
    if data_classes != classes:
        raise DataError(f"the data's classes {data_classes} differ from the run's classes {classes}.")
    m = evaluate_arrays(model, cfg, classes, arr, out_dir=run.path if data is None else None)
    if data is None:
        prev = run.read_json("metrics.json") if run.metrics_path.is_file() else {}
        run.write_json("metrics.json", {**prev, **m})
    return m


def export_detector(run_dir: str | Path, out_path: str | Path, mode: str = "int8",
                    representative_count: int = 200, readiness: dict[str, Any] | None = None) -> Path:
    """Raw head -> TFLite (fixed size, batch 1; INT8 full-integer PTQ by default) + sidecar with decoding params.

    The sidecar's ``detection.reject_min_score`` is the run's calibrated operating threshold (the device rejects
    an image whose best box reaches it); ``readiness`` is the verdict the exporter checked (``export_run``).
    """
    from kdefect.core.calibration import load_calibration
    from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
    from kdefect.data.detection_pipeline import load_arrays
    from kdefect.data.sources import index_dataset
    from kdefect.data.split import load_split
    from kdefect.edge.interpreter import TFLiteRunner
    from kdefect.export.tflite import to_tflite
    from kdefect.models.detectors import raw_head
    from kdefect.tasks.detect import input_size, load_detector

    if mode == "qat":
        raise ExportError(QAT_UNSUPPORTED)
    run = RunDir.open(run_dir)
    model, cfg, classes = load_detector(run)
    raw = raw_head(model, cfg.detect.architecture)
    size = input_size(cfg)
    rep = None
    if mode == "int8":
        paths = load_split(run.path)["train"][0]  # sorted by class: take an even spread, not the first N
        step = max(1, len(paths) // max(1, representative_count))
        train = set(paths[::step][:representative_count])
        index = index_dataset(cfg.data, image_labels=False)
        pick = np.asarray([i for i, p in enumerate(index.paths) if p in train] or [0])
        rep = load_arrays(index.subset(pick), size).images.astype(np.float32)
    io = "uint8" if mode == "int8" else "float32"
    out = to_tflite(raw, out_path, mode=mode, representative=rep, input_type=io, output_type=io)
    params = decode_params(cfg)
    probe = np.random.default_rng(0).uniform(0, 255, (1, *size, 3)).astype(np.float32)
    ref = [np.asarray(t)[0] for t in raw(probe, training=False)]
    runner = TFLiteRunner(out)
    got = [o[0] for o in runner(probe.round())]
    params["outputs"] = _match_outputs(ref, got)
    reject = ((load_calibration(run) or {}).get("decision") or {}).get("reject_min_score")
    if reject is not None:
        params["reject_min_score"] = float(reject)
    detail = runner.input_detail
    scale, zp = detail["quantization"] if mode == "int8" else (1.0, 0)
    sc = Sidecar(sha256="", task="detect", labels=list(classes), good_label=None,
                 input=InputSpec(size=list(size), channels=3, dtype=np.dtype(detail["dtype"]).name,
                                 scale=float(scale or 1.0), zero_point=int(zp)),
                 output={"kind": "raw_head", "decoder": "kdefect.core.detect_decode"},
                 thresholds={"review_below": 0.0, "temperature": 1.0,
                             "score_threshold": cfg.detect.score_threshold},
                 detection=params, quantization=mode, source_run=str(run.path.resolve()), readiness=readiness)
    write_sidecar(out, sc)
    return out


def _match_outputs(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, int]:
    """Which interpreter output is boxes / scores: by shape, then by correlation with the Keras outputs."""
    idx = {}
    for name, r in zip(("boxes", "scores"), ref):
        cands = [i for i, g in enumerate(got) if g.shape == r.shape]
        if not cands:
            raise ExportError(f"the TFLite model has no output shaped like the Keras '{name}' {r.shape}.")
        corr = [np.corrcoef(r.ravel(), got[i].ravel())[0, 1] for i in cands]
        idx[name] = cands[int(np.nanargmax(corr))] if len(cands) > 1 else cands[0]
    return idx
