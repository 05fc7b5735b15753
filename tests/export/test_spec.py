"""``ExportSpec``: the typed form of ``kdefect tflite``'s options; keywords keep working and typos fail."""

import pytest

from kdefect.errors import ExportError
from kdefect.export import ExportSpec, export_run


def test_options_replace_the_spec_fields():
    spec = ExportSpec.of(ExportSpec(mode="float16", calib_size=10), calib_size=30, qat=True)
    assert (spec.mode, spec.calib_size, spec.qat, spec.ood_gate) == ("float16", 30, True, "msp")
    assert ExportSpec.of() == ExportSpec()


def test_a_misspelt_option_fails_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="calib_sise.*valid:.*calib_size"):
        export_run(tmp_path, calib_sise=30)
