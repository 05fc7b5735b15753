"""EMA of the weights and the learning-rate warm-up on a tiny Dense model; both off by default."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.keras import keras


def _model(lr: float = 0.1) -> keras.Model:
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    m.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return m


class _Record(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.weights, self.lrs = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.lrs.append(float(keras.backend.get_value(self.model.optimizer.learning_rate)))

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(self.model.get_weights())


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 3)).astype("float32"), rng.normal(size=(12, 2)).astype("float32")


def test_ema_result_is_the_average_of_the_raw_weights():
    from kdefect.tasks.detect_tricks import WeightEMA

    m, rec = _model(), _Record()
    shadow = m.get_weights()
    ema = WeightEMA(decay=0.5, tau=1e-6)  # a constant decay of 0.5
    x, y = _data()
    m.fit(x, y, batch_size=4, epochs=2, callbacks=[rec, ema], verbose=0, shuffle=False)
    for w in rec.weights:  # the raw weights each step trained to
        shadow = [0.5 * s + 0.5 * r for s, r in zip(shadow, w)]
    for got, want in zip(m.get_weights(), shadow):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(m.get_weights()[0], rec.weights[-1][0])  # not the last raw weights


def test_ema_trains_on_raw_weights_between_epochs():
    from kdefect.tasks.detect_tricks import WeightEMA

    m, rec = _model(), _Record()
    x, y = _data()
    m.fit(x, y, batch_size=4, epochs=2, callbacks=[WeightEMA(0.5, 1e-6), rec], verbose=0, shuffle=False)
    # epoch 2 continued from the raw weights of epoch 1, not from its averages: plain SGD reproduces them
    ref, ref_rec = _model(), _Record()
    ref.fit(x, y, batch_size=4, epochs=2, callbacks=[ref_rec], verbose=0, shuffle=False)
    np.testing.assert_allclose(rec.weights[-1][0], ref_rec.weights[-1][0], rtol=1e-5)


def test_warmup_ramps_the_rate_then_hands_it_back():
    from kdefect.tasks.detect_tricks import LinearWarmup, warmup_steps

    m, rec = _model(0.1), _Record()
    x, y = _data()
    m.fit(x, y, batch_size=2, epochs=1, callbacks=[LinearWarmup(4), rec], verbose=0, shuffle=False)
    np.testing.assert_allclose(rec.lrs, [0.025, 0.05, 0.075, 0.1, 0.1, 0.1], rtol=1e-6)
    assert warmup_steps(1.5, 100, 10, None) == 15 and warmup_steps(2, 100, 10, 3) == 6
    assert warmup_steps(0.0, 100, 10, None) == 0


def test_tricks_are_off_by_default_and_on_by_config():
    from kdefect.config import load_config
    from kdefect.tasks.detect import _tricks
    from kdefect.tasks.detect_tricks import LinearWarmup, MosaicOff, WeightEMA

    assert _tricks(load_config(overrides=["task=detect"]), 100) == []
    on = _tricks(load_config(overrides=["task=detect", "detect.ema=true", "detect.warmup_epochs=1",
                                        "detect.augment_mosaic=true", "detect.mosaic_epochs=3"]), 100, object())
    assert [type(c) for c in on] == [MosaicOff, LinearWarmup, WeightEMA]


def test_trick_settings_are_range_checked():
    from kdefect.config import load_config
    from kdefect.errors import ConfigError

    for bad in ("detect.ema_decay=1", "detect.warmup_epochs=-1", "detect.backbone_min_match=0",
                "detect.mosaic_epochs=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(overrides=[bad])


def test_mosaic_switch_turns_mosaic_off_after_the_first_epochs():
    from kdefect.data.detection_pipeline import DetArrays, make_dataset
    from kdefect.keras import tf
    from kdefect.tasks.detect_tricks import MosaicOff

    rng = np.random.default_rng(0)
    n = 8
    arr = DetArrays(rng.integers(0, 255, (n, 64, 64, 3)).astype(np.uint8),
                    [np.array([[4, 4, 30, 30]], np.float32)] * n, [np.array([1])] * n, [(64, 64)] * n,
                    [f"{i}.png" for i in range(n)])
    originals = {im.astype(np.float32).tobytes() for im in arr.images}
    switch = tf.Variable(True, trainable=False)
    ds = make_dataset(arr, 4, True, mosaic=True, mosaic_switch=switch, flip=False, jitter=[], seed=0)
    assert any(im.tobytes() not in originals for im in next(iter(ds))[0].numpy())  # Mosaic while on
    cb = MosaicOff(switch, epochs=2)
    cb.on_epoch_begin(1)
    assert bool(switch.numpy())
    cb.on_epoch_begin(2)
    assert not bool(switch.numpy())
    assert all(im.tobytes() in originals for im in next(iter(ds))[0].numpy())  # untouched images once off


def test_val_map_scores_pick_the_weights_kept(tmp_path):
    """ValMAP in the standard callback set: the weights kept are those of the epoch with the highest score (scripted
    here, so the choice is real), and history.csv records every score."""
    import csv

    from kdefect.config import TrainConfig
    from kdefect.engine.callbacks import standard_callbacks
    from kdefect.tasks.detect_tricks import ValMAP

    m, rec = _model(), _Record()
    scripted = iter([0.2, 0.5, 0.3])
    val_map = ValMAP(lambda raw: next(scripted), lambda model: model)
    cbs = standard_callbacks(TrainConfig(patience=0, lr_schedule="constant"), 4, tmp_path / "h.csv", "val_map50",
                             keys=[("val_map50", -1.0)], before_best=[val_map])
    x, y = _data()
    m.fit(x, y, batch_size=4, epochs=3, callbacks=[*cbs.callbacks, rec], verbose=0, shuffle=False)
    epoch2 = rec.weights[2 * 3 - 1]  # 3 steps per epoch: the raw weights at the end of epoch 2
    for got, want in zip(m.get_weights(), epoch2):
        np.testing.assert_allclose(got, want)
    assert cbs.best.best_epoch == 1 and cbs.best.best == 0.5
    rows = list(csv.DictReader((tmp_path / "h.csv").read_text().splitlines()))
    assert [float(r["val_map50"]) for r in rows] == [0.2, 0.5, 0.3]


def test_monitor_keys_belong_to_their_task(tiny_det_cfg):
    import dataclasses

    from kdefect.engine.selection import resolve_monitor
    from kdefect.errors import ConfigError
    from kdefect.tasks.base import _detect_preflight

    cfg = dataclasses.replace(tiny_det_cfg)
    cfg.train = dataclasses.replace(cfg.train, monitor="val_macro_recall")
    with pytest.raises(ConfigError, match="val_loss or val_map50"):
        _detect_preflight(cfg, {})
    with pytest.raises(ConfigError, match="is for detection"):
        resolve_monitor("val_map50", None, True)
