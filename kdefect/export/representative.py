"""Representative data for full-integer calibration.

Drawn stratified from the run's training split (every class represented in
proportion, at least one image each), seeded, so the same run always
calibrates the same way. An empty set is refused: the converter would
otherwise fail deep inside MLIR with an unhelpful message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from kdefect.errors import ExportError


def stratified_indices(labels: list[Any] | np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` indices with each label's share preserved (>= 1 per label), shuffled by ``seed``."""
    labels = np.asarray(labels)
    if len(labels) == 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = min(int(n), len(labels))
    uniq = sorted(set(labels.tolist()))
    picked = []
    for lab in uniq:
        idx = np.flatnonzero(labels == lab)
        k = max(1, round(n * len(idx) / len(labels)))
        picked.append(rng.permutation(idx)[:k])
    out = np.concatenate(picked)
    return np.sort(rng.permutation(out)[:max(n, len(uniq))])


def _batches(rep: Any) -> Iterable[Any]:
    if callable(rep):
        rep = rep()
    if isinstance(rep, np.ndarray):
        return [rep] if rep.ndim == 4 else [rep[None]] if rep.ndim == 3 else []
    return rep


def materialize(rep: Any, limit: int = 1000) -> list[np.ndarray]:
    """Turn an array (N,H,W,C), a list of images, a generator or a tf.data.Dataset into (1,H,W,C) float32 samples."""
    if rep is None:
        raise ExportError("INT8 conversion needs representative images (e.g. 100-500 from the training split); none given.")
    samples: list[np.ndarray] = []
    for item in _batches(rep):
        x = item
        if isinstance(x, dict):
            x = next(iter(x.values()))
        if isinstance(x, (tuple, list)):
            x = x[0]  # (images, labels) pairs or [input] lists
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        for img in x:
            samples.append(img[None])
            if len(samples) >= limit:
                return samples
    if not samples:
        raise ExportError(
            "the representative dataset is empty: full-integer INT8 conversion needs real images to calibrate "
            "activation ranges. Check the run's split/train.txt (or --data), or export with --float16/--float32."
        )
    return samples


def representative_fn(samples: list[np.ndarray], input_range: tuple[float, float] | None = (0.0, 255.0)
                      ) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Converter callback. With ``input_range`` the first sample holds one pixel at each end of the range,
    so the calibrated input quantization is exactly the pixel range (uint8 scale 1, zero point 0)."""
    first = samples[0].copy()
    if input_range is not None:
        flat = first.reshape(-1)
        flat[0], flat[-1] = input_range
    fixed = [first, *samples[1:]]

    def gen() -> Iterator[list[np.ndarray]]:
        for s in fixed:
            yield [s]

    return gen
