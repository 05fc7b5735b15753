"""Knowledge distillation: a small student learns from a trained teacher's softened outputs.

Loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
(Hinton et al. 2015). kdefect classifiers end in a softmax, so logits are
recovered as log-probabilities (softmax is shift-invariant, so this is exact).
Teacher and student may use different input sizes: each gets the raw pixels
resized to its own input.
"""

from __future__ import annotations

import logging
from typing import Any

from kdefect.errors import ExportError
from kdefect.keras import keras, tf
from kdefect.optimize.common import as_dataset, sparse_labels

log = logging.getLogger(__name__)


def _logits(probs: Any) -> Any:
    return tf.math.log(tf.clip_by_value(probs, 1e-7, 1.0))


def _resize_for(model: Any, x: Any) -> Any:
    h, w = model.input_shape[1:3]
    if h is None or (x.shape[1] == h and x.shape[2] == w):
        return x
    return tf.image.resize(x, (h, w))


class Distiller(keras.Model):
    """Trains ``student`` against ``teacher``; the teacher is frozen."""

    def __init__(self, student: Any, teacher: Any, temperature: float, alpha: float, sparse: bool) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        ce_cls = keras.losses.SparseCategoricalCrossentropy if sparse else keras.losses.CategoricalCrossentropy
        self.ce = ce_cls()
        self.kl = keras.losses.KLDivergence()
        self.tracker = {k: keras.metrics.Mean(name=k) for k in ("loss", "ce", "kd")}

    @property
    def metrics(self) -> list:
        return list(self.tracker.values())

    def call(self, x: Any, training: bool = False) -> Any:
        return self.student(_resize_for(self.student, x), training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data[0], data[1]
        x = tf.cast(x, tf.float32)
        t = self.temperature
        soft_t = tf.nn.softmax(_logits(self.teacher(_resize_for(self.teacher, x), training=False)) / t)
        with tf.GradientTape() as tape:
            probs = self.student(_resize_for(self.student, x), training=True)
            ce = self.ce(y, probs)
            kd = self.kl(soft_t, tf.nn.softmax(_logits(probs) / t)) * (t * t)
            loss = self.alpha * ce + (1.0 - self.alpha) * kd
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
        for k, v in (("loss", loss), ("ce", ce), ("kd", kd)):
            self.tracker[k].update_state(v)
        return {k: m.result() for k, m in self.tracker.items()}


def distill(
    teacher: Any,
    student: Any,
    train_ds: Any,
    temperature: float = 4.0,
    alpha: float = 0.5,
    epochs: int = 5,
    learning_rate: float = 1e-3,
    steps_per_epoch: int | None = None,
    verbose: int = 0,
) -> Any:
    """Train ``student`` in place on the teacher's soft targets plus labels; returns the student."""
    if temperature <= 0:
        raise ExportError(f"distillation temperature must be > 0, got {temperature}.")
    if not 0.0 <= alpha <= 1.0:
        raise ExportError(f"distillation alpha (weight of the label loss) must be in 0..1, got {alpha}.")
    if teacher.output_shape[-1] != student.output_shape[-1]:
        raise ExportError(
            f"teacher has {teacher.output_shape[-1]} classes but the student {student.output_shape[-1]}; "
            "build the student with the teacher run's classes."
        )
    ds = as_dataset(train_ds)
    d = Distiller(student, teacher, temperature, alpha, sparse_labels(ds))
    d.compile(optimizer=keras.optimizers.Adam(learning_rate))
    hist = d.fit(ds, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose)
    log.info("distillation (T=%g, alpha=%g): loss %.4f -> %.4f", temperature, alpha,
             hist.history["loss"][0], hist.history["loss"][-1])
    return student
