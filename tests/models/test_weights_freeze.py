"""Weight sources (none / imagenet / file) and the transfer-learning freeze helpers."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest

from kdefect.errors import ModelError
from kdefect.keras import keras
from kdefect.tasks.classify import backbone_layers, build_classifier, freeze_backbone, unfreeze_top

X = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ModelError, match=str(missing)):
        build_classifier(2, "tiny_cnn", (32, 32), weights=str(missing))


@pytest.mark.parametrize("filename", ["w.weights.h5", "m.keras", "m.h5", "w.h5"])
def test_local_weights_saved_by_kdefect_load(tmp_path, filename):
    src = build_classifier(3, "tiny_cnn", (32, 32), attention="se")
    path = tmp_path / filename
    if filename.startswith("w"):
        src.save_weights(path)
    else:
        src.save(path)
    same = build_classifier(3, "tiny_cnn", (32, 32), attention="se", weights=str(path))
    np.testing.assert_allclose(same.predict(X, verbose=0), src.predict(X, verbose=0), atol=1e-6)
    if filename.endswith(".weights.h5"):  # Keras-3 layout: positional, fits only the same architecture
        with pytest.raises(ModelError, match="by position"):
            build_classifier(5, "tiny_cnn", (32, 32), attention="se", weights=str(path))
        return
    # other class count: backbone and attention load, the mismatched head is skipped
    other = build_classifier(5, "tiny_cnn", (32, 32), attention="se", weights=str(path))
    np.testing.assert_array_equal(other.get_layer("tiny_conv3").get_weights()[0],
                                  src.get_layer("tiny_conv3").get_weights()[0])
    assert other.output.shape[-1] == 5


def test_a_run_folder_is_a_weights_source(tmp_path):
    run = tmp_path / "runs" / "other_line"
    run.mkdir(parents=True)
    src = build_classifier(6, "tiny_cnn", (32, 32), attention="se")
    with pytest.raises(ModelError, match="not a kdefect run"):
        build_classifier(2, "tiny_cnn", (32, 32), attention="se", weights=str(run))
    (run / "config.yaml").write_text("task: classify\n")
    with pytest.raises(ModelError, match="has no model.keras; did its fit finish"):
        build_classifier(2, "tiny_cnn", (32, 32), attention="se", weights=str(run))
    src.save(run / "model.keras")
    warm = build_classifier(2, "tiny_cnn", (32, 32), attention="se", weights=str(run))  # another class count
    for name in ("tiny_conv1", "tiny_conv3", "attention_reduce"):
        np.testing.assert_array_equal(warm.get_layer(name).get_weights()[0], src.get_layer(name).get_weights()[0])


def test_weights_from_another_backbone_is_model_error(tmp_path):
    path = tmp_path / "tiny.h5"
    build_classifier(2, "tiny_cnn", (32, 32)).save_weights(path)
    with pytest.raises(ModelError, match="no layer"):
        build_classifier(3, "resnet_small", (32, 32), alpha=0.25, weights=str(path))


def test_imagenet_download_failure_is_model_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(ModelError, match="could not download the ImageNet weights for backbone 'mobilenet_v2'"):
        build_classifier(2, "mobilenet_v2", (32, 32), weights="imagenet")
    with pytest.raises(ModelError, match="needs 3 input channels"):
        build_classifier(2, "mobilenet_v2", (32, 32), channels=1, weights="imagenet")


def _trainable_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_freeze_and_unfreeze_top_keep_batchnorm_frozen():
    model = build_classifier(3, "tiny_cnn", (32, 32), attention="se")
    total = _trainable_params(model)
    freeze_backbone(model)
    head_only = _trainable_params(model)
    assert all(not layer.trainable for layer in backbone_layers(model))
    assert model.get_layer("head_logits").trainable and model.get_layer("attention_reduce").trainable
    assert head_only < total
    unfreeze_top(model, 1)
    assert model.get_layer("tiny_conv3").trainable and not model.get_layer("tiny_conv2").trainable
    assert _trainable_params(model) == head_only + 32 * 9 * 64
    unfreeze_top(model, -1)
    assert all(layer.trainable for layer in backbone_layers(model) if "conv" in layer.name)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and not any(bn.trainable for bn in bns)
    assert _trainable_params(model) == total - sum(2 * bn.gamma.shape[0] for bn in bns)
    unfreeze_top(model, 0)
    assert _trainable_params(model) == head_only
