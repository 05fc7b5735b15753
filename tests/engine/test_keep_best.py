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
