"""``KeepBest``: the one keep-the-best-epoch callback (classifier checkpoint, detector, QAT)."""

import numpy as np

from kdefect.engine.callbacks import KeepBest
from kdefect.keras import keras


def _epochs(cb: KeepBest, model, logs: list[dict]) -> list:
    snapshots = []
    cb.set_model(model)
    for epoch, values in enumerate(logs):
        model.set_weights([np.full((2, 1), float(epoch)), np.full((1,), float(epoch))])
        snapshots.append(model.get_weights())
        cb.on_epoch_end(epoch, values)
    cb.on_train_end()
    return snapshots


def test_tie_breaks_decide_and_the_checkpoint_holds_the_best_epoch(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = KeepBest("val_acc", keys=[("val_acc", -1.0), ("val_loss", 1.0)], path=tmp_path / "best.keras", restore=False)
    _epochs(cb, model, [{"val_acc": 0.8, "val_loss": 0.5}, {"val_acc": 0.9, "val_loss": 0.7},
                        {"val_acc": 0.9, "val_loss": 0.4}, {"val_acc": 0.7, "val_loss": 0.1}])
    assert (cb.best_epoch, cb.best) == (2, 0.9)
    assert np.all(model.get_weights()[1] == 3.0)  # restore=False leaves the last epoch's weights
    saved = keras.models.load_model(tmp_path / "best.keras", compile=False)
    assert np.all(saved.get_weights()[1] == 2.0)


def test_non_finite_epochs_never_count():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = KeepBest("loss")
    snapshots = _epochs(cb, model, [{"loss": float("nan")}, {"loss": 2.0}, {"loss": float("inf")}, {}])
    assert cb.best_epoch == 1
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snapshots[1], strict=True))


def test_without_keys_the_monitor_counts_in_its_own_direction():
    """val_map50 is better higher, val_loss lower: KeepBest takes the direction from engine.selection."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    up = KeepBest("val_map50")
    _epochs(up, model, [{"val_map50": 0.2}, {"val_map50": 0.6}, {"val_map50": 0.4}])
    assert (up.best_epoch, up.best) == (1, 0.6) and np.all(model.get_weights()[1] == 1.0)
    down = KeepBest("val_loss")
    _epochs(down, model, [{"val_loss": 0.9}, {"val_loss": 0.3}, {"val_loss": 0.5}])
    assert (down.best_epoch, down.best) == (1, 0.3)


def test_a_deferred_checkpoint_is_written_on_flush_with_the_best_weights(tmp_path):
    """``defer_write``: nothing on disk until ``flush()`` (a resume snapshot); then the best epoch's weights,
    while the model keeps training from its current ones."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "best.keras"
    cb = KeepBest("val_loss", path=path, restore=False, defer_write=True)
    cb.set_model(model)
    for epoch, loss in enumerate([0.9, 0.3, 0.5]):
        model.set_weights([np.full((2, 1), float(epoch)), np.full((1,), float(epoch))])
        cb.on_epoch_end(epoch, {"val_loss": loss})
    assert not path.exists()
    cb.flush()
    assert np.all(keras.models.load_model(path, compile=False).get_weights()[1] == 1.0)
    assert np.all(model.get_weights()[1] == 2.0)  # the current weights are back
    stamp = path.stat().st_mtime_ns
    cb.flush()  # nothing new: no rewrite
    cb.on_epoch_end(3, {"val_loss": 0.1})
    model.set_weights([np.full((2, 1), 7.0), np.full((1,), 7.0)])
    cb.on_train_end()  # the end of training flushes what is left
    assert path.stat().st_mtime_ns != stamp
    assert np.all(keras.models.load_model(path, compile=False).get_weights()[1] == 2.0)
