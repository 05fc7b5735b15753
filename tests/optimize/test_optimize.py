"""QAT (SE / CBAM models), pruning that survives INT8, distillation, and the clear QAT errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kdefect.edge.interpreter import TFLiteRunner
from kdefect.errors import ExportError


def _agreement(path, model, x):
    runner = TFLiteRunner(path)
    probs = np.concatenate([runner(img)[0] for img in x])
    ref = model.predict(x.astype(np.float32), verbose=0)
    return (probs.argmax(1) == ref.argmax(1)).mean(), np.abs(probs - ref).max(), probs


def _ds(x, y, n=3):
    from kdefect.keras import tf

    return tf.data.Dataset.from_tensor_slices((x.astype(np.float32), np.eye(n, dtype=np.float32)[y])).batch(16)


def test_qat_cbam_layer_model_converts_and_agrees(tmp_path, trained_attention_model, easy_train, easy_test, caplog):
    from kdefect.export import quantize_aware, to_tflite
    from kdefect.export.litert_info import model_io

    x, y = easy_test
    with caplog.at_level(logging.INFO, logger="kdefect.optimize.qat"):
        q = quantize_aware(trained_attention_model, _ds(*easy_train), epochs=1, steps_per_epoch=2,
                           learning_rate=1e-5)
    assert any(type(lay).__name__ == "QuantizeWrapperV2" and "CBAM" in type(lay.layer).__name__ for lay in q.layers)
    assert "kdefect-config" in caplog.text
    out = to_tflite(q, tmp_path / "qat.tflite", "int8", easy_train[0][::4])
    (inp,), _ = model_io(out)
    assert inp["scale"] == pytest.approx(1.0) and inp["zero_point"] == 0
    agree, diff, probs = _agreement(out, trained_attention_model, x)
    assert agree >= 0.95 and diff < 0.15
    assert (probs.argmax(1) == y).mean() >= 0.9


def test_qat_plan_se_blocks_and_cbam_layer():
    """Every layer of SE-in-blocks / CBAM models gets a quantization plan; nothing unknown."""
    from kdefect.optimize.qat import plan_qat
    from kdefect.tasks.classify import build_classifier

    se = build_classifier(3, "tiny_cnn", (32, 32), attention="se", attention_in_blocks=True)
    plan = plan_qat(se)
    assert plan.left_float == [] and "Multiply" in set(plan.custom.values())
    cb = build_classifier(3, "tiny_cnn", (32, 32), attention="cbam", attention_impl="layer")
    assert "CBAM" in plan_qat(cb).custom.values()


def test_unsupported_custom_layer_clear_error():
    from kdefect.export import quantize_aware
    from kdefect.keras import keras

    class Weird(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((8, 8, 3), name="image")
    x = Weird(name="weird")(keras.layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    with pytest.raises(ExportError, match=r"weird.*post-training INT8"):
        quantize_aware(model, (np.zeros((2, 8, 8, 3)), np.zeros(2, int)), epochs=0)


def test_subclassed_and_nested_models_refused():
    from kdefect.keras import keras
    from kdefect.optimize.qat import check_qat_model

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(ExportError, match=r"subclassed.*post-training"):
        check_qat_model(Sub())
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="backbone")
    inp = keras.Input((4,))
    with pytest.raises(ExportError, match="nests"):
        check_qat_model(keras.Model(inp, keras.layers.Dense(2)(inner(inp))))
    with pytest.raises(ExportError, match="tf_keras model"):
        check_qat_model("model.keras")


@pytest.mark.slow
def test_prune_keeps_sparsity_through_int8(tmp_path, trained_model, easy_train, easy_test):
    from kdefect.export import prune, quantize_aware, to_tflite
    from kdefect.export.litert_info import weight_sparsity
    from kdefect.keras import tfmot
    from kdefect.optimize import model_sparsity

    before = model_sparsity(trained_model)["overall"]
    pruned = prune(trained_model, _ds(*easy_train), sparsity=0.5, epochs=2)
    assert model_sparsity(trained_model)["overall"] == before  # caller's model untouched
    assert model_sparsity(pruned)["overall"] == pytest.approx(0.5, abs=0.02)
    scheme = tfmot().experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    q = quantize_aware(pruned, _ds(*easy_train), epochs=1, steps_per_epoch=2, learning_rate=1e-5, scheme=scheme)
    out = to_tflite(q, tmp_path / "pqat.tflite", "int8", easy_train[0][::4])
    sp = weight_sparsity(out)
    assert sp["overall"] >= 0.45
    agree, _, probs = _agreement(out, pruned, easy_test[0])
    assert agree >= 0.9 and (probs.argmax(1) == easy_test[1]).mean() >= 0.8


def test_prune_rejects_bad_sparsity(trained_model, easy_train):
    from kdefect.export import prune

    with pytest.raises(ExportError, match="between 0 and 1"):
        prune(trained_model, _ds(*easy_train), sparsity=50)


def test_distillation_student_learns_from_teacher(trained_model, easy_train, easy_test):
    from kdefect.export import distill
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier

    keras.utils.set_random_seed(1)
    student = build_classifier(3, "tiny_cnn", input_size=(24, 24), dropout=0.0)  # smaller input than the teacher
    x, y = easy_test
    before = (student.predict(x[:, :24, :24].astype(np.float32), verbose=0).argmax(1) == y).mean()
    distill(trained_model, student, _ds(*easy_train), temperature=4.0, alpha=0.3, epochs=14, learning_rate=3e-3)
    from kdefect.keras import tf

    xs = tf.image.resize(x.astype(np.float32), (24, 24)).numpy()
    after_probs = student.predict(xs, verbose=0)
    teacher_probs = trained_model.predict(x.astype(np.float32), verbose=0)
    after = (after_probs.argmax(1) == y).mean()
    assert after >= 0.85 and after > before
    assert (after_probs.argmax(1) == teacher_probs.argmax(1)).mean() >= 0.85
    with pytest.raises(ExportError, match="classes"):
        distill(trained_model, build_classifier(4, "tiny_cnn", (24, 24)), _ds(*easy_train), epochs=1)
