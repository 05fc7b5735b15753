"""The classifier learns, converts to float TFLite exactly, and TF-MOT QAT can wrap it."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.keras import keras, tf, tfmot
from kdefect.losses import FocalLoss
from kdefect.models.quantize import annotate_for_qat, quantize_model
from kdefect.tasks.classify import build_classifier


def _squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright vs dark square on a noisy mid-grey background, 32 px."""
    rng = np.random.default_rng(seed)
    x = rng.normal(128, 20, (n, 32, 32, 3))
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(0, 20, 2)
        x[i, r:r + 12, c:c + 12] = 230 if y[i] else 25
    return np.clip(x, 0, 255).astype("float32"), np.eye(2, dtype="float32")[y]


def test_tiny_cnn_learns_easy_task():
    keras.utils.set_random_seed(0)
    x, y = _squares(480, 0)
    xt, yt = _squares(200, 1)
    model = build_classifier(2, "tiny_cnn", (32, 32), attention="se")
    model.compile(keras.optimizers.Adam(3e-3), loss=FocalLoss(gamma=1.0), metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 60 steps
    acc = float((model.predict(xt, verbose=0).argmax(1) == yt.argmax(1)).mean())
    assert acc >= 0.9, acc


def _tflite_outputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    interp = tf.lite.Interpreter(model_content=conv.convert())
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


@pytest.mark.parametrize("impl", ["blocks", pytest.param("layer", marks=pytest.mark.slow)])
def test_float_tflite_matches_keras_with_se_and_cbam(impl):
    x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    for attention in ("se", "cbam"):
        model = build_classifier(3, "tiny_cnn", (32, 32), attention=attention, attention_impl=impl)
        np.testing.assert_allclose(_tflite_outputs(model, x), model.predict(x, verbose=0), atol=1e-4)


@pytest.mark.parametrize("attention", ["se", pytest.param("cbam", marks=pytest.mark.slow)])
def test_qat_wraps_kdefect_classifier(attention):
    model = build_classifier(3, "tiny_cnn", (32, 32), attention=attention)
    _, used = annotate_for_qat(model)
    assert used["preprocess"] == "OutputQuantizeConfig" and used["attention"] == "OutputQuantizeConfig"
    qat = quantize_model(model)
    wrappers = [layer for layer in qat.layers if isinstance(layer, tfmot().quantization.keras.QuantizeWrapperV2)]
    assert {"quant_head_logits", "quant_attention", "quant_preprocess"} <= {layer.name for layer in wrappers}
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # fake-quant only perturbs: QAT model starts close to the float model
    np.testing.assert_allclose(qat.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.15)
    qat.compile("adam", loss="categorical_crossentropy")
    history = qat.fit(x, np.eye(3, dtype="float32")[[0, 1]], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
