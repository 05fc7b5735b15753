"""A tiny trained run, shared by the engine tests (trained once per session)."""

from __future__ import annotations

import pytest


def tiny_config(tmp_path, *overrides: str):
    """A fast classify config on 48 px synthetic data that a tiny CNN learns in seconds."""
    from kdefect.config import load_config

    base = [
        f"runs_dir={tmp_path}",
        "name=tiny",
        "data.source=synthetic",
        "data.synthetic.n_per_class=60",
        "data.synthetic.size=48",
        "data.synthetic.contrast=2.5",
        "data.image_size=[48, 48]",
        "data.batch_size=16",
        "model.backbone=tiny_cnn",
        "train.epochs=15",
        "model.pooling=max",
        "train.learning_rate=0.003",
    ]
    return load_config(None, [*base, *overrides])


@pytest.fixture(scope="session")
def make_config():
    """Factory: ``make_config(tmp_path, "train.epochs=3", ...)`` -> a tiny, fast Config."""
    return tiny_config


@pytest.fixture(scope="session")
def fitted_run(tmp_path_factory):
    """A complete run folder trained on synthetic data (about 20 s on 2 cores)."""
    import os

    from kdefect.engine import fit

    tmp = tmp_path_factory.mktemp("runs")
    os.environ.setdefault("KDEFECT_CACHE", str(tmp_path_factory.mktemp("cache")))
    return fit(tiny_config(tmp), quiet=True)
