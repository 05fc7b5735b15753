"""The exported-model sidecar: ``model.tflite`` + ``model.json``.

The sidecar makes an exported model self-describing (labels, input size,
quantisation, decision thresholds) and tamper-evident (sha256 of the model
file).  Written by ``kdefect.export``, read by ``kdefect.edge``, ``evaluate``
and ``trust``.  TF-free on purpose.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdefect.errors import ModelIntegrityError
from kdefect.utils.io import read_json, sha256_file, write_json

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
    sc = Sidecar.from_dict(read_json(sp))
    if verify:
        actual = sha256_file(model_path)
        if actual != sc.sha256:
            raise ModelIntegrityError(
                f"'{model_path}' does not match its sidecar (sha256 {actual[:12]}... != {sc.sha256[:12]}...): "
                "the file was changed or truncated. Copy the model again from the export folder."
            )
    return sc
