"""The k-nearest-neighbour unknown-defect gate, shared by the host and the device (numpy only).

Why here: ``kdefect calibrate`` scores float features on the host and the
edge runtime scores the INT8 model's own features on the device; one
implementation keeps the two gates the same computation.  The device bank
is a ``.npy`` of unit-length training features beside the model, pinned by
its sha256 in the sidecar.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ModelIntegrityError
from kdefect.utils.io import atomic_path, sha256_file


@dataclass
class KNN:
    """Distance to the k-th nearest training feature after L2 normalisation (Sun et al. 2022).

    Why: no Gaussian assumption, so a new defect that lands *between* known
    class clusters (where a shared-covariance Mahalanobis is blind) still scores
    high; the training bank is the only state.
    """

    bank: np.ndarray  # (N, D), unit rows
    k: int = 10

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    @classmethod
    def fit(cls, features: np.ndarray, k: int = 10) -> KNN:
        bank = cls._unit(features)
        if len(bank) == 0:
            raise ValueError("KNN.fit needs at least one training feature vector.")
        return cls(bank=bank, k=max(1, min(int(k), len(bank))))

    def score(self, features: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """k-th nearest-neighbour Euclidean distance of unit vectors (higher = more OOD).

        Queries take the bank's dtype: the device's float32 bank is never up-cast to float64 per part.
        """
        q = self._unit(np.atleast_2d(features)).astype(self.bank.dtype, copy=False)
        out = np.empty(len(q))
        for i in range(0, len(q), chunk):
            sim = (q[i:i + chunk] @ self.bank.T).astype(np.float64)
            kth = -np.partition(-sim, self.k - 1, axis=1)[:, self.k - 1]
            out[i:i + chunk] = np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0))
        return out


def save_bank(path: str | Path, knn: KNN) -> str:
    """Write the bank (float16 unit rows: half the size, distances change < 1e-3) atomically; returns its sha256."""
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, knn.bank.astype(np.float16), allow_pickle=False)
    return sha256_file(path)


def load_gate(model_path: str | Path, gate: dict[str, Any], data: bytes | None = None) -> KNN:
    """The bank named by a sidecar gate ``{"bank": FILE, "bank_sha256": ..., "k": ...}``, beside the model.

    ``data``: the bank's bytes already read (and checked against a signature) by the caller; they are hashed
    and loaded as given, never re-read from disk.  The sidecar's ``bank_sha256`` is mandatory.
    """
    path = Path(model_path).parent / str(gate.get("bank", ""))
    if data is None:
        if not gate.get("bank") or not path.is_file():
            raise ModelIntegrityError(f"the kNN OOD gate of '{model_path}' needs its feature bank '{path.name}' "
                                      "beside the model: copy it along with model.tflite and model.json (or export "
                                      "again).")
        data = path.read_bytes()
    if not gate.get("bank_sha256"):
        raise ModelIntegrityError(f"the kNN OOD gate of '{model_path}' has no bank_sha256, so its bank '{path.name}' "
                                  "cannot be checked: export again (the sidecar must pin the bank).")
    if hashlib.sha256(data).hexdigest() != gate["bank_sha256"]:
        raise ModelIntegrityError(f"feature bank '{path}' does not match the sidecar's sha256: it was changed or "
                                  "belongs to another export. Copy it again from the export folder.")
    try:
        bank = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as exc:
        raise ModelIntegrityError(f"feature bank '{path}' is not a readable .npy ({exc}).") from exc
    if bank.ndim != 2 or len(bank) == 0:
        raise ModelIntegrityError(f"feature bank '{path}' has shape {bank.shape}; expected (N, D) with N > 0.")
    return KNN(bank=bank, k=max(1, min(int(gate.get("k", 10)), len(bank))))
