"""Bring-your-own model loading, and SavedModel export.

``load_model_any`` accepts a tf_keras ``.keras`` / ``.h5`` file or SavedModel
folder (-> a tf_keras model, so QAT is possible), and a Keras 3 ``.keras``
file (-> a SavedModel folder produced by Keras 3's own ``model.export`` in a
subprocess, because this process runs tf_keras; such models get PTQ only).
Legacy ``.h5`` / SavedModel files are first inspected for code
(``model_safety``), then deserialised in a subprocess that re-saves them as
``.keras``, which this process loads with ``safe_mode``.
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

_LEGACY_TO_KERAS = """
import sys
from kdefect.keras import keras
import kdefect.models
try:
    m = keras.models.load_model(sys.argv[1], compile=False)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
m.save(sys.argv[2])
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


def _load_legacy_isolated(p: Path, timeout_s: int = 600) -> Any:
    """Deserialise a checked ``.h5`` / SavedModel in a child process, re-saved as ``.keras`` and loaded here in safe mode.

    Why: anything the inspection missed runs in a throwaway process, never in the one that holds the
    export (and its signing key); ``safe_mode`` refuses any Lambda that still reached the re-saved file.
    None: a SavedModel that tf_keras cannot load (a plain tf.Module).
    """
    with tempfile.TemporaryDirectory(prefix="kdefect-load-") as tmp:
        dst = Path(tmp) / "model.keras"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run([sys.executable, "-c", _LEGACY_TO_KERAS, str(p), str(dst)], capture_output=True,
                              text=True, timeout=timeout_s, check=False, env=env)
        if proc.returncode != 0 or not dst.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            if p.is_dir():
                log.info("'%s' is not a tf_keras SavedModel (%s); converting it as a plain SavedModel.", p, tail)
                return None
            raise ExportError(f"'{p}' could not be loaded by tf_keras: {tail}. If it uses custom layers, register "
                              "them with keras.saving.register_keras_serializable before exporting.")
        import kdefect.models  # noqa: F401  (kdefect's custom layers)

        return keras.models.load_model(dst, compile=False, safe_mode=True)


def load_model_any(path: str | Path, trust: bool = False) -> Any:
    """A tf_keras model when possible, else a SavedModel folder path (convertible, not trainable).

    ``trust``: load a legacy file that holds code (Lambda layers, unknown custom objects), in this process.
    """
    from kdefect.export.model_safety import check_model_file

    p = Path(path)
    if not p.exists():
        raise ExportError(f"model '{p}' does not exist.")
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ExportError(f"'{p}' is a folder without saved_model.pb; pass a SavedModel, .keras or .h5 model.")
        check_model_file(p, trust)
        if not trust:
            model = _load_legacy_isolated(p)
            return p if model is None else model
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
    if suffix in (".h5", ".hdf5"):
        check_model_file(p, trust)
        if not trust:
            return _load_legacy_isolated(p)
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
