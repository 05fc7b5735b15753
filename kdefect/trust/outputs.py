"""The cached head outputs of a run's split: moved to ``kdefect.tasks.outputs`` (the engine needs them too)."""

from __future__ import annotations

from kdefect.tasks.outputs import (
    feature_output,
    head_model,
    load_model,
    outputs_cache,
    outputs_fresh,
    predict_heads,
    split_images,
    split_outputs,
)

__all__ = ["feature_output", "head_model", "load_model", "outputs_cache", "outputs_fresh", "predict_heads",
           "split_images", "split_outputs"]
