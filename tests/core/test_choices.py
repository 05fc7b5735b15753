"""``config.CHOICES`` validates names that registries define; these tests keep the two lists the same.

``config`` sits with the core (a run's config.yaml is read there), so it cannot import the registries above it;
the names are checked here instead.
"""

from kdefect.config import CHOICES


def test_task_choices_are_the_registered_tasks():
    from kdefect.tasks.base import TASKS

    assert sorted(CHOICES["task"]) == TASKS.names()


def test_detector_choices_are_the_registered_architectures_and_decoders():
    from kdefect.core.detect_decode import DECODERS
    from kdefect.models.detectors import DETECTORS

    assert sorted(CHOICES["detect.architecture"]) == DETECTORS.names() == DECODERS.names()


def test_optimizer_and_loss_choices_are_registered():
    from kdefect.engine.optimizers import OPTIMIZERS
    from kdefect.losses import LOSSES

    assert sorted(CHOICES["train.optimizer"]) == OPTIMIZERS.names()
    assert sorted(CHOICES["loss.name"]) == LOSSES.names()


def test_data_formats_are_registered_sources():
    from kdefect.data.sources import SOURCES

    assert set(CHOICES["data.format"]) - {"auto"} <= set(SOURCES.names())


def test_export_modes_are_the_cli_modes():
    from kdefect.export.tflite import EXPORT_MODES, MODES

    assert sorted(MODES) == EXPORT_MODES.names()
