"""build_training_state: a compiled model's first fit traces its train step once, not twice."""

from __future__ import annotations

import numpy as np


def _traced_fit(prebuild: bool, count) -> int:
    from kdefect.keras import keras
    from kdefect.models.compiled import build_training_state

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalMaxPooling2D()(x))
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy()])
    if prebuild:
        build_training_state(model)
    traces = count(type(model))
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    model.fit(np.zeros((8, 8, 8, 1), "float32"), y, batch_size=4, epochs=2, verbose=0)
    return len(traces)


def test_prebuilt_state_leaves_one_trace_and_without_it_there_are_two(train_step_traces):
    assert _traced_fit(True, train_step_traces) == 1
    assert _traced_fit(False, train_step_traces) == 2  # what the helper removes: the variable-creating first trace


def test_dict_losses_build_with_their_keys_and_twice_is_harmless():
    from kdefect.keras import keras
    from kdefect.models.compiled import build_training_state

    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"box": keras.layers.Dense(4, name="box")(inputs),
                                 "cls": keras.layers.Dense(2, name="cls")(inputs)})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"box": "mse", "cls": "mse"})
    build_training_state(model)
    build_training_state(model)
    assert model.compiled_loss.built
    assert len(model.optimizer.variables) > 1  # slots exist before any step
    hist = model.fit(np.zeros((4, 4), "float32"), {"box": np.zeros((4, 4), "float32"),
                                                  "cls": np.zeros((4, 2), "float32")}, verbose=0)
    assert np.isfinite(hist.history["loss"][0]) and "box_loss" in hist.history
