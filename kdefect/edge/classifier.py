"""A kdefect model on the device: sidecar-checked interpreter + preprocessing + decision rule."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.decisions import Decision, DecisionRule, rule_from_sidecar
from kdefect.edge.interpreter import TFLiteRunner, roles_of
from kdefect.edge.model_base import EdgeModel
from kdefect.edge.preprocess import RESIZE_MODES, ImagePolicy, load_image, prepare
from kdefect.errors import EdgeError, ModelIntegrityError

log = logging.getLogger(__name__)


class EdgeClassifier(EdgeModel):
    """Load ``model.tflite`` + ``model.json`` (refusing a mismatch) and classify images.

    ``trust_key``: the public key whose signature (``model.sig``) must cover the model, sidecar and bank;
    every file is read once and the checked bytes are what runs.

    The interpreter input is fed float pixels 0..255 resized like the training
    pipeline; ``TFLiteRunner`` quantises them with the tensor's own scale /
    zero point, exactly as ``kdefect evaluate model.tflite`` does.
    """

    def __init__(self, model_path: str | Path, threads: int = 1, edgetpu: bool = False,
                 require_edgetpu: bool = False, review_below: float | None = None,
                 temperature: float | None = None, policy: ImagePolicy | None = None,
                 trust_key: str | Path | None = None) -> None:
        t0 = time.perf_counter()
        art = self._open(model_path, trust_key)
        if art.manifest_sha256 and (review_below is not None or temperature is not None):
            log.warning("--review-below / --temperature override thresholds that the signature protects.")
        if self.sidecar.task != "classify":
            raise EdgeError(f"'{self.path}' is a {self.sidecar.task!r} model, not a classifier: open it with "
                            "kdefect.edge.detector.EdgeDetector (kdefect-edge chooses from the sidecar).")
        self.rule: DecisionRule = rule_from_sidecar(self.sidecar, review_below, temperature, model_path=self.path,
                                                    bank=art.bank)
        self.runner = TFLiteRunner(self.path, num_threads=threads, edgetpu=edgetpu or require_edgetpu,
                                   require_edgetpu=require_edgetpu, roles=roles_of(self.sidecar.output),
                                   model_content=art.model)
        if self.rule.knn is not None and "features" not in self.runner.roles:
            raise ModelIntegrityError(f"the sidecar of '{self.path}' has a kNN OOD gate but names no feature "
                                      "output: export again with `kdefect tflite --ood-gate knn`.")
        base = policy or ImagePolicy()
        self.policy = replace(base, train_modes=base.train_modes | frozenset(self.sidecar.input.modes))
        shape = self.runner.input_shape
        if len(shape) != 4 or shape[0] != 1:
            raise EdgeError(f"'{self.path}' has input shape {shape}; the edge runtime needs a static batch-1 "
                            "NHWC input (export with `kdefect tflite`).")
        self.size = (int(shape[1]), int(shape[2]))
        self.channels = int(shape[3])
        spec = self.sidecar.input
        if list(spec.size) != list(self.size) or int(spec.channels) != self.channels:
            raise ModelIntegrityError(
                f"sidecar of '{self.path}' says input {spec.size}x{spec.channels} but the model has "
                f"{list(self.size)}x{self.channels}; the sidecar belongs to another model: export again.")
        self.resize = str(getattr(spec, "resize", "squash") or "squash")
        if self.resize not in RESIZE_MODES:
            raise ModelIntegrityError(
                f"sidecar of '{self.path}' asks for resize mode {self.resize!r}, which this runtime does not know "
                f"({', '.join(RESIZE_MODES)}): update kdefect-edge to the version that exported the model.")
        self._warn_if_unready()
        self.load_s = time.perf_counter() - t0
        log.info("loaded %s (%s, %dx%dx%d, %d labels, %d thread(s)) in %.0f ms", self.path.name, self.backend,
                 *self.size, self.channels, len(self.labels), threads, self.load_s * 1000)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.rule.labels

    def load(self, source: str | Path | bytes | np.ndarray, name: str | None = None) -> np.ndarray:
        """Decode + check + resize: the float32 model input. Raises ``ImageRejected``."""
        return prepare(load_image(source, self.channels, self.policy, name), self.size, self.channels, self.resize)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Class output (dequantised) for one prepared input."""
        return self.runner.main_output(x).reshape(-1)

    def load_input(self, source: str | Path | bytes | np.ndarray, name: str | None = None) -> np.ndarray:
        """:meth:`load` + quantisation: the interpreter's input tensor, for :meth:`decide_input`. Raises ``ImageRejected``."""
        return self.runner.quantize(self.load(source, name))

    def decide(self, x: np.ndarray) -> Decision:
        """One invoke -> the decision (class output, plus the feature output when the OOD gate is kNN)."""
        return self.decide_input(self.runner.quantize(x))

    def decide_input(self, q: np.ndarray) -> Decision:
        """:meth:`decide` for an input tensor from :meth:`load_input` (the stream quantises in its loader thread)."""
        outs = self.runner.run_quantized(q)
        feats = outs[self.runner.roles["features"]].reshape(-1) if self.rule.knn is not None else None
        return self.rule(outs[self.runner.roles["main"]].reshape(-1), feats)

    def classify(self, source: str | Path | bytes | np.ndarray) -> Decision:
        return self.decide(self.load(source))

    def info(self) -> dict[str, Any]:
        return {"model": str(self.path), "sha256": self.sha256, "manifest_sha256": self.manifest_sha256,
                "backend": self.backend, "labels": list(self.labels),
                "input": [*self.size, self.channels], "resize": self.resize, "temperature": self.rule.temperature,
                "review_below": self.rule.review_below, "ood": self.rule.ood}
