"""TFLite conversion: float32, float16, dynamic-range and full-integer INT8.

The model is traced with a static batch of 1 (what the Edge TPU compiler and
most MCU/RPi runtimes need) and preprocessing stays inside the model, so the
device feeds raw pixels. For INT8 the input / output types are selectable
(uint8 by default, the Edge TPU's native type). The converter output goes to
a temporary file that is renamed only on success.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.core.registry import Registry
from kdefect.errors import ExportError
from kdefect.export.representative import materialize, representative_fn
from kdefect.keras import keras, tf
from kdefect.utils.io import atomic_path

log = logging.getLogger(__name__)

IO_TYPES = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}


def _concrete_from_keras(model: Any, batch_size: int) -> tuple[Any, Any]:
    if len(model.inputs) != 1:
        raise ExportError(f"model '{model.name}' has {len(model.inputs)} inputs; kdefect exports single-image models.")
    shape = list(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise ExportError(
            f"model '{model.name}' has a dynamic input shape {shape}; TFLite / Edge TPU need a fixed size. "
            "Rebuild it with keras.Input(shape=(H, W, C))."
        )
    spec = tf.TensorSpec([batch_size, *shape[1:]], tf.float32, name=model.input_names[0])

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> Any:
        return model(x, training=False)

    cf = serve.get_concrete_function()
    # The converter saves this trackable as a SavedModel to read the variables.  Handing it the Keras model makes
    # TF serialise every layer's call graphs as well (3.6x slower for a 64 px YOLOv8, same .tflite bytes:
    # tools/results/overheads.md): a bare module that holds only the variables is all the conversion needs.
    holder = tf.Module()
    holder.variables_for_export = list(model.variables)
    return cf, holder


def _concrete_from_saved_model(path: Path, batch_size: int) -> tuple[Any, Any]:
    try:
        loaded = tf.saved_model.load(str(path))
        sig = loaded.signatures["serving_default"]
    except (OSError, KeyError, ValueError) as exc:
        raise ExportError(f"'{path}' is not a loadable SavedModel with a serving_default signature: {exc}") from exc
    _args, kwargs = sig.structured_input_signature
    if len(kwargs) != 1:
        raise ExportError(f"SavedModel '{path}' has {len(kwargs)} inputs; kdefect exports single-image models.")
    name, in_spec = next(iter(kwargs.items()))
    if any(d is None for d in in_spec.shape[1:]):
        raise ExportError(f"SavedModel '{path}' has a dynamic input shape {in_spec.shape}; export it with a fixed size.")
    spec = tf.TensorSpec([batch_size, *in_spec.shape[1:]], tf.float32, name=name)

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> Any:
        out = sig(**{name: tf.cast(x, in_spec.dtype)})
        return out[sorted(out)[0]] if len(out) == 1 else [out[k] for k in sorted(out)]

    return serve.get_concrete_function(), loaded


def input_shape_of(model: Any) -> tuple[int, int, int]:
    """(H, W, C) of a Keras model or a SavedModel folder."""
    if isinstance(model, keras.Model):
        return tuple(int(d) for d in model.inputs[0].shape[1:])  # type: ignore[return-value]
    cf, _ = _concrete_from_saved_model(Path(model), 1)
    return tuple(int(d) for d in cf.inputs[0].shape[1:])  # type: ignore[return-value]


def make_converter(model: Any, batch_size: int = 1) -> Any:
    """A TFLiteConverter over a fixed-batch concrete function of ``model`` (Keras model or SavedModel dir)."""
    if isinstance(model, keras.Model):
        cf, trackable = _concrete_from_keras(model, batch_size)
    elif isinstance(model, (str, Path)) and Path(model).is_dir():
        cf, trackable = _concrete_from_saved_model(Path(model), batch_size)
    else:
        raise ExportError(
            f"cannot convert {type(model).__name__}: pass a tf_keras model or a SavedModel folder "
            "(kdefect.export.saved_model.load_model_any loads .keras/.h5/SavedModel files)."
        )
    return tf.lite.TFLiteConverter.from_concrete_functions([cf], trackable)


def configure(converter: Any, mode: str, representative: Any = None, input_type: str = "uint8",
              output_type: str = "uint8", input_range: tuple[float, float] | None = (0.0, 255.0),
              max_samples: int = 1000) -> None:
    """Set the converter's optimisation for ``mode`` (see ``MODES``)."""
    if mode not in EXPORT_MODES:
        raise ExportError(f"unknown TFLite mode '{mode}'; choose one of {', '.join(MODES)}.")
    for name, t in (("input_type", input_type), ("output_type", output_type)):
        if t not in IO_TYPES:
            raise ExportError(f"{name} '{t}' is not one of {', '.join(IO_TYPES)}.")
    EXPORT_MODES.get(mode).configure(converter, representative, input_type, output_type, input_range, max_samples)


