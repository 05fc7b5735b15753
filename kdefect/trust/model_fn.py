"""The function an explainer perturbs: a batch of images -> the device's calibrated probabilities.

Why a separate object: LIME, SHAP, occlusion and the faithfulness curves must
query *the model that decides on the line*.  ``TFLiteProbs`` therefore loads
the ``.tflite`` through ``EdgeClassifier`` (sidecar and sha256 checked,
device preprocessing, decision rule with the sidecar's temperature) and maps
every perturbed image through ``DecisionRule.probabilities``, exactly as the
device turns one output vector into a decision.  Thousands of perturbed
images are fed in batches: a second interpreter has its input resized to
``batch`` images; a model that refuses the resize is run one image per
invoke, as on the device.  TF-free (``KerasProbs`` only calls the model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def exported_tflite(run_path: Path) -> Path | None:
    """The run's exported ``model.tflite`` (with its sidecar), newest first, or None."""
    found = [p for p in (run_path / "export").rglob("*.tflite") if p.with_suffix(".json").is_file()] \
        if (run_path / "export").is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


class ProbsFn:
    """Counts what an explanation costs: images evaluated, invokes and seconds in the model."""

    labels: tuple[str, ...] = ()
    size: tuple[int, int] = (0, 0)
    channels: int = 3
    kind: str = ""

    def __init__(self) -> None:
        self.images = 0
        self.invokes = 0
        self.seconds = 0.0

    def _probs(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, C) float pixels 0..255 -> (N, K) probabilities (float64)."""
        x = np.asarray(images, np.float32)
        if x.ndim == 3:
            x = x[None]
        t0 = time.perf_counter()
        p = self._probs(x) if len(x) else np.zeros((0, len(self.labels)))
        self.seconds += time.perf_counter() - t0
        self.images += len(x)
        return p

    def cost(self) -> dict[str, Any]:
        return {"model_images": self.images, "invokes": self.invokes, "model_s": round(self.seconds, 3)}

    def reset(self) -> None:
        self.images, self.invokes, self.seconds = 0, 0, 0.0


class TFLiteProbs(ProbsFn):
    """A ``.tflite`` + sidecar as the device runs it; ``batch``: images per invoke (1 = the device's loop)."""

    kind = "tflite"

    def __init__(self, model_path: str | Path, threads: int = 1, batch: int = 1) -> None:
        super().__init__()
        from kdefect.edge.classifier import EdgeClassifier

        self.clf = EdgeClassifier(model_path, threads=threads)
        self.path, self.sha256 = self.clf.path, self.clf.sha256
        self.labels, self.size, self.channels = tuple(self.clf.labels), self.clf.size, self.clf.channels
        self.rule = self.clf.rule
        self.threads = threads
        self.batch = 1
        self._interp: Any = None
        if batch > 1:
            self._try_batched(int(batch))

    def _try_batched(self, batch: int) -> None:
        """Resize a second interpreter's input to ``batch``; keep it only if it gives the batch-1 outputs."""
        from kdefect.edge.interpreter import load_interpreter

        try:
            interp = load_interpreter(self.path, self.threads)
            idx = interp.get_input_details()[0]["index"]
            interp.resize_tensor_input(idx, [batch, *self.size, self.channels], strict=False)
            interp.allocate_tensors()
            self._interp, self.batch = interp, batch
            probe = np.random.default_rng(0).uniform(0, 255, (2, *self.size, self.channels)).astype(np.float32)
            same = np.allclose(self._main_batched(probe), np.stack([self._main_one(p) for p in probe]), atol=1e-5)
        except (ValueError, RuntimeError) as exc:
            log.info("%s keeps batch 1 (%s); perturbed images run one per invoke.", self.path.name, exc)
            same = False
        if not same:
            self._interp, self.batch = None, 1
        self.reset()

    def _main_one(self, x: np.ndarray) -> np.ndarray:
        self.invokes += 1
        return self.clf.runner.main_output(x).reshape(-1)

    def _main_batched(self, x: np.ndarray) -> np.ndarray:
        from kdefect.edge.interpreter import dequantize_output, quantize_input

        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[self.clf.runner.roles["main"]]
        rows = []
        for i in range(0, len(x), self.batch):
            chunk = x[i:i + self.batch]
            pad = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - len(chunk), 0)]) \
                if len(chunk) < self.batch else chunk
            self._interp.set_tensor(inp["index"], quantize_input(pad, inp))
            self._interp.invoke()
            self.invokes += 1
            rows.append(dequantize_output(self._interp.get_tensor(out["index"]), out).reshape(self.batch, -1)[:len(chunk)])
        return np.concatenate(rows)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The dequantised class outputs, before the decision rule."""
        return self._main_batched(x) if self._interp is not None else np.stack([self._main_one(i) for i in x])

    def _probs(self, x: np.ndarray) -> np.ndarray:
        return np.stack([self.rule.probabilities(o) for o in self.raw(x)])

    def load(self, path: str | Path) -> np.ndarray:
        """An image file prepared exactly as the device prepares it (decode, checks, resize)."""
        return self.clf.load(path)


class KerasProbs(ProbsFn):
    """A float Keras classifier (softmax output) with an optional temperature, for comparison and Grad-CAM runs."""

    kind = "keras"

    def __init__(self, model: Any, labels: list[str] | tuple[str, ...], temperature: float = 1.0,
                 batch: int = 64) -> None:
        super().__init__()
        self.model, self.labels, self.temperature, self.batch = model, tuple(labels), float(temperature), batch
        _, h, w, c = model.input_shape
        self.size, self.channels = (int(h), int(w)), int(c)

    def _probs(self, x: np.ndarray) -> np.ndarray:
        from kdefect.core.decisions import softmax

        out = []
        for i in range(0, len(x), self.batch):
            out.append(np.asarray(self.model(x[i:i + self.batch], training=False), np.float64))
            self.invokes += 1
        p = np.concatenate(out)
        if self.temperature == 1.0:
            return p
        return np.stack([softmax(np.log(np.maximum(r, 1e-12)) / self.temperature) for r in p])


@dataclass
class BoxVectors:
    """The boxes a detector kept for one image, each with its whole class-score vector (what D-RISE compares).

    ``boxes`` (M, 4) xyxy model-input pixels, ``classes`` (M,), ``scores`` (M,) best first, ``vectors`` (M, K).
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    vectors: np.ndarray


