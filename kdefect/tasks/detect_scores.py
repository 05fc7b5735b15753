"""Per-image reject scores of a detector on one split: what its READY / NOT READY verdict is computed from.

A line decides per part, not per box: an image is rejected iff its best box scores at or above the operating
threshold (``core.detect_decode.rejects``). This module runs a run's Keras model, or an exported ``.tflite``
through the same numpy decoder as the device, over a saved split and returns each image's best box score
(``core.detect_decode.image_score``) with the classes its ground truth holds. The threshold choice and the
verdict live in ``kdefect.trust`` (``operating_point``, ``verdict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.config import Config
from kdefect.core import detect_decode as dd
from kdefect.core.run import RunDir
from kdefect.data.split import load_split


def contains_matrix(labels: list[np.ndarray], k: int) -> np.ndarray:
    """(N, K) bool: which classes each image's boxes hold (an all-False row is a defect-free image)."""
    out = np.zeros((len(labels), k), bool)
    for i, lab in enumerate(labels):
        out[i, np.asarray(lab, int).reshape(-1)] = True
    return out


def image_scores(target: str | Path, splits: Sequence[str] = ("test",), data: str | None = None
                 ) -> dict[str, dict[str, Any]]:
    """``{split: {"scores" (N,), "contains" (N, K), "classes", "params"}}`` of a run folder or ``.tflite``.

    The model is loaded and the data set indexed once for all ``splits`` (calibration scores val and test).
    ``data``: a VOC folder to score instead of the run's split (one split name, which keys the result).
    ``params``: the decoding dict the scores were made with (a ``.tflite``'s sidecar ``detection``, which holds
    its ``reject_min_score`` when calibrated).
    """
    from kdefect.tasks.detect_infer import (
        decode_params,
        keras_raw_outputs,
        source_index,
        split_arrays,
        tflite_raw_outputs,
    )

    if data is not None and len(splits) != 1:
        raise ValueError(f"image_scores on a data folder scores one set, not {list(splits)}")
    target = Path(target)
    if target.suffix == ".tflite":
        from kdefect.core.sidecar import read_sidecar

        sc = read_sidecar(target)
        run = RunDir.open(sc.source_run) if sc.source_run and Path(sc.source_run).is_dir() else None
        cfg, classes, params = (run.config() if run else Config(task="detect")), list(sc.labels), dict(sc.detection)
        model: Any = target
    else:
        from kdefect.models.detectors import raw_head
        from kdefect.tasks.detect import load_detector

        run = RunDir.open(target)
        keras_model, cfg, classes = load_detector(run)
        model, params = raw_head(keras_model, cfg.detect.architecture), decode_params(cfg)
    saved = load_split(run.path) if run is not None else {}
    index, out = None, {}
    for split in splits:
        if data is None and not len(saved.get(split, ([], []))[0]):
            out[split] = {"scores": np.zeros(0), "contains": np.zeros((0, len(classes)), bool), "classes": classes,
                          "params": params}
            continue
        index = source_index(cfg, data) if index is None else index
        arr, _ = split_arrays(cfg, run, data, split, index=index)
        raws = tflite_raw_outputs(model, arr.images, params)[0] if isinstance(model, Path) \
            else keras_raw_outputs(model, arr.images)
        out[split] = {"scores": np.asarray([dd.image_score(r) for r in raws], np.float64),
                      "contains": contains_matrix(arr.labels, len(classes)), "classes": classes, "params": params}
    return out
