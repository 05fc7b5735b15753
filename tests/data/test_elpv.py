"""ELPV source: class folders from the elpv-dataset package, materialised once into the cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kdefect.config import DataConfig
from kdefect.data.elpv import parse_elpv
from kdefect.data.sources import index_dataset, resolve_source
from kdefect.errors import ConfigError


def test_source_strings_parse():
    assert resolve_source(DataConfig(source="elpv")) == ("elpv", "")
    assert resolve_source(DataConfig(source="elpv:binary:mono")) == ("elpv", "binary:mono")
    assert parse_elpv("") == ("levels", None)
    assert parse_elpv("binary") == ("binary", None)
    assert parse_elpv("levels:poly") == ("levels", "poly")
    assert parse_elpv("mono") == ("levels", "mono")
    for bad in ("three", "binary:levels", "mono:poly"):
        with pytest.raises(ConfigError, match="elpv:binary:mono"):
            parse_elpv(bad)


def _package_labels() -> tuple[np.ndarray, list[str]]:
    """Label counts straight from the package's labels.csv (independent of kdefect.data.elpv)."""
    pkg = pytest.importorskip("elpv_dataset", reason="elpv-dataset not installed (pip install elpv-dataset)")
    rows = [ln.split() for ln in (Path(pkg.__file__).parent / "data" / "labels.csv").read_text().splitlines() if ln]
    return np.asarray([float(r[1]) for r in rows]), [r[2] for r in rows]


@pytest.mark.slow
def test_elpv_binary_and_levels(tmp_path, monkeypatch):
    from kdefect.data.elpv import materialize_elpv

    probs, _ = _package_labels()
    assert len(probs) == 2624
    monkeypatch.setenv("KDEFECT_CACHE", str(tmp_path))

    binary = index_dataset(DataConfig(source="elpv:binary"))
    assert binary.classes == ["good", "defective"]
    counts = dict(zip(binary.classes, np.bincount(binary.labels).tolist()))
    assert counts == {"good": int((probs < 0.5).sum()), "defective": int((probs >= 0.5).sum())}
    assert sum(counts.values()) == 2624

    levels = index_dataset(DataConfig(source="elpv"))  # default mode: levels
    assert levels.classes == ["good", "p033", "p067", "p100"]
    expected = Counter(np.round(probs * 3).astype(int).tolist())
    assert np.bincount(levels.labels).tolist() == [expected[k] for k in range(4)]
    assert len(levels) == 2624
    assert Path(levels.root) == (tmp_path / "elpv" / "levels").resolve()
    assert all(Path(p).suffix == ".png" and Path(p).stem.startswith("cell") for p in levels.paths[:5])

    # a second call reuses the complete copy: no file is rewritten
    stamp = {p: Path(p).stat().st_mtime_ns for p in binary.paths[:50]}
    marker = (Path(binary.root) / ".complete").stat().st_mtime_ns
    again = materialize_elpv("binary")
    assert again.resolve() == Path(binary.root) and (again / ".complete").stat().st_mtime_ns == marker
    assert all(Path(p).stat().st_mtime_ns == t for p, t in stamp.items())


def test_elpv_type_filter(tmp_path, monkeypatch):
    probs, types = _package_labels()
    monkeypatch.setenv("KDEFECT_CACHE", str(tmp_path))
    from kdefect.data.elpv import materialize_elpv

    root = materialize_elpv("binary", "mono")
    mono = np.asarray([t == "mono" for t in types])
    n_def = len(list((root / "defective").glob("*.png")))
    n_good = len(list((root / "good").glob("*.png")))
    assert (n_good, n_def) == (int((probs[mono] < 0.5).sum()), int((probs[mono] >= 0.5).sum()))
    assert root.name == "binary-mono" and "CC BY-NC-SA" in (root / "LICENSE.txt").read_text()


def test_missing_package_message(monkeypatch):
    import sys

    from kdefect.data import elpv
    from kdefect.errors import DataError

    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # makes the import fail
    with pytest.raises(DataError, match=r"pip install elpv-dataset.*CC BY-NC-SA 4.0"):
        elpv.elpv_labels()
