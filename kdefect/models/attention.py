"""Channel (SE) and channel+spatial (CBAM) attention.

Two forms of the same maths:

* ``SqueezeExcite`` / ``CBAM``: registered, serialisable ``keras.layers.Layer``
  subclasses (one layer, easy to place by hand, ``CBAM.spatial_map``).
* ``se_block`` / ``cbam_block``: the same blocks built from standard Keras
  layers (GAP, 1x1 Conv2D, Multiply, ...) plus one weightless ``ChannelPool``.
  kdefect's classifiers use these by default (``impl="blocks"``): every
  intermediate tensor is then a layer output, so TF-MOT QAT puts a fake-quant
  on each one exactly where the INT8 TFLite kernels requantise, and Grad-CAM /
  trust can read the spatial map as an ordinary layer output.

CBAM block note: the shared MLP of the paper is applied once to the stacked
[avg, max] descriptors and the two hidden vectors are averaged before the
second 1x1 conv. That equals ``mlp(avg) + mlp(max)`` up to a factor 2 folded
into the (learned) second layer, and avoids shared layers, which TF-MOT's
model cloning handles poorly.
"""

from __future__ import annotations

from typing import Any

from kdefect.errors import ConfigError
from kdefect.keras import keras, tf

ATTENTION_KINDS = ("none", "se", "cbam")
ATTENTION_IMPLS = ("blocks", "layer")
SPATIAL_MAP_SUFFIX = "_spatial_map"


