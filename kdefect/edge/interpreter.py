"""Load a TFLite interpreter without TensorFlow.

LiteRT (``ai_edge_litert``) first, ``tflite_runtime`` as the fallback for
older devices (e.g. Raspberry Pi OS images where LiteRT has no wheel).  The
Edge TPU delegate is optional and falls back to the CPU with one warning.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import EdgeError

log = logging.getLogger(__name__)

EDGETPU_LIB = "libedgetpu.so.1"
_EDGETPU_OP = b"edgetpu-custom-op"


BACKENDS = ("ai_edge_litert", "tflite_runtime")
BACKEND_ENV = "KDEFECT_TFLITE_BACKEND"


def _modules() -> tuple[Any, str]:
    """The interpreter module: LiteRT first, tflite_runtime second.

    ``KDEFECT_TFLITE_BACKEND=tflite_runtime`` (or ``ai_edge_litert``) forces one,
    e.g. where the LiteRT wheel crashes (the aarch64 wheel under qemu does).
    """
    forced = os.environ.get(BACKEND_ENV, "").strip()
    if forced and forced not in BACKENDS:
        raise EdgeError(f"{BACKEND_ENV}={forced!r} is not one of {', '.join(BACKENDS)}; unset it or pick one of those.")
    errors = []
    for name in (forced,) if forced else BACKENDS:
        try:
            return importlib.import_module(f"{name}.interpreter"), name
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    if platform.machine() == "armv7l":  # 32-bit ARM: the only wheel is tflite-runtime 2.13 for Python 3.10
        raise EdgeError(
            "no TFLite interpreter found (" + "; ".join(errors) + "). On 32-bit ARM (armv7l) only "
            "`pip install tflite-runtime==2.13.0 'numpy<2'` on Python 3.10 works; with another Python install the "
            "64-bit OS (aarch64), see docs/edge.md."
        )
    raise EdgeError(
        "no TFLite interpreter found (" + "; ".join(errors) + "). Install one: `pip install ai-edge-litert` "
        "(or `pip install tflite-runtime` on older devices)."
    )


def interpreter_backend() -> str:
    """Name of the interpreter package that will be used."""
    return _modules()[1]


def load_interpreter(
    model_path: str | Path,
    num_threads: int = 1,
    edgetpu: bool = False,
    require_edgetpu: bool = False,
    model_content: bytes | None = None,
) -> Any:
    """Create and allocate an interpreter for ``model_path``.

    With ``edgetpu`` the Edge TPU delegate is tried; when it is missing the
    CPU is used with a warning, or an ``EdgeError`` is raised if
    ``require_edgetpu``.  ``model_content``: the model's bytes, already read
    and verified by the caller; the interpreter runs exactly those bytes
    (``model_path`` then only names the model in messages).
    """
    mod, name = _modules()
    path = str(model_path)
    if model_content is None:
        if not Path(path).is_file():
            raise EdgeError(f"model file '{path}' does not exist.")
        model_content = Path(path).read_bytes()
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
        interp = mod.Interpreter(model_content=model_content, num_threads=num_threads,
                                 experimental_delegates=delegates or None)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        hint = ""
        if not delegates and _EDGETPU_OP in model_content:
            hint = (" This model is compiled for the Edge TPU (edgetpu-custom-op) and cannot run on the CPU alone: "
                    "plug in the Coral accelerator with libedgetpu installed, or use the uncompiled model.tflite.")
        raise EdgeError(f"'{path}' could not be loaded by {name}: {exc}.{hint}") from exc
    if edgetpu and delegates and _EDGETPU_OP not in model_content:
        log.warning("'%s' is not compiled for the Edge TPU (run edgetpu_compiler or `kdefect tflite --edgetpu`); "
                    "every op runs on the CPU.", path)
    return interp


def is_edgetpu_compiled(model_path: str | Path) -> bool:
    """True when the model holds the Edge TPU custom op (output of ``edgetpu_compiler``)."""
    with open(model_path, "rb") as fh:
        return _EDGETPU_OP in fh.read()


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


def output_roles(model_path: str | Path) -> dict[str, int]:
    """Positions of the class output (``main``) and of a feature output (``features``) among the outputs.

    Why: a model exported with the kNN OOD gate has two outputs and the
    converter does not keep their order; the exporter records the positions
    in the sidecar (``output.index``, ``output.features_index``).  Without a
    sidecar the first output is the class output.
    """
    from kdefect.core.sidecar import sidecar_path
    from kdefect.utils.io import read_json

    sp = sidecar_path(model_path)
    return roles_of(read_json(sp).get("output") if sp.is_file() else None)


def roles_of(output: dict[str, Any] | None) -> dict[str, int]:
    """Output positions from a sidecar's ``output`` entry (for callers that have already read the sidecar)."""
    out = output or {}
    roles = {"main": int(out.get("index", 0))}
    if out.get("features_index") is not None:
        roles["features"] = int(out["features_index"])
    return roles


class TFLiteRunner:
    """Run one image (or a batch of 1) through a TFLite model: float pixels in, float outputs out."""

    def __init__(self, model_path: str | Path, num_threads: int = 1, edgetpu: bool = False,
                 require_edgetpu: bool = False, roles: dict[str, int] | None = None,
                 model_content: bytes | None = None) -> None:
        self.path = Path(model_path)
        self.backend = interpreter_backend()
        self.interpreter = load_interpreter(model_path, num_threads, edgetpu, require_edgetpu, model_content)
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()
        self.roles = dict(roles) if roles is not None else output_roles(model_path)  # roles: while exporting
        if any(i >= len(self.output_details) for i in self.roles.values()):
            raise EdgeError(f"the sidecar of '{self.path}' names output positions {self.roles} but the model has "
                            f"{len(self.output_details)} output(s): the sidecar belongs to another model.")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.input_detail["shape"])

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """``image``: (H, W, C) or (1, H, W, C) pixels 0..255. Returns every output, dequantised."""
        return self.run_quantized(self.quantize(image))

    def quantize(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) or (1, H, W, C) pixels -> the input tensor (a loader thread can do this off the invoke path)."""
        return quantize_input(image if image.ndim == 4 else image[None], self.input_detail)

    def run_quantized(self, q: np.ndarray) -> list[np.ndarray]:
        """Invoke on an input tensor from :meth:`quantize`; every output, dequantised."""
        self.interpreter.set_tensor(self.input_detail["index"], q)
        self.interpreter.invoke()
        return [dequantize_output(self.interpreter.get_tensor(d["index"]), d) for d in self.output_details]

    def main_output(self, image: np.ndarray) -> np.ndarray:
        """The class output (probabilities of a kdefect classifier) for one image."""
        return self(image)[self.roles["main"]]

    def run_all(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(class outputs (N, K), feature outputs (N, D) or None), one batch-1 invoke per image as on the device."""
        outs = [self(np.asarray(im)) for im in images]
        main = np.stack([o[self.roles["main"]].reshape(-1) for o in outs]) if outs else np.zeros((0, 0), np.float32)
        if "features" not in self.roles:
            return main, None
        return main, np.stack([o[self.roles["features"]].reshape(-1) for o in outs]) if outs else np.zeros((0, 0))
