"""Shared pytest fixtures (add yours; do not rewrite others')."""

from __future__ import annotations

from pathlib import Path

import pytest


# --- data (kdefect.data) ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    """A session-private kdefect cache folder for generated data."""
    return tmp_path_factory.mktemp("kdefect-cache")


@pytest.fixture(scope="session")
def synthetic_cfg():
    """Small synthetic config: 5 classes x 12 images, 32 px (seed 0)."""
    from kdefect.config import SyntheticConfig

    return SyntheticConfig(n_per_class=12, size=32, seed=0, contrast=3.0)


@pytest.fixture(scope="session")
def synthetic_root(synthetic_cfg, synthetic_cache) -> Path:
    """Class-per-folder synthetic data: <root>/<class>/<class>_<i>.png (good, scratch, spot, crack, patch)."""
    from kdefect.data.synthetic import materialize_synthetic

    return materialize_synthetic(synthetic_cfg, "folder", synthetic_cache)


@pytest.fixture(scope="session")
def synthetic_voc_root(synthetic_cfg, synthetic_cache) -> Path:
    """VOC-layout synthetic data: <root>/images/*.png + <root>/annotations/*.xml ('good' images have no objects)."""
    from kdefect.data.synthetic import materialize_synthetic

    return materialize_synthetic(synthetic_cfg, "voc", synthetic_cache)