def _hidden(channels: int, ratio: int) -> int:
    """Bottleneck width: at least 4 units so tiny test models keep some capacity."""
    return max(int(channels) // int(ratio), 4)


@keras.saving.register_keras_serializable(package="kdefect")
class ChannelPool(keras.layers.Layer):
    """Mean and max over channels, stacked: (B,H,W,C) -> (B,H,W,2). No weights."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.concat(
            [tf.reduce_mean(x, axis=-1, keepdims=True), tf.reduce_max(x, axis=-1, keepdims=True)], axis=-1
        )

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([2])


@keras.saving.register_keras_serializable(package="kdefect")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation (Hu et al. 2018): reweights channels by a learned gate."""

    def __init__(self, ratio: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ratio = int(ratio)

    def build(self, input_shape: Any) -> None:
        c = int(input_shape[-1])
        self.pool = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")
        self.reduce = keras.layers.Conv2D(_hidden(c, self.ratio), 1, activation="relu", name="reduce")
        self.expand = keras.layers.Conv2D(c, 1, activation="sigmoid", name="expand")
        self.reduce.build((None, 1, 1, c))
        self.expand.build((None, 1, 1, _hidden(c, self.ratio)))
        super().build(input_shape)

    def gate(self, x: tf.Tensor) -> tf.Tensor:
        """The (B,1,1,C) channel weights in 0..1."""
        return self.expand(self.reduce(self.pool(x)))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x * self.gate(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="kdefect")
class CBAM(keras.layers.Layer):
    """Convolutional Block Attention Module (Woo et al. 2018): channel then spatial gate.

    ``return_attention=True`` makes ``call`` return ``(features, spatial_map)``;
    ``spatial_map(x)`` gives the (B,H,W,1) map for plotting either way.
    """

    def __init__(self, ratio: int = 8, kernel_size: int = 7, return_attention: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ratio = int(ratio)
        self.kernel_size = int(kernel_size)
        self.return_attention = bool(return_attention)

    def build(self, input_shape: Any) -> None:
        c = int(input_shape[-1])
        h = _hidden(c, self.ratio)
        self.mlp1 = keras.layers.Dense(h, activation="relu", name="mlp1")
        self.mlp2 = keras.layers.Dense(c, name="mlp2")
        self.mlp1.build((None, c))
        self.mlp2.build((None, h))
        self.channel_pool = ChannelPool(name="channel_pool")
        self.spatial = keras.layers.Conv2D(1, self.kernel_size, padding="same", activation="sigmoid", name="spatial")
        self.spatial.build((None, None, None, 2))
        super().build(input_shape)

    def channel_gate(self, x: tf.Tensor) -> tf.Tensor:
        avg = tf.reduce_mean(x, axis=[1, 2])
        mx = tf.reduce_max(x, axis=[1, 2])
        gate = tf.sigmoid(self.mlp2(self.mlp1(avg)) + self.mlp2(self.mlp1(mx)))
        return gate[:, None, None, :]

    def _both(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        xc = x * self.channel_gate(x)
        sa = self.spatial(self.channel_pool(xc))
        return xc * sa, sa

    def spatial_map(self, x: tf.Tensor) -> tf.Tensor:
        """The (B,H,W,1) spatial attention (0..1) this layer applies to input ``x``."""
        return self._both(x)[1]

    def call(self, x: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        y, sa = self._both(x)
        return (y, sa) if self.return_attention else y

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "ratio": self.ratio,
            "kernel_size": self.kernel_size,
            "return_attention": self.return_attention,
        }


def se_block(x: tf.Tensor, ratio: int = 16, name: str = "se") -> tf.Tensor:
    """SE from standard layers; the final Multiply is named ``name``."""
    c = int(x.shape[-1])
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = keras.layers.Conv2D(_hidden(c, ratio), 1, activation="relu", name=f"{name}_reduce")(s)
    s = keras.layers.Conv2D(c, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return keras.layers.Multiply(name=name)([x, s])


def cbam_block(x: tf.Tensor, ratio: int = 8, kernel_size: int = 7, name: str = "cbam") -> tf.Tensor:
    """CBAM from standard layers (+ ChannelPool); the spatial map is layer ``{name}_spatial_map``."""
    c = int(x.shape[-1])
    avg = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_avgpool")(x)
    mx = keras.layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_maxpool")(x)
    both = keras.layers.Concatenate(axis=1, name=f"{name}_stack")([avg, mx])
    hid = keras.layers.Conv2D(_hidden(c, ratio), 1, activation="relu", name=f"{name}_mlp1")(both)
    hid = keras.layers.AveragePooling2D(pool_size=(2, 1), name=f"{name}_mlp_merge")(hid)
    gate = keras.layers.Conv2D(c, 1, activation="sigmoid", name=f"{name}_mlp2")(hid)
    xc = keras.layers.Multiply(name=f"{name}_channel")([x, gate])
    pooled = ChannelPool(name=f"{name}_channel_pool")(xc)
    sa = keras.layers.Conv2D(
        1, kernel_size, padding="same", activation="sigmoid", name=f"{name}{SPATIAL_MAP_SUFFIX}"
    )(pooled)
    return keras.layers.Multiply(name=name)([xc, sa])


def apply_attention(x: tf.Tensor, kind: str, name: str = "attention", impl: str = "blocks") -> tf.Tensor:
    """Put ``kind`` attention (none|se|cbam) on ``x``; the output layer is named ``name``."""
    kind = str(kind).lower()
    if kind not in ATTENTION_KINDS:
        raise ConfigError(f"model.attention: '{kind}' is not one of {', '.join(ATTENTION_KINDS)}.")
    if impl not in ATTENTION_IMPLS:
        raise ConfigError(f"attention impl '{impl}' is not one of {', '.join(ATTENTION_IMPLS)}.")
    if kind == "none":
        return x
    if impl == "layer":
        return (SqueezeExcite(name=name) if kind == "se" else CBAM(name=name))(x)
    return se_block(x, name=name) if kind == "se" else cbam_block(x, name=name)


def spatial_attention_model(model: keras.Model) -> keras.Model | None:
    """A model image -> [spatial maps (B,H,W,1)] for every CBAM in ``model`` (None when it has none).

    Works for both forms: ``cbam_block`` maps are layer outputs; a ``CBAM`` layer's map
    is recomputed from its input with its own weights.
    """
    outputs = []
    for layer in model.layers:
        if layer.name.endswith(SPATIAL_MAP_SUFFIX):
            outputs.append(layer.output)
        elif isinstance(layer, CBAM):
            outputs.append(layer.spatial_map(layer.input))
    if not outputs:
        return None
    return keras.Model(model.inputs, outputs, name="spatial_attention")
