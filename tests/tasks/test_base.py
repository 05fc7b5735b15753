"""The task registry: what the engine and the exporter dispatch on instead of the task's name."""

import subprocess
import sys

import pytest

from kdefect.errors import ConfigError
from kdefect.tasks.base import get_task


def test_detection_brings_its_lifecycle_and_classification_uses_the_engines():
    det, cls = get_task("detect"), get_task("classify")
    assert all(callable(h) for h in (det.train, det.evaluate, det.predict, det.export))
    assert (cls.train, cls.evaluate, cls.predict, cls.export) == (None, None, None, None)
    assert (cls.backbone_key, det.backbone_key) == ("model.backbone", "detect.backbone")
    assert cls.image_labels and not det.image_labels


def test_unknown_task_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'detect'"):
        get_task("detekt")


def test_looking_a_task_up_loads_no_tensorflow():
    code = "import sys\nfrom kdefect.tasks.base import get_task\nget_task('detect')\nassert 'tensorflow' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_decoding_params_come_from_the_decoder_registry():
    from kdefect.core.detect_decode import decoding_params

    assert decoding_params("yolov8", (64, 96)) == {"architecture": "yolov8", "input_size": [64, 96],
                                                   "strides": [8, 16, 32], "reg_max": 16}
    with pytest.raises(ConfigError, match="Did you mean 'yolov8'"):
        decoding_params("yolo8", (64, 64))
