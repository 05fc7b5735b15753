"""Exactly one Keras: kdefect, keras-cv and TF-MOT all use tf_keras."""

from __future__ import annotations

import subprocess
import sys


def test_keras_cv_and_tfmot_share_kdefects_keras():
    code = (
        "import kdefect.keras as k\n"
        "import os, tf_keras\n"
        "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
        "assert k.keras is tf_keras\n"
        "kcv = k.keras_cv(); mot = k.tfmot()\n"
        "from keras_cv.src.backend import keras as kcv_keras\n"
        "assert kcv_keras.layers.Layer is tf_keras.layers.Layer, kcv_keras\n"
        "from tensorflow_model_optimization.python.core.keras.compat import keras as mot_keras\n"
        "assert mot_keras.layers.Layer is tf_keras.layers.Layer, mot_keras\n"
        "from kdefect.tasks.classify import build_classifier\n"
        "m = build_classifier(3, backbone='tiny_cnn', input_size=(32, 32))\n"
        "assert isinstance(m, tf_keras.Model)\n"
        "q = mot.quantization.keras.quantize_annotate_layer\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("ok")


def test_importing_kdefect_does_not_import_tensorflow():
    code = "import sys, kdefect, kdefect.core.sidecar, kdefect.core.run, kdefect.engine.metrics\n" \
           "assert 'tensorflow' not in sys.modules, 'TF imported'\nprint('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
