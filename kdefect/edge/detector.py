"""A kdefect detector on the device: the sidecar-checked interpreter, the shared numpy decoder, the reject rule.

Why a second model class and not a flag on ``EdgeClassifier``: a detector's answer is a set of boxes and an
image-level reject decision, not one probability vector.  It offers the same small surface that
``kdefect.edge.stream`` drives (``load_input`` / ``decide_input`` / ``warm_up`` / ``info``), so the loader
thread, the durable log, the restart ledger and the signals are the classifier's, unchanged.

Every step is the one the host validated: ``detect_decode.prepare_image`` (Pillow bilinear stretch, as in
training and ``kdefect predict model.tflite``), one batch-1 invoke, ``detect_decode.decode`` with the sidecar's
thresholds and NMS, and ``detect_decode.rejects`` with the operating threshold chosen on validation
(``detection.reject_min_score``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core import detect_decode as dd
from kdefect.core.decisions import Decision
from kdefect.edge.interpreter import TFLiteRunner, roles_of
from kdefect.edge.model_base import EdgeModel
from kdefect.edge.preprocess import ImageRejected
from kdefect.errors import EdgeError, ModelIntegrityError

log = logging.getLogger(__name__)


class EdgeDetector(EdgeModel):
    """Load a detector ``.tflite`` + sidecar (refusing a mismatch) and decide parts by their boxes.

    A part is rejected (verdict ``fail``) when its best anchor scores at least ``reject_min_score``; its record
    carries the boxes drawn at ``score_threshold`` in the original image's pixels.  ``label`` / ``score`` are the
    best anchor's class and score, whether or not that clears the threshold.
    """

    def __init__(self, model_path: str | Path, threads: int = 1, edgetpu: bool = False,
                 require_edgetpu: bool = False, trust_key: str | Path | None = None) -> None:
        t0 = time.perf_counter()
        art = self._open(model_path, trust_key)
        if self.sidecar.task != "detect" or not self.sidecar.detection:
            raise EdgeError(f"'{self.path}' is a {self.sidecar.task!r} model, not a detector.")
        self.params = dict(self.sidecar.detection)
        self.size = tuple(int(v) for v in self.params["input_size"])
        self.channels = 3  # detectors train on RGB (grey images are replicated)
        self.runner = TFLiteRunner(self.path, num_threads=threads, edgetpu=edgetpu or require_edgetpu,
                                   require_edgetpu=require_edgetpu, roles=roles_of(self.sidecar.output),
                                   model_content=art.model)
        shape = tuple(int(v) for v in self.runner.input_shape)
        if shape != (1, *self.size, 3):
            raise ModelIntegrityError(f"sidecar of '{self.path}' says input {list(self.size)}x3 but the model has "
                                      f"{list(shape)}; the sidecar belongs to another model: export again.")
        if "reject_min_score" not in self.params:
            log.warning("%s has no operating threshold from validation (detection.reject_min_score): parts are "
                        "rejected at the box threshold %.3g.", self.path.name, self.params.get("score_threshold", 0.25))
        self._warn_if_unready()
        self.load_s = time.perf_counter() - t0
        log.info("loaded detector %s (%s, %s, %dx%d, %d labels, %d thread(s)) in %.0f ms", self.path.name,
                 self.params.get("architecture"), self.backend, *self.size, len(self.labels), threads,
                 self.load_s * 1000)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.sidecar.labels)

    def load_input(self, source: str | Path | np.ndarray, name: str | None = None) -> tuple[np.ndarray, tuple]:
        """Decode + stretch + quantise: (the interpreter's input tensor, the original (w, h)).

        Raises ``ImageRejected`` for an unreadable image (the stream logs it as an error record).
        """
        try:
            rgb, orig = dd.prepare_image(source, self.size)
        except EdgeError as exc:
            raise ImageRejected(str(exc)) from None
        return self.runner.quantize(rgb.astype(np.float32)), orig

    def decide_input(self, x: tuple[np.ndarray, tuple]) -> Decision:
        """One invoke -> the part's decision, with its boxes in the original image's pixels."""
        q, (ow, oh) = x
        raw = dd.split_outputs(self.runner.run_quantized(q), self.params)
        logits = np.asarray(raw["scores"], np.float32).reshape(-1, len(self.labels))
        best = int(logits.max(1).argmax()) if logits.size else 0
        score = dd.image_score(raw)
        det = dd.decode(raw, self.params).scaled(ow / self.size[1], oh / self.size[0])
        return Decision(label=self.labels[int(logits[best].argmax())] if logits.size else "", score=score,
                        probs={}, review=False, verdict="fail" if dd.rejects(score, self.params) else "pass",
                        boxes=det.to_list(list(self.labels)))

    def detect(self, source: str | Path | np.ndarray) -> Decision:
        return self.decide_input(self.load_input(source))

    def info(self) -> dict[str, Any]:
        return {"model": str(self.path), "task": "detect", "sha256": self.sha256,
                "manifest_sha256": self.manifest_sha256, "backend": self.backend, "labels": list(self.labels),
                "input": [*self.size, 3], "architecture": self.params.get("architecture"),
                "score_threshold": self.params.get("score_threshold"),
                "reject_min_score": self.params.get("reject_min_score")}