@dataclass(frozen=True)
class ExportMode:
    """One TFLite optimisation: how it sets up the converter; full-integer modes need representative images."""

    configure: Callable[[Any, Any, str, str, tuple[float, float] | None, int], None]
    full_integer: bool = False


def _float32(converter: Any, *_: Any) -> None:
    """No optimisation: the reference model."""


def _dynamic(converter: Any, *_: Any) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _float16(converter: Any, *_: Any) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _int8(converter: Any, representative: Any, input_type: str, output_type: str,
          input_range: tuple[float, float] | None, max_samples: int) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = materialize(representative, limit=max_samples)
    converter.representative_dataset = representative_fn(samples, input_range)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = IO_TYPES[input_type]
    converter.inference_output_type = IO_TYPES[output_type]


EXPORT_MODES = Registry("TFLite mode")
EXPORT_MODES.add("float32", ExportMode(_float32))
EXPORT_MODES.add("float16", ExportMode(_float16))
EXPORT_MODES.add("dynamic", ExportMode(_dynamic))
EXPORT_MODES.add("int8", ExportMode(_int8, full_integer=True))
MODES = ("float32", "float16", "dynamic", "int8")  # the order the CLI and messages list them in


def to_tflite(
    model: Any,
    out_path: str | Path,
    mode: str = "int8",
    representative: Any = None,
    input_type: str = "uint8",
    output_type: str = "uint8",
    batch_size: int = 1,
    input_range: tuple[float, float] | None = (0.0, 255.0),
    max_samples: int = 1000,
) -> Path:
    """Convert ``model`` to ``out_path`` (atomically) and return the path.

    ``representative``: images (N,H,W,C) 0..255, a generator or a tf.data.Dataset; required for ``int8``.
    ``input_range``: the raw pixel range; pinned on the INT8 input so the device feeds raw uint8 pixels
    (set None for models that expect other inputs).
    """
    converter = make_converter(model, batch_size)
    configure(converter, mode, representative, input_type, output_type, input_range, max_samples)
    out_path = Path(out_path)
    try:
        blob = converter.convert()
    except Exception as exc:  # the converter raises many types (ConverterError, RuntimeError, ValueError...)
        msg = str(exc).strip().splitlines()
        detail = next((m for m in msg if "error" in m.lower()), msg[0] if msg else type(exc).__name__)
        hint = (" Some ops have no INT8 kernel: try --dynamic or --float16, or replace the op."
                if EXPORT_MODES.get(mode).full_integer else "")
        raise ExportError(f"TFLite conversion ({mode}) of '{getattr(model, 'name', model)}' failed: {detail}.{hint}"
                          ) from exc
    with atomic_path(out_path, suffix=".tflite") as tmp:
        tmp.write_bytes(blob)
    log.info("wrote %s (%s, %.1f KiB)", out_path, mode, len(blob) / 1024)
    if EXPORT_MODES.get(mode).full_integer:
        from kdefect.export.litert_info import float_ops

        floats = float_ops(out_path)
        if floats:
            log.warning("%s is not fully integer: %s run in float (no INT8 kernel); the Edge TPU cannot map them.",
                        out_path.name, ", ".join(floats))
    return out_path
