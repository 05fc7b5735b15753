"""Training throughput: ``kdefect fit`` vs a plain hand-written tf_keras + tf.data loop.

Same model (built by ``build_classifier``), same training images (the NEU seed-0
split), same batch size and optimizer, no augmentation on either side.  Both are
timed by the same callback over the training steps after the first epoch, and the
two loops alternate (plain, kdefect, plain, kdefect) so machine noise hits both.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np

from kdefect.config import load_config
from kdefect.engine.callbacks import ImageCounter
from kdefect.keras import keras, tf

log = logging.getLogger(__name__)


def _config(args: argparse.Namespace, name: str):
    return load_config(None, [f"runs_dir={args.runs_dir}", f"name={name}", "data.source=neu", "data.good_label=null",
                              "data.label_rule=filename", "model.weights=none", "seed=0",
                              "data.augment.flip=false", "data.augment.rot90=false", "data.augment.brightness=0",
                              "data.augment.contrast=0", f"train.epochs={args.epochs}", "train.lr_schedule=constant",
                              *(args.set or ["model.backbone=mobilenet_v2", "data.image_size=[96, 96]"])])


def plain_loop(cfg) -> float:
    """The loop a practitioner would write by hand: images/s after the first epoch."""
    from kdefect.data.sources import index_dataset
    from kdefect.data.split import stratified_split
    from kdefect.tasks.classify import build_classifier_from_config

    index = index_dataset(cfg.data)
    train = stratified_split(index.labels, tuple(cfg.data.split), seed=cfg.seed)["train"]
    paths = np.asarray(index.paths)[train]
    labels = index.labels[train]
    k = len(index.classes)
    h, w = cfg.data.image_size

    def load(p, y):
        img = tf.io.decode_jpeg(tf.io.read_file(p), channels=3)
        img = tf.cast(tf.image.resize(img, (h, w), antialias=True), tf.float32)
        return img, tf.one_hot(y, k)

    ds = (tf.data.Dataset.from_tensor_slices((paths, labels)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
          .cache().shuffle(len(paths), seed=0).batch(cfg.data.batch_size, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE))
    keras.utils.set_random_seed(0)
    model = build_classifier_from_config(cfg, k)
    model.compile(keras.optimizers.Adam(cfg.train.learning_rate), keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"])
    counter = ImageCounter(cfg.data.batch_size)
    model.fit(ds, epochs=cfg.train.epochs, verbose=0, callbacks=[counter])
    return counter.images_per_s


def kdefect_loop(cfg) -> float:
    from kdefect.engine import fit

    run = fit(cfg, quiet=True)
    return float(run.read_json("metrics.json")["training"]["train_images_per_s"])


def compare(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for rep in range(args.reps):
        rows.append({"loop": f"plain tf_keras + tf.data (rep {rep + 1})",
                     "images_per_s": plain_loop(_config(args, f"tp-plain-{rep}"))})
        rows.append({"loop": f"kdefect fit (rep {rep + 1})",
                     "images_per_s": kdefect_loop(_config(args, f"tp-kdefect-{rep}"))})
        log.info("rep %d: %s", rep + 1, rows[-2:])
    plain = float(np.mean([r["images_per_s"] for r in rows if r["loop"].startswith("plain")]))
    ours = float(np.mean([r["images_per_s"] for r in rows if r["loop"].startswith("kdefect")]))
    rows += [{"loop": "plain (mean)", "images_per_s": plain}, {"loop": "kdefect (mean)", "images_per_s": ours}]
    return {"rows": rows, "ratio": ours / plain, "target": 0.95, "target_met": ours / plain >= 0.95,
            "model": args.set or ["model.backbone=mobilenet_v2", "data.image_size=[96, 96]"],
            "epochs": args.epochs, "note": "images/s over training steps after epoch 1, no augmentation on either side"}
