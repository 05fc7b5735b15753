"""Bring-your-own model loading, and SavedModel export.

``load_model_any`` accepts a tf_keras ``.keras`` / ``.h5`` file or SavedModel
folder (-> a tf_keras model, so QAT is possible), and a Keras 3 ``.keras``
file (-> a SavedModel folder produced by Keras 3's own ``model.export`` in a
subprocess, because this process runs tf_keras; such models get PTQ only).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from kdefect.errors import ExportError
from kdefect.keras import keras
from kdefect.utils.io import atomic_dir

log = logging.getLogger(__name__)

_KERAS3_EXPORT = """
import sys, keras
m = keras.saving.load_model(sys.argv[1], compile=False)
m.export(sys.argv[2], format="tf_saved_model")
"""


def keras_file_version(path: str | Path) -> str | None:
    """The ``keras_version`` recorded in a ``.keras`` zip (None when unknown)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("metadata.json")).get("keras_version")
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return None


def keras3_to_saved_model(path: str | Path, out_dir: str | Path | None = None, timeout_s: int = 600) -> Path:
    """Export a Keras 3 ``.keras`` file to a SavedModel folder with Keras 3 itself (separate process)."""
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="kdefect-k3-")) / "saved_model"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    with atomic_dir(out) as tmp:
        tmp.rmdir()  # model.export wants to create the folder
        proc = subprocess.run([sys.executable, "-c", _KERAS3_EXPORT, str(path), str(tmp)], env=env,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"Keras 3 model '{path}' could not be exported to SavedModel: {tail}. "
                              "Export it yourself with `model.export(DIR)` and pass DIR.")
    log.info("Keras 3 model %s exported to SavedModel %s (PTQ only: QAT needs a tf_keras model)", path, out)
    return out


def load_model_any(path: str | Path) -> Any:
    """A tf_keras model when possible, else a SavedModel folder path (convertible, not trainable)."""
    p = Path(path)
    if not p.exists():
        raise ExportError(f"model '{p}' does not exist.")
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ExportError(f"'{p}' is a folder without saved_model.pb; pass a SavedModel, .keras or .h5 model.")
        try:
            return keras.models.load_model(p, compile=False)
        except Exception as exc:  # not a Keras SavedModel: plain tf.Module, convert as is
            log.info("'%s' is not a tf_keras SavedModel (%s); converting it as a plain SavedModel.", p,
                     type(exc).__name__)
            return p
    suffix = p.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ExportError(f"'{p}': unsupported model file type '{suffix}'; pass a .keras, .h5 or SavedModel folder.")
    if suffix == ".keras":
        version = keras_file_version(p) or ""
        if version.startswith("3"):
            return keras3_to_saved_model(p)
    import kdefect.models  # noqa: F401  (registers kdefect's custom layers for deserialisation)
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:
        raise ExportError(f"'{p}' could not be loaded by tf_keras: {exc}. If it uses custom layers, register "
                          "them with keras.saving.register_keras_serializable before exporting.") from exc


def export_saved_model(model: Any, out_dir: str | Path) -> Path:
    """Write ``model`` as a SavedModel folder (for TF Serving / other converters), atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save(str(tmp), save_format="tf", include_optimizer=False)
    return out_dir
