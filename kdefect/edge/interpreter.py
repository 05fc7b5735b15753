"""Load a TFLite interpreter without TensorFlow.

LiteRT (``ai_edge_litert``) first, ``tflite_runtime`` as the fallback for
older devices (e.g. Raspberry Pi OS images where LiteRT has no wheel).  The
Edge TPU delegate is optional and falls back to the CPU with one warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import EdgeError

log = logging.getLogger(__name__)

EDGETPU_LIB = "libedgetpu.so.1"


def _modules() -> tuple[Any, str]:
    try:
        from ai_edge_litert import interpreter as mod

        return mod, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # type: ignore[no-redef]

        return mod, "tflite_runtime"
    except ImportError as exc:
        raise EdgeError(
            "no TFLite interpreter found. Install one: `pip install ai-edge-litert` "
            "(or `pip install tflite-runtime` on older devices)."
        ) from exc


def interpreter_backend() -> str:
    """Name of the interpreter package that will be used."""
    return _modules()[1]


def load_interpreter(
    model_path: str | Path,
    num_threads: int = 1,
    edgetpu: bool = False,
    require_edgetpu: bool = False,
) -> Any:
    """Create and allocate an interpreter for ``model_path``.

    With ``edgetpu`` the Edge TPU delegate is tried; when it is missing the
    CPU is used with a warning, or an ``EdgeError`` is raised if
    ``require_edgetpu``.
    """
    mod, name = _modules()
    path = str(model_path)
    if not Path(path).is_file():
        raise EdgeError(f"model file '{path}' does not exist.")
    delegates = []
    if edgetpu:
        try:
            delegates = [mod.load_delegate(EDGETPU_LIB)]
        except (ValueError, OSError, RuntimeError) as exc:
            if require_edgetpu:
                raise EdgeError(
                    f"Edge TPU delegate '{EDGETPU_LIB}' could not be loaded ({exc}). Install libedgetpu1-std "
                    "and plug in the Coral accelerator, or drop --require-edgetpu to run on the CPU."
                ) from exc
            log.warning("Edge TPU delegate %s not available (%s); running on the CPU.", EDGETPU_LIB, exc)
    try:
        interp = mod.Interpreter(model_path=path, num_threads=num_threads, experimental_delegates=delegates or None)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeError(f"'{path}' could not be loaded by {name}: {exc}") from exc
    return interp


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Cast float pixels to the interpreter's input type using its quantisation."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zp = detail["quantization"]
    if scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale + zp)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Integer outputs back to float using the tensor's scale / zero point."""
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    if scale == 0:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zp) * scale


class TFLiteRunner:
    """Run one image (or a batch of 1) through a TFLite model: float pixels in, float outputs out."""

    def __init__(self, model_path: str | Path, num_threads: int = 1, edgetpu: bool = False,
                 require_edgetpu: bool = False) -> None:
        self.path = Path(model_path)
        self.interpreter = load_interpreter(model_path, num_threads, edgetpu, require_edgetpu)
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.input_detail["shape"])

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """``image``: (H, W, C) or (1, H, W, C) pixels 0..255. Returns every output, dequantised."""
        x = image if image.ndim == 4 else image[None]
        self.interpreter.set_tensor(self.input_detail["index"], quantize_input(x, self.input_detail))
        self.interpreter.invoke()
        return [dequantize_output(self.interpreter.get_tensor(d["index"]), d) for d in self.output_details]