class TFLiteDetector:
    """A detector ``.tflite`` + sidecar as the device runs it: images -> the decoded boxes per image.

    Why not a ``ProbsFn``: a detector's answer is a set of boxes, not one probability vector.  Each image goes
    through the sidecar-checked bytes, ``TFLiteRunner`` (one batch-1 invoke, as on the device) and
    ``detect_decode.decode`` with the sidecar's thresholds and NMS, i.e. exactly what ``kdefect predict
    model.tflite`` reports; the sigmoid class scores of each kept box's anchor come along.
    """

    kind = "tflite"

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        from kdefect.core import detect_decode as dd
        from kdefect.edge.detector import EdgeDetector

        device = EdgeDetector(model_path, threads=threads)  # the device's own loading and checks
        self.path, self.params, self.labels, self.size = device.path, device.params, device.labels, device.size
        self._dd, self.runner = dd, device.runner
        self.batch, self.images, self.invokes, self.seconds = 1, 0, 0, 0.0

    def __call__(self, images: np.ndarray) -> list[BoxVectors]:
        """(N, H, W, C) float pixels 0..255 -> the kept boxes of each image, as ``decode`` keeps them."""
        dd, out = self._dd, []
        t0 = time.perf_counter()
        for im in np.asarray(images, np.float32):
            raw = dd.split_outputs(self.runner(im), self.params)
            det = dd.decode(raw, self.params)
            anchors = int(np.prod(np.shape(raw["boxes"])[:-1]))
            kept = np.asarray(raw["scores"]).reshape(anchors, -1)[det.anchors]  # only the kept boxes' rows
            out.append(BoxVectors(det.boxes, det.classes, det.scores, dd.sigmoid(kept)))
        self.images += len(out)
        self.invokes += len(out)
        self.seconds += time.perf_counter() - t0
        return out

    def load(self, path: str | Path) -> np.ndarray:
        """An image file stretched to the input size with Pillow bilinear, as ``kdefect predict`` prepares it."""
        return self._dd.prepare_image(path, self.size)[0].astype(np.float32)
