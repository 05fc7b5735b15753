"""The exported-model sidecar: ``model.tflite`` + ``model.json``.

The sidecar makes an exported model self-describing (labels, input size,
quantisation, decision thresholds) and tamper-evident (sha256 of the model
file).  Written by ``kdefect.export``, read by ``kdefect.edge``, ``evaluate``
and ``trust``.  TF-free on purpose.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdefect.errors import ModelIntegrityError
from kdefect.utils.io import sha256_file, write_json

SCHEMA_VERSION = 1


@dataclass
class InputSpec:
    """What the device must feed: raw pixels of this size and type."""

    size: list[int]
    channels: int = 3
    dtype: str = "uint8"
    scale: float = 1.0
    zero_point: int = 0
    # squash | letterbox | crop (kdefect.edge.preprocess.prepare); sidecars written before it existed: squash
    resize: str = "squash"
    # the PIL colour modes of the images the model was trained and validated on ("L", "RGB", "I;16", ...): the
    # device accepts them even when they differ from ``channels`` (grey ELPV cells for a 3-channel model); empty
    # (older sidecars, a model brought without its data): only the modes that match ``channels``
    modes: list[str] = field(default_factory=list)


@dataclass
class Sidecar:
    """Everything a runtime needs to use a model correctly, beside the model."""

    sha256: str
    task: str
    labels: list[str]
    input: InputSpec
    good_label: str | None = None
    preprocessing: str = "in-model"
    output: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=lambda: {"review_below": 0.0, "temperature": 1.0})
    detection: dict[str, Any] | None = None
    # Optional out-of-distribution gate for the edge runtime: {"method": "msp"|"entropy"|"energy", "threshold": t}.
    ood: dict[str, Any] | None = None
    quantization: str = "float32"
    source_run: str | None = None
    # The run's fit-for-use verdict at export: {"verdict", "calibrated", "reasons", "exported_unready"}
    readiness: dict[str, Any] | None = None
    kdefect_version: str = ""
    created: str = ""
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sidecar:
        d = dict(d)
        d["input"] = InputSpec(**d["input"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


_NUM = (int, float)


def _check_types(d: Any) -> None:
    """Raise ``ValueError`` naming the first field whose type a runtime cannot use."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    need(isinstance(d, dict), "not a JSON object")
    for key in ("sha256", "task", "labels", "input"):
        need(key in d, f"missing '{key}'")
    need(isinstance(d["sha256"], str) and isinstance(d["task"], str), "'sha256' and 'task' must be strings")
    need(isinstance(d["labels"], list) and all(isinstance(v, str) for v in d["labels"]), "'labels' must be a list of strings")
    inp = d["input"]
    need(isinstance(inp, dict) and set(inp) <= set(InputSpec.__dataclass_fields__), "'input' must be an object of InputSpec fields")
    size = inp.get("size")
    need(isinstance(size, list) and len(size) == 2 and all(type(v) is int and v > 0 for v in size),
         "'input.size' must be [height, width] of positive integers")
    need(type(inp.get("channels", 3)) is int and isinstance(inp.get("scale", 1.0), _NUM)
         and type(inp.get("zero_point", 0)) is int and isinstance(inp.get("resize", ""), str),
         "'input' channels/zero_point must be integers, scale a number, resize a string")
    need(isinstance(inp.get("modes", []), list) and all(isinstance(m, str) for m in inp.get("modes", [])),
         "'input.modes' must be a list of colour mode names")
    need(d.get("good_label") is None or isinstance(d["good_label"], str), "'good_label' must be a string or null")
    for key in ("output", "thresholds"):
        need(isinstance(d.get(key, {}), dict), f"'{key}' must be an object")
    th = d.get("thresholds") or {}
    for key in ("review_below", "temperature"):
        need(th.get(key) is None or (isinstance(th[key], _NUM) and not isinstance(th[key], bool)),
             f"'thresholds.{key}' must be a number")
    dec = th.get("decision")
    need(dec is None or (isinstance(dec, dict) and (dec.get("good_min_prob") is None
                                                     or isinstance(dec["good_min_prob"], _NUM))),
         "'thresholds.decision' must be an object with a numeric good_min_prob")
    det = d.get("detection")
    need(det is None or (isinstance(det, dict) and isinstance(det.get("reject_min_score", 0.0), _NUM)
                         and not isinstance(det.get("reject_min_score"), bool)),
         "'detection' must be an object with a numeric reject_min_score")
    for gate in (d.get("ood"), th.get("ood")):
        need(gate is None or (isinstance(gate, dict) and isinstance(gate.get("threshold", 0), _NUM)),
             "an OOD gate must be an object with a numeric 'threshold'")


def parse_sidecar(data: bytes, origin: str | Path = "model.json") -> Sidecar:
    """A ``Sidecar`` from the file's bytes; a malformed file is a ``ModelIntegrityError``, not a traceback."""
    try:
        d = json.loads(data)
        _check_types(d)
        return Sidecar.from_dict(d)
    except (ValueError, TypeError) as exc:
        raise ModelIntegrityError(f"sidecar '{origin}' is malformed ({exc}): export the model again, and copy "
                                  "model.json unchanged.") from None


def sidecar_path(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.json``."""
    return Path(model_path).with_suffix(".json")


def write_sidecar(model_path: str | Path, sidecar: Sidecar) -> Path:
    """Write the sidecar for ``model_path``; the sha256 is recomputed from the file."""
    from kdefect import __version__

    sidecar.sha256 = sha256_file(model_path)
    sidecar.kdefect_version = sidecar.kdefect_version or __version__
    sidecar.created = sidecar.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return write_json(sidecar_path(model_path), sidecar.to_dict())


def read_sidecar(model_path: str | Path, verify: bool = True) -> Sidecar:
    """Read the sidecar beside ``model_path``; refuse a model that does not match it."""
    sp = sidecar_path(model_path)
    if not sp.is_file():
        raise ModelIntegrityError(
            f"no sidecar '{sp}' next to '{model_path}'. Export with `kdefect tflite` (it writes both files) "
            "and copy model.json along with the model."
        )
    sc = parse_sidecar(sp.read_bytes(), sp)
    if verify:
        actual = sha256_file(model_path)
        if actual != sc.sha256:
            raise ModelIntegrityError(
                f"'{model_path}' does not match its sidecar (sha256 {actual[:12]}... != {sc.sha256[:12]}...): "
                "the file was changed or truncated. Copy the model again from the export folder."
            )
    return sc
