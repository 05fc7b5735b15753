"""A fit that cannot succeed stops with one clear error, before or instead of a "complete" run."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.errors import ConfigError, DataError, ModelError


def _fit(cfg):
    from kdefect.engine import fit

    return fit(cfg, quiet=True)


def test_unknown_backbone_leaves_no_folder_and_the_next_run_keeps_its_name(tmp_path, make_config):
    with pytest.raises(ConfigError, match="unknown backbone 'nope'"):
        _fit(make_config(tmp_path, "model.backbone=nope", "data.synthetic.n_per_class=12"))
    assert list(tmp_path.iterdir()) == []


def test_too_few_images_for_one_batch_is_a_clear_data_error(tmp_path, make_config):
    with pytest.raises(DataError, match="fewer than one batch"):
        _fit(make_config(tmp_path, "data.synthetic.n_per_class=4", "data.batch_size=64"))
    assert list(tmp_path.iterdir()) == []


def test_a_detection_monitor_on_a_classifier_leaves_no_folder(tmp_path, make_config):
    with pytest.raises(ConfigError, match="train.monitor=val_map50 is for detection"):
        _fit(make_config(tmp_path, "train.monitor=val_map50", "data.synthetic.n_per_class=12"))
    assert list(tmp_path.iterdir()) == []


def test_values_set_in_code_are_checked_too(tmp_path, make_config):
    cfg = make_config(tmp_path, "data.synthetic.n_per_class=12")
    cfg.train.epochs = -1
    with pytest.raises(ConfigError, match="train.epochs"):
        _fit(cfg)
    assert list(tmp_path.iterdir()) == []


def test_nan_loss_stops_the_run_and_marks_it_failed(tmp_path, make_config, monkeypatch):
    import kdefect.losses
    from kdefect.core.run import RunDir
    from kdefect.keras import tf

    monkeypatch.setattr(kdefect.losses, "build_loss", lambda *a, **k: lambda y, p: tf.reduce_mean(p) * np.nan)
    cfg = make_config(tmp_path, "data.synthetic.n_per_class=12", "train.epochs=3", "trust.calibrate=false")
    with pytest.raises(ModelError, match="training diverged"):
        _fit(cfg)
    (run_path,) = tmp_path.iterdir()
    assert not (run_path / "manifest.json").exists() and not (run_path / "metrics.json").exists()
    assert "diverged" in RunDir(run_path).failure()["error"]
    with pytest.raises(DataError, match="failed"):
        RunDir.open(run_path)


def test_stop_on_non_finite_loss_callback():
    from kdefect.engine.callbacks import StopOnNonFiniteLoss
    from kdefect.keras import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.array([[1.0, np.nan], [0.0, 1.0]], np.float32)
    with pytest.raises(ModelError, match="loss=nan at epoch 1"):
        model.fit(x, np.zeros((2, 1)), epochs=2, verbose=0, callbacks=[StopOnNonFiniteLoss()])
