"""to_tflite: every mode converts; INT8 agrees with float Keras; bad inputs fail cleanly and leave nothing."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.edge.interpreter import TFLiteRunner
from kdefect.errors import ExportError


def _tflite_probs(path, images):
    runner = TFLiteRunner(path)
    return np.concatenate([runner(img)[0] for img in images])


@pytest.mark.parametrize("mode,tol", [("float32", 1e-4), ("float16", 2e-2), ("dynamic", 5e-2)])
def test_float_modes_match_keras(tmp_path, trained_model, easy_test, mode, tol):
    from kdefect.export import to_tflite

    x, _ = easy_test
    out = to_tflite(trained_model, tmp_path / f"m_{mode}.tflite", mode=mode)
    probs = _tflite_probs(out, x)
    ref = trained_model.predict(x.astype(np.float32), verbose=0)
    assert probs.shape == ref.shape
    assert np.abs(probs - ref).max() < tol
    assert TFLiteRunner(out).input_detail["dtype"] == np.float32


def test_int8_ptq_agrees_and_takes_raw_uint8(tmp_path, trained_model, easy_train, easy_test):
    from kdefect.export import to_tflite
    from kdefect.export.litert_info import float_ops, model_io

    x, y = easy_test
    out = to_tflite(trained_model, tmp_path / "m_int8.tflite", mode="int8", representative=easy_train[0][::3])
    (inp,), (outp,) = model_io(out)
    assert inp["dtype"] == "uint8" and inp["shape"] == [1, 32, 32, 3] and inp["shape_signature"][0] == 1
    assert inp["scale"] == pytest.approx(1.0) and inp["zero_point"] == 0  # raw pixels in
    assert outp["dtype"] == "uint8"
    assert float_ops(out) == []
    probs = _tflite_probs(out, x)
    ref = trained_model.predict(x.astype(np.float32), verbose=0)
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.95
    assert np.abs(probs - ref).max() < 0.1
    assert (probs.argmax(1) == y).mean() >= 0.9


def test_int8_float_io(tmp_path, trained_model, easy_train):
    from kdefect.export import to_tflite
    from kdefect.export.litert_info import model_io

    out = to_tflite(trained_model, tmp_path / "m.tflite", "int8", easy_train[0][:10], input_type="int8",
                    output_type="float32")
    (inp,), (outp,) = model_io(out)
    assert inp["dtype"] == "int8" and inp["zero_point"] == -128 and inp["scale"] == pytest.approx(1.0)
    assert outp["dtype"] == "float32"


@pytest.mark.parametrize("rep", [None, np.zeros((0, 32, 32, 3), np.uint8), []])
def test_empty_representative_refused(tmp_path, trained_model, rep):
    from kdefect.export import to_tflite

    out = tmp_path / "m.tflite"
    with pytest.raises(ExportError, match="representative"):
        to_tflite(trained_model, out, mode="int8", representative=rep)
    assert list(tmp_path.iterdir()) == []


def test_failed_conversion_leaves_nothing(tmp_path):
    from kdefect.export import to_tflite
    from kdefect.keras import keras, tf

    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="c")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = tf.linalg.det(tf.reshape(x, (-1, 2, 2)))[:, None]  # MatrixDeterminant: no TFLite kernel at all
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))
    out = tmp_path / "m.tflite"
    out.write_bytes(b"previous model")
    with pytest.raises(ExportError, match="MatrixDeterminant"):
        to_tflite(model, out, mode="float32")
    assert out.read_bytes() == b"previous model"  # the old file is untouched, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_unknown_mode_and_dynamic_shape(tmp_path, trained_model):
    from kdefect.export import to_tflite
    from kdefect.keras import keras

    with pytest.raises(ExportError, match="unknown TFLite mode"):
        to_tflite(trained_model, tmp_path / "m.tflite", mode="int4")
    inp = keras.Input((None, None, 3))
    dyn = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp)))
    with pytest.raises(ExportError, match="dynamic input shape"):
        to_tflite(dyn, tmp_path / "d.tflite", mode="float32")


def test_stratified_indices_keep_every_class():
    from kdefect.export.representative import stratified_indices

    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    idx = stratified_indices(labels, 20, seed=0)
    assert len(idx) == 20 and len(set(idx)) == 20
    assert set(labels[idx]) == {0, 1, 2}
    assert (labels[idx] == 0).sum() >= 15
    assert np.array_equal(idx, stratified_indices(labels, 20, seed=0))
