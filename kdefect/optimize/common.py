"""Small training helpers shared by QAT, pruning and distillation."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdefect.errors import ExportError
from kdefect.keras import keras, tf
from kdefect.models.compiled import build_training_state


def as_dataset(data: Any, batch_size: int = 32) -> Any:
    """Accept a ``tf.data.Dataset`` of (images, labels) or a tuple of numpy arrays."""
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (np.asarray(v) for v in data)
        if len(x) == 0:
            raise ExportError("the training data for fine-tuning is empty; pass at least one batch of images.")
        return tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y)).batch(batch_size)
    raise ExportError(f"training data must be a tf.data.Dataset or an (images, labels) tuple, got {type(data).__name__}.")


def sparse_labels(ds: Any) -> bool:
    """True when the dataset's labels are class indices rather than one-hot vectors."""
    spec = ds.element_spec
    label_spec = spec[1] if isinstance(spec, tuple) else None
    if label_spec is None:
        raise ExportError("fine-tuning data must yield (images, labels) pairs.")
    return label_spec.shape.rank is not None and label_spec.shape.rank <= 1


def classification_loss(ds: Any) -> Any:
    """Cross-entropy on softmax outputs, sparse or one-hot to match the data."""
    if sparse_labels(ds):
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.CategoricalCrossentropy()


def compile_for(model: Any, ds: Any, learning_rate: float) -> None:
    """Compile ``model`` for fine-tuning on ``ds`` (Adam, accuracy metric)."""
    metric = "sparse_categorical_accuracy" if sparse_labels(ds) else "categorical_accuracy"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=classification_loss(ds), metrics=[metric])
    build_training_state(model)  # one trace of the train step, not two


def count_steps(ds: Any, steps_per_epoch: int | None) -> int:
    """Steps per epoch: given, else the dataset's cardinality, else counted once."""
    if steps_per_epoch:
        return int(steps_per_epoch)
    n = int(ds.cardinality().numpy())
    if n < 0:  # unknown or infinite
        if n == tf.data.INFINITE_CARDINALITY:
            raise ExportError("the fine-tuning dataset repeats forever; pass steps_per_epoch.")
        n = sum(1 for _ in ds)
    if n == 0:
        raise ExportError("the fine-tuning dataset is empty; check the run's training split.")
    return n
