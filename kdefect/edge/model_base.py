"""What every model on the device shares: the checked artefacts, the interpreter's identity, warm-up, unready warning.

Why a base: ``EdgeClassifier`` and ``EdgeDetector`` differ in what one invoke means (a probability vector or a set
of boxes), not in how a model is opened, trusted and warmed up; the stream and the CLI rely on that common part.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kdefect.core.sidecar import Sidecar
from kdefect.edge.signing import read_artefacts
from kdefect.errors import EdgeError

log = logging.getLogger(__name__)


class EdgeModel:
    """A sidecar-checked ``.tflite`` (``path``, ``sidecar``, ``manifest_sha256``); subclasses set ``runner``,
    ``size``, ``channels`` and ``load_s``, and define ``load_input(source, name)`` (decode, raise
    ``ImageRejected``) and ``decide_input(x) -> Decision``: what ``kdefect.edge.stream`` drives."""

    path: Path
    sidecar: Sidecar
    manifest_sha256: str | None
    runner: Any
    size: tuple[int, ...]
    channels: int

    def _open(self, model_path: str | Path, trust_key: str | Path | None) -> Any:
        """Read the model, sidecar (and bank, signature) once; the checked bytes are what runs."""
        self.path = Path(model_path)
        if not self.path.is_file():
            raise EdgeError(f"model file '{self.path}' does not exist.")
        art = read_artefacts(self.path, trust_key)
        self.sidecar, self.manifest_sha256 = art.sidecar, art.manifest_sha256
        return art

    def _warn_if_unready(self) -> None:
        ready = self.sidecar.readiness or {}
        if ready.get("exported_unready"):
            log.warning("%s was exported although its verdict is %s (%s): the line runs an unvalidated model.",
                        self.path.name, ready.get("verdict", "NOT READY"), "; ".join(ready.get("reasons", [])))

    @property
    def sha256(self) -> str:
        return self.sidecar.sha256

    @property
    def backend(self) -> str:
        return self.runner.backend

    def warm_up(self, n: int = 2) -> None:
        """Load Pillow's decoders and run ``n`` invokes on a mid-grey image: the first real part is not the slow one."""
        Image.init()
        x = np.full((*self.size, self.channels), 128.0, np.float32)
        for _ in range(max(0, n)):
            self.runner(x)
