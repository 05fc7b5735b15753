"""Image classifiers: raw pixels in, class probabilities out, one flat functional model.

Layout (names are a contract with export, edge and trust code)::

    image (float32 0..255) -> preprocess* -> backbone -> [attention] ->
    head_features (GAP, penultimate vector for OOD) -> head_dropout ->
    head_logits (Dense) -> probs (Softmax, float32)

Preprocessing lives in the model (Rescaling / Normalization) so a device feeds
raw pixels; the graph is flat (no nested Model layers) because TF-MOT's
``quantize_model`` refuses nested models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kdefect.config import Config
from kdefect.core.heads import FEATURES_LAYER, LOGITS_LAYER
from kdefect.errors import ConfigError
from kdefect.keras import keras, tf
from kdefect.models import BACKBONES, build_backbone
from kdefect.models.attention import apply_attention
from kdefect.models.weights import load_local_weights, weights_kind

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_PREFIXES = ("head_", "probs")
TOP_ATTENTION = "attention"


def preprocess(x: tf.Tensor, mode: str, channels: int) -> tf.Tensor:
    """In-model scaling of 0..255 pixels for a backbone's ``preprocess`` metadata."""
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)
    if mode == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="preprocess")(x)
    if mode == "torch":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if channels != 3:  # grayscale etc.: one statistic shared by every channel
            mean, std = (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
        x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_scale")(x)
        return keras.layers.Normalization(
            axis=-1, mean=list(mean), variance=[s * s for s in std], name="preprocess_norm"
        )(x)
    if mode == "raw":
        return x
    raise ConfigError(f"unknown preprocess mode '{mode}' (expected tf, torch, unit or raw).")


def build_classifier(
    num_classes: int,
    backbone: str = "tiny_cnn",
    input_size: tuple[int, int] = (64, 64),
    channels: int = 3,
    weights: str = "none",
    alpha: float = 1.0,
    attention: str = "none",
    attention_in_blocks: bool = False,
    dropout: float = 0.2,
    attention_impl: str = "blocks",
    pooling: str = "avg",
) -> keras.Model:
    """Build a flat tf_keras classifier (see module docstring for the layer names).

    ``attention`` goes on the backbone output as layer ``attention`` unless
    ``attention_in_blocks`` puts it inside the backbone's blocks instead.
    ``attention_impl``: "blocks" (standard layers, fully QAT-quantizable; default)
    or "layer" (one ``SqueezeExcite`` / ``CBAM`` layer).
    ``pooling``: "avg" (the ImageNet convention) or "max", which keeps a small,
    local defect's response from being averaged away over a large clean surface.
    """
    if int(num_classes) < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}.")
    h, w = (int(v) for v in input_size)
    meta = BACKBONES.meta(backbone)
    kind = weights_kind(weights)
    image = keras.Input(shape=(h, w, int(channels)), dtype="float32", name="image")
    x = preprocess(image, meta["preprocess"], int(channels))
    x = build_backbone(backbone, x, weights=weights, alpha=alpha, attention=attention,
                       attention_in_blocks=attention_in_blocks)
    if not attention_in_blocks:
        x = apply_attention(x, attention, name=TOP_ATTENTION, impl=attention_impl)
    pool = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
    x = pool(name=FEATURES_LAYER)(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(int(num_classes), name=LOGITS_LAYER)(x)
    probs = keras.layers.Softmax(dtype="float32", name="probs")(x)
    model = keras.Model(image, probs, name=f"kdefect_{backbone}")
    if kind != "imagenet":
        _fast_batchnorm(model)
    if kind == "file":  # second pass picks up head / attention layers too
        load_local_weights(model, weights)
    log.info("classifier %s: %d params, input %s", model.name, model.count_params(), (h, w, channels))
    return model


SCRATCH_BN_MOMENTUM = 0.9


def _fast_batchnorm(model: keras.Model) -> None:
    """Let BatchNorm's moving statistics converge within a short from-scratch run.

    keras.applications uses momentum 0.99-0.999, tuned for ImageNet's 100k+ steps:
    after the few hundred steps of a defect data set the moving averages still sit
    near their initial values and the model predicts one class at inference time
    (seen on NEU: train accuracy 0.90, validation 0.17).  Pretrained BatchNorm is
    frozen during fine-tuning, so ImageNet models keep their momentum.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum > SCRATCH_BN_MOMENTUM:
            layer.momentum = SCRATCH_BN_MOMENTUM


def build_classifier_from_config(cfg: Config, num_classes: int) -> keras.Model:
    """``build_classifier`` with every option taken from a run config."""
    m = cfg.model
    return build_classifier(
        num_classes,
        backbone=m.backbone,
        input_size=tuple(cfg.data.image_size),
        channels=cfg.data.channels,
        weights=m.weights,
        alpha=m.alpha,
        attention=m.attention,
        attention_in_blocks=m.attention_in_blocks,
        dropout=m.dropout,
        pooling=m.pooling,
    )


def _is_top(name: str) -> bool:
    return name.startswith(HEAD_PREFIXES) or name == TOP_ATTENTION or name.startswith(TOP_ATTENTION + "_")


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer that is not the input, preprocessing, the top attention block or the head.

    The top attention (``attention*``) is new and randomly initialised even on a
    pretrained backbone, so it trains with the head, not with the backbone.
    """
    return [
        layer for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and not layer.name.startswith("preprocess")
        and not _is_top(layer.name)
    ]


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last 4-D feature map before the head: the layer feeding ``head_features``.

    That is the backbone output (or the top attention block's output), the usual Grad-CAM target;
    the literal last Conv2D would be wrong with CBAM (its 1-channel spatial conv).
    """
    head = model.get_layer(FEATURES_LAYER)
    source = head.input._keras_history.layer  # the public graph API has no parent accessor
    return source.name


def _is_bn(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze_backbone(model: keras.Model) -> keras.Model:
    """Phase 1 of transfer learning: only the top attention and the head train. Recompile afterwards."""
    for layer in backbone_layers(model):
        layer.trainable = False
    return model


def unfreeze_top(model: keras.Model, n: int) -> keras.Model:
    """Phase 2: make the top ``n`` weight-bearing (non-BatchNorm) backbone layers trainable (``n=-1``: all).

    BatchNormalization layers stay ``trainable=False``: in tf_keras that also runs
    them in inference mode, so the pretrained moving mean/variance are used and
    kept. Updating them from small fine-tuning batches would shift every
    activation the pretrained convolutions expect and wreck the learned
    features (the standard Keras transfer-learning advice). Recompile afterwards.
    """
    layers = backbone_layers(model)
    freeze_backbone(model)
    weighted = [layer for layer in layers if layer.weights and not _is_bn(layer)]
    chosen: Sequence[keras.layers.Layer] = weighted if n < 0 else weighted[len(weighted) - n:] if n else []
    chosen_ids = {id(layer) for layer in chosen}
    for layer in layers:
        # weightless layers (ReLU, Add...) carry no state; follow the unfrozen part
        if id(layer) in chosen_ids or (not layer.weights and chosen):
            layer.trainable = True
    log.info("unfroze %d of %d weight layers (BatchNorm stays frozen)", len(chosen), len(weighted))
    return model
