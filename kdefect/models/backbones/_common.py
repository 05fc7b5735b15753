"""Shared helpers for backbone builders (not a backbone family)."""

from __future__ import annotations

from kdefect.errors import ModelError
from kdefect.keras import keras, tf
from kdefect.models.weights import load_local_weights, weights_kind


def finish(inputs: tf.Tensor, features: tf.Tensor, weights: str, name: str) -> tf.Tensor:
    """Load a local weights file into the layers just built (by name) and return the features.

    A throwaway Model from the graph's source inputs to ``features`` shares the
    layer objects, so loading into it fills the layers of the caller's flat model.
    """
    if weights_kind(weights) == "file":
        sources = keras.utils.get_source_inputs(inputs)
        # strict=False: a positional (Keras-3 layout) file only fits the whole classifier, loaded there
        load_local_weights(keras.Model(sources, features, name=f"{name}_weights"), weights, strict=False)
    return features


def check_imagenet_channels(inputs: tf.Tensor, name: str, weights: str) -> None:
    """ImageNet weights need 3-channel input; say so instead of a deep shape error."""
    if weights == "imagenet" and int(inputs.shape[-1]) != 3:
        raise ModelError(
            f"backbone '{name}' with weights=imagenet needs 3 input channels, got {inputs.shape[-1]}. "
            "Set data.channels=3 (grayscale images are repeated to RGB) or use model.weights=none."
        )


def width(channels: int, alpha: float, divisor: int = 8) -> int:
    """Scale a channel count by ``alpha``, rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(channels * alpha + divisor / 2) // divisor * divisor)
