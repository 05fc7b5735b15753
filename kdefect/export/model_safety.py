"""Refuse a bring-your-own model that carries code, before anything deserialises it.

A model file is a program: a legacy ``.h5`` or a SavedModel can hold a Lambda
layer (Python bytecode, run while the model loads) or custom objects whose
code the loader revives from the file.  ``.keras`` files are guarded by Keras'
own ``safe_mode``; for the legacy formats this module reads only the stored
configuration (the ``.h5`` ``model_config`` attribute via h5py; a SavedModel's
``keras_metadata.pb`` or the object graph in ``saved_model.pb``), which parses
JSON and protobuf and runs no model code, and lists every layer or object that
would run code.  An allow-list, not a sandbox: see docs/security.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kdefect.errors import ExportError

log = logging.getLogger(__name__)

# TF-op layers replay a TensorFlow API call by name; these namespaces reach files, Python or arbitrary ops
_OP_DENY = ("io.", "gfile", "raw_ops", "py_function", "numpy_function", "compat.", "debugging.", "print",
            "summary.", "saved_model", "data.")
_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
# serialised values (shapes, tensor specs), not objects with code
_DATA = {"TensorShape", "TypeSpec", "TensorSpec", "RaggedTensorSpec", "SparseTensorSpec"}


def known_class_names() -> set[str]:
    """Classes tf_keras (and kdefect) deserialise from config alone, without code from the file."""
    import kdefect.models  # noqa: F401  (registers kdefect's layers)
    from kdefect.keras import keras  # lazy: TensorFlow loads only when used

    names = {"Functional", "Sequential", "Model"}
    for mod in (keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.activations,
                keras.losses, keras.metrics, keras.optimizers):
        names |= {n for n, obj in vars(mod).items() if isinstance(obj, type)}
    try:  # the layer registry also holds the TF-op layers of functional models (x * 2, tf.nn.relu(x))
        from tf_keras.src.layers import serialization  # lazy: TensorFlow loads only to inspect a model

        serialization.populate_deserializable_objects()
        names |= set(serialization.LOCAL.ALL_OBJECTS)
    except (ImportError, AttributeError):  # pragma: no cover - another tf_keras layout
        log.debug("tf_keras layer registry not found; TF-op layers count as unknown")
    names |= set(keras.utils.get_custom_objects()) | _DATA
    names.discard("Lambda")
    return names


def _walk(obj: Any, known: set[str], found: list[str]) -> None:
    if isinstance(obj, list):
        for v in obj:
            _walk(v, known, found)
        return
    if not isinstance(obj, dict):
        return
    cls = obj.get("class_name")
    if isinstance(cls, str) and not (cls.startswith("__") and cls.endswith("__")):
        cfg = obj.get("config") if isinstance(obj.get("config"), dict) else {}
        name = cfg.get("name", "?")
        if cls == "Lambda":
            found.append(f"Lambda layer '{name}' (Python code stored in the file)")
        elif cls in _OP_LAYERS and any(d in str(cfg.get("function", "")) for d in _OP_DENY):
            found.append(f"{cls} layer '{name}' calling tf.{cfg.get('function')}")
        elif cls not in known:
            found.append(f"unknown custom object '{cls}' ('{name}': its code is not part of tf_keras or kdefect)")
    for v in obj.values():
        _walk(v, known, found)


def _h5_config(path: Path) -> Any:
    import h5py  # lazy: h5py loads only to read a .h5 file

    try:
        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get("model_config")
    except OSError as exc:
        raise ExportError(f"'{path}' is not a readable HDF5 model ({exc}).") from exc
    if raw is None:
        raise ExportError(f"'{path}' has no model_config (a weights-only .h5?): pass the whole saved model.")
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _saved_model_configs(path: Path) -> list[Any]:
    """The Keras metadata of every object in a SavedModel (empty for a plain tf.Module: no Keras objects)."""
    meta = path / "keras_metadata.pb"
    texts: list[str] = []
    if meta.is_file():
        from tf_keras.protobuf import saved_metadata_pb2  # lazy: TensorFlow loads only to inspect a model

        sm = saved_metadata_pb2.SavedMetadata()
        sm.ParseFromString(meta.read_bytes())
        texts = [n.metadata for n in sm.nodes]
    else:
        from tensorflow.core.protobuf import saved_model_pb2  # lazy: TensorFlow loads only to inspect a model

        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
        for graph in sm.meta_graphs:
            texts += [n.user_object.metadata for n in graph.object_graph_def.nodes
                      if n.WhichOneof("kind") == "user_object" and n.user_object.metadata]
    out = []
    for t in texts:
        try:
            out.append(json.loads(t))
        except ValueError:
            out.append({"class_name": "<unreadable metadata>"})
    return out


def code_findings(path: str | Path) -> list[str]:
    """What in this ``.h5`` / SavedModel would run code when loaded (empty: config-only layers)."""
    p = Path(path)
    configs = _saved_model_configs(p) if p.is_dir() else [_h5_config(p)]
    known, found = known_class_names(), []
    _walk(configs, known, found)
    return list(dict.fromkeys(found))


def check_model_file(path: str | Path, trust: bool = False) -> None:
    """Raise ``ExportError`` for a legacy model that carries code, unless ``trust`` (``--trust-model``)."""
    found = code_findings(path)
    if not found:
        return
    if trust:
        log.warning("loading '%s' with code inside (--trust-model): %s", path, "; ".join(found))
        return
    raise ExportError(f"'{path}' holds code that would run on load: {'; '.join(found[:3])}"
                      f"{f' (+{len(found) - 3} more)' if len(found) > 3 else ''}. A model file is a program: pass "
                      "--trust-model only if you would run this file as a script (docs/security.md).")
