"""Every backbone builds into one flat classifier with the contracted layer names."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.config import load_config
from kdefect.errors import ConfigError
from kdefect.keras import keras
from kdefect.tasks.classify import backbone_layers, build_classifier, build_classifier_from_config, last_conv_layer_name

FAST = [
    ("tiny_cnn", 1.0),
    ("tiny_cnn_s2", 0.5),
    ("resnet_small", 0.25),
    ("mobilenet_v2", 0.35),
    ("mobilenet_v3_small", 0.75),
    ("mobilenet_v3_large", 0.75),
    ("yolo_v8_tiny", 1.0),
]
SLOW = ["resnet50_v2", "densenet121", "efficientnet_b0"]


def _check(model: keras.Model, size: int, num_classes: int = 6) -> None:
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.Model)], "model must be flat"
    names = [layer.name for layer in model.layers]
    assert names[0] == "image" and model.input.dtype == "float32"
    assert names[-4:] == ["head_features", "head_dropout", "head_logits", "probs"]
    assert model.get_layer("head_features").output.shape[-1] == model.get_layer("head_logits").input.shape[-1]
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    probs = model.predict(x, verbose=0)
    assert probs.shape == (2, num_classes) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(model.get_layer(last_conv_layer_name(model)).output.shape) == 4
    assert all(not layer.name.startswith(("head_", "preprocess", "probs")) for layer in backbone_layers(model))


@pytest.mark.parametrize(("backbone", "alpha"), FAST)
def test_fast_backbones_build_flat_classifier(backbone, alpha):
    size = 32
    model = build_classifier(6, backbone, (size, size), alpha=alpha, attention="se")
    _check(model, size)
    assert last_conv_layer_name(model) == "attention"
    assert any(name.startswith("preprocess") for name in (layer.name for layer in model.layers))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", SLOW)
def test_big_backbones_build_flat_classifier(backbone):
    _check(build_classifier(6, backbone, (64, 64)), 64)


def test_preprocess_layers_match_metadata():
    tiny = build_classifier(2, "tiny_cnn", (32, 32))
    x = np.full((1, 32, 32, 3), 255.0, np.float32)
    pre = keras.Model(tiny.input, tiny.get_layer("preprocess").output)
    np.testing.assert_allclose(pre(x).numpy(), 1.0)  # unit: x/255
    mnv2 = build_classifier(2, "mobilenet_v2", (32, 32), alpha=0.35)
    pre = keras.Model(mnv2.input, mnv2.get_layer("preprocess").output)
    np.testing.assert_allclose(pre(x).numpy(), 1.0, atol=1e-6)  # tf: x/127.5-1
    np.testing.assert_allclose(pre(x * 0).numpy(), -1.0, atol=1e-6)


def test_tiny_cnn_s2_strides_its_first_convolution_instead_of_pooling_after_it():
    """Same weights (a tiny_cnn checkpoint's shapes fit), the first block at half resolution, later blocks alike."""
    full, s2 = (build_classifier(5, b, (64, 64), attention="se", attention_in_blocks=True, pooling="max")
                for b in ("tiny_cnn", "tiny_cnn_s2"))
    assert [layer.name for layer in full.layers if layer.name != "tiny_pool1"] == [layer.name for layer in s2.layers]
    assert [w.shape for w in full.weights] == [w.shape for w in s2.weights]
    assert full.get_layer("tiny_conv1").output.shape[1:3] == (64, 64)
    assert s2.get_layer("tiny_conv1").output.shape[1:3] == (32, 32)
    for name in ("tiny_conv2", "tiny_conv3"):
        assert s2.get_layer(name).output.shape == full.get_layer(name).output.shape


def test_resnet_small_attention_inside_blocks():
    model = build_classifier(3, "resnet_small", (32, 32), alpha=0.25, attention="cbam", attention_in_blocks=True)
    names = {layer.name for layer in model.layers}
    assert {"res1_1_att", "res4_2_att_spatial_map"} <= names and "attention" not in names
    assert last_conv_layer_name(model) == "res4_2_out"


def test_option_errors_are_config_errors():
    with pytest.raises(ConfigError, match=r"densenet121.*no width multiplier"):
        build_classifier(2, "densenet121", (32, 32), alpha=0.5)
    with pytest.raises(ConfigError, match="cannot take attention inside its blocks"):
        build_classifier(2, "mobilenet_v2", (32, 32), attention="se", attention_in_blocks=True)
    with pytest.raises(ConfigError, match="at least 32 px"):
        build_classifier(2, "mobilenet_v2", (16, 16))
    with pytest.raises(ConfigError, match=r"model\.attention"):
        build_classifier(2, "tiny_cnn", (32, 32), attention="sse")
    with pytest.raises(ConfigError, match="Did you mean 'tiny_cnn'"):
        build_classifier(2, "tiny_cn", (32, 32))


def test_build_from_config_and_grayscale():
    cfg = load_config(overrides=["data.image_size=[32,48]", "data.channels=1", "model.attention=cbam"])
    model = build_classifier_from_config(cfg, 4)
    assert model.input.shape.as_list() == [None, 32, 48, 1]
    assert model.output.shape.as_list() == [None, 4]
    assert model.get_layer("attention_spatial_map").output.shape.as_list() == [None, 8, 12, 1]
