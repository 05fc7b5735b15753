"""The contracts moved from ``kdefect.edge`` to ``kdefect.core``; the old import paths must keep working."""

import subprocess
import sys


def test_old_edge_paths_are_the_core_modules():
    import kdefect.core.sidecar
    import kdefect.edge.sidecar
    from kdefect.edge import decisions, detect_decode

    assert kdefect.edge.sidecar is kdefect.core.sidecar
    assert decisions.rule_from_sidecar is kdefect.core.decisions.rule_from_sidecar
    assert detect_decode.decode.__module__ == "kdefect.core.detect_decode"


def test_edge_package_imports_no_tensorflow():
    code = "import sys, kdefect.edge.sidecar, kdefect.edge.decision_log\nassert 'tensorflow' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
