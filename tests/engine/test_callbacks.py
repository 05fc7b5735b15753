"""``standard_callbacks``: the one callback set of classifier and detector training, and its roles for resume."""

from __future__ import annotations

from kdefect.config import TrainConfig
from kdefect.engine.callbacks import KeepBest, StopOnNonFiniteLoss, standard_callbacks
from kdefect.keras import keras, tf


def test_every_rule_is_in_the_set_and_named_by_role(tmp_path):
    train = TrainConfig(patience=3, lr_schedule="plateau", time_budget_s=60.0)
    cbs = standard_callbacks(train, 8, tmp_path / "history.csv", "val_macro_recall", loss_key="val_loss",
                             checkpoint=tmp_path / "best.keras", start=0.0, tensorboard=tmp_path / "tb")
    assert isinstance(cbs.callbacks[0], StopOnNonFiniteLoss)  # first: nothing is written for a diverged epoch
    assert cbs.callbacks[1:4] == [cbs.counter, cbs.history, cbs.best]
    assert set(cbs.roles()) == {"best_checkpoint", "image_counter", "time_budget", "early_stopping", "plateau"}
    stop, plateau = cbs.roles()["early_stopping"], cbs.roles()["plateau"]
    assert stop.monitor == "val_macro_recall" and stop.monitor_op(1.0, 0.0)  # selection drives it; higher is better
    assert plateau.monitor == "val_loss"  # the loss drives the learning rate
    assert cbs.budget.start == 0.0 and not cbs.best.restore  # the caller reloads the checkpoint


def test_before_best_callbacks_run_before_the_history_and_the_selection(tmp_path):
    """A callback that changes the weights (EMA) or adds a log key (val mAP) must do it before the epoch's history
    row is written and before KeepBest picks."""
    extra = keras.callbacks.Callback()
    cbs = standard_callbacks(TrainConfig(patience=2, lr_schedule="constant"), 8, tmp_path / "h.csv", "val_map50",
                             before_best=[extra])
    order = cbs.callbacks
    assert order.index(cbs.counter) < order.index(extra) < order.index(cbs.history) < order.index(cbs.best)
    assert cbs.roles()["early_stopping"].monitor_op(0.6, 0.5)  # mAP: higher is better


def test_without_checkpoint_the_best_weights_come_back_in_memory(tmp_path):
    cbs = standard_callbacks(TrainConfig(patience=0, lr_schedule="constant"), 8, tmp_path / "h.csv", "loss")
    assert isinstance(cbs.best, KeepBest) and cbs.best.restore and cbs.best.path is None
    assert set(cbs.roles()) == {"best_checkpoint", "image_counter"}
    assert not any(isinstance(c, (keras.callbacks.EarlyStopping, keras.callbacks.TensorBoard)) for c in cbs.callbacks)


def test_no_callback_makes_keras_copy_the_logs_to_numpy_every_step(tmp_path, monkeypatch):
    """The cosine schedule and the time budget have batch hooks; if any of them wanted numpy logs, Keras would
    synchronise after every step. They declare tensor logs, and TensorBoard skips its unrecorded batch scalars."""
    import numpy as np

    from kdefect.engine.callbacks import EpochTensorBoard

    train = TrainConfig(patience=2, lr_schedule="cosine", time_budget_s=600.0, epochs=2)
    cbs = standard_callbacks(train, 4, tmp_path / "h.csv", "val_loss", tensorboard=tmp_path / "tb")
    listed = keras.callbacks.CallbackList(cbs.callbacks)
    assert listed._should_call_train_batch_hooks and listed._batch_hooks_support_tf_logs
    assert any(isinstance(c, EpochTensorBoard) for c in cbs.callbacks)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")
    scalars: list[str] = []
    real_scalar = tf.summary.scalar

    def counting(name, *a, **k):
        scalars.append(name)
        return real_scalar(name, *a, **k)

    monkeypatch.setattr(tf.compat.v2.summary, "scalar", counting)  # the module Keras' TensorBoard calls through
    model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), batch_size=4, epochs=2, verbose=0,
              callbacks=cbs.callbacks)
    assert scalars and not any(n.startswith("batch_") for n in scalars)  # epoch scalars only, none per step
    assert list((tmp_path / "tb" / "train").glob("events.out.tfevents.*"))  # the epoch summaries are still written
    assert len(cbs.history.rows) == 2
