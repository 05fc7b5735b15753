"""Cross-validation: fold splits handed to fit are stratified, disjoint and cover the data; summary is right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kdefect.errors import ConfigError


def test_cross_validate_folds_and_summary(trust_data, tmp_path):
    from kdefect.config import load_config
    from kdefect.core.run import RunDir
    from kdefect.trust.cv import cross_validate

    seen = []

    def fake_fit(cfg, split, quiet):
        run = RunDir.create(cfg.runs_dir, cfg.name)
        seen.append(split)
        i = len(seen)
        run.write_json("metrics.json", {"accuracy": 0.9 + 0.01 * i, "per_class": {"good": {"recall": 1.0}},
                                        "confusion_matrix": [[1]], "n": len(split["test"])})
        return run

    cfg = load_config(None, [f"data.source={trust_data}", f"runs_dir={tmp_path}", "name=cvt"])
    summary = cross_validate(cfg, folds=3, fit_fn=fake_fit)
    assert len(seen) == 3
    tests = np.concatenate([s["test"] for s in seen])
    assert len(np.unique(tests)) == len(tests) == 4 * 48  # disjoint and complete
    for s in seen:
        assert not set(s["test"]) & (set(s["train"]) | set(s["val"]))
    acc = summary["metrics"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.92) and acc["std"] == pytest.approx(0.01)
    assert summary["metrics"]["n"]["mean"] == pytest.approx(64)
    assert "confusion_matrix" not in summary["metrics"] and "per_class.good.recall" in summary["metrics"]
    saved = json.loads((tmp_path / "cvt-cv3" / "cv_summary.json").read_text())
    assert saved["runs"] == [str(tmp_path / "cvt-cv3" / f"fold{i}") for i in range(3)]
    assert "| accuracy | 0.9200 |" in (tmp_path / "cvt-cv3" / "cv_summary.md").read_text()
    with pytest.raises(ConfigError, match="at least 2"):
        cross_validate(cfg, folds=1, fit_fn=fake_fit)


@pytest.mark.slow
def test_cross_validate_with_real_fit(trust_data, tmp_path):
    from kdefect.config import load_config
    from kdefect.trust.cv import cross_validate

    cfg = load_config(None, [f"data.source={trust_data}", f"runs_dir={tmp_path}", "name=cvr", "train.epochs=1",
                             "data.image_size=[32,32]", "data.cache=none"])
    summary = cross_validate(cfg, folds=2, calibrate=True)
    assert len(summary["runs"]) == 2 and "calibration.test_ece_after" in summary["metrics"]
    accs = [json.loads((Path(r) / "metrics.json").read_text())["accuracy"] for r in summary["runs"]]
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(float(np.mean(accs)))
