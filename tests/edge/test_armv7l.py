"""32-bit Raspberry Pi OS (armv7l): which interpreter the `edge` extra pulls, and the tflite_runtime path running."""

from __future__ import annotations

import platform
import sys
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kdefect.edge import interpreter
from kdefect.edge.classifier import EdgeClassifier
from kdefect.errors import EdgeError

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
REPO = Path(__file__).resolve().parents[2]


def _edge_packages(machine: str, python: str) -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    reqs = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["edge"]
    env = {"platform_machine": machine, "python_version": python}
    return {r.name for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate(env)}


def test_edge_extra_per_platform():
    assert _edge_packages("aarch64", "3.11") == {"ai-edge-litert", "cryptography"}
    assert _edge_packages("armv7l", "3.10") == {"tflite-runtime", "numpy", "cryptography"}  # numpy<2: tflite-runtime is built on 1.x
    assert _edge_packages("armv7l", "3.11") == {"numpy", "cryptography"}  # no interpreter wheel exists: unsupported, says the docs


def test_armv7l_without_an_interpreter_says_what_works(monkeypatch):
    monkeypatch.delenv(interpreter.BACKEND_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    with pytest.raises(EdgeError, match=r"32-bit ARM.*tflite-runtime==2\.13\.0.*Python 3\.10.*64-bit OS"):
        interpreter.interpreter_backend()


def test_the_tflite_runtime_fallback_classifies(edge_model, image_folder, monkeypatch):
    """LiteRT absent, `tflite_runtime` present (here LiteRT's Interpreter under that name, same API): same labels."""
    from ai_edge_litert import interpreter as litert

    ref = EdgeClassifier(edge_model, threads=1)
    files = sorted(image_folder.iterdir())
    want = [ref.classify(f).label for f in files]
    monkeypatch.delenv(interpreter.BACKEND_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    pkg, mod = types.ModuleType("tflite_runtime"), types.ModuleType("tflite_runtime.interpreter")
    mod.Interpreter, mod.load_delegate = litert.Interpreter, litert.load_delegate
    monkeypatch.setitem(sys.modules, "tflite_runtime", pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", mod)
    clf = EdgeClassifier(edge_model, threads=1)
    assert clf.backend == "tflite_runtime"
    assert [clf.classify(f).label for f in files] == want
