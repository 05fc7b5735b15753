"""SE / CBAM layers and blocks: config round-trip, save/load with identical outputs, spatial maps."""

from __future__ import annotations

import numpy as np
import pytest

import kdefect.models  # noqa: F401  (registers custom objects)
from kdefect.keras import keras
from kdefect.models import CBAM, SqueezeExcite, spatial_attention_model
from kdefect.tasks.classify import build_classifier

X = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("layer", [SqueezeExcite(ratio=4, name="se"), CBAM(ratio=2, kernel_size=5, name="cb")])
def test_layer_config_round_trip(layer):
    feats = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    y = layer(feats).numpy()
    clone = type(layer).from_config(layer.get_config())
    clone(feats)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(feats).numpy(), y, atol=1e-6)
    assert clone.get_config() == layer.get_config()


def test_cbam_layer_exposes_spatial_map():
    feats = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    layer = CBAM(ratio=4, return_attention=True)
    y, sa = layer(feats)
    assert y.shape == feats.shape and sa.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(layer.spatial_map(feats).numpy(), sa.numpy(), atol=1e-6)
    assert float(np.min(sa)) >= 0.0 and float(np.max(sa)) <= 1.0


@pytest.mark.parametrize(("attention", "impl"), [("none", "blocks"), ("se", "blocks"), ("cbam", "blocks"),
                                                 ("se", "layer"), ("cbam", "layer")])
def test_save_load_round_trip_identical(tmp_path, attention, impl):
    model = build_classifier(4, "tiny_cnn", (32, 32), attention=attention, attention_impl=impl)
    before = model.predict(X, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects needed
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), before)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_save_load_resnet_small_cbam_in_blocks(tmp_path):
    model = build_classifier(3, "resnet_small", (32, 32), alpha=0.25, attention="cbam", attention_in_blocks=True)
    model.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras")
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


@pytest.mark.parametrize("impl", ["blocks", "layer"])
def test_spatial_attention_model(impl):
    model = build_classifier(2, "tiny_cnn", (32, 32), attention="cbam", attention_impl=impl)
    maps = spatial_attention_model(model)
    out = maps(X)
    out = out[0] if isinstance(out, list) else out
    assert out.shape == (3, 8, 8, 1)
    assert spatial_attention_model(build_classifier(2, "tiny_cnn", (32, 32))) is None
