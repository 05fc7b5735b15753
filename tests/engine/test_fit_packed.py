"""``fit`` on ``data.source: tfrecord:``: the run keeps the packed split, and evaluate / calibrate use its test images."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_fit_evaluate_on_a_pack(make_config, synthetic_cache, tmp_path, monkeypatch):
    from kdefect.config import SyntheticConfig
    from kdefect.data.synthetic import materialize_synthetic
    from kdefect.data.tfrecord import pack_dataset
    from kdefect.engine import evaluate, fit

    src = materialize_synthetic(SyntheticConfig(n_per_class=20, size=32, seed=0, contrast=2.5), "folder",
                                synthetic_cache)
    cfg = make_config(tmp_path, f"data.source={src}", "data.image_size=[32, 32]", "train.epochs=2")
    man = pack_dataset(cfg.data, tmp_path / "pack", seed=cfg.seed)
    packed = make_config(tmp_path, f"data.source=tfrecord:{tmp_path / 'pack'}", "data.image_size=[32, 32]",
                         "train.epochs=2", "seed=7")  # another seed: the packed split must still win
    run = fit(packed, quiet=True)
    for name in ("train", "val", "test"):
        assert (run.path / "split" / f"{name}.txt").read_text() == (tmp_path / "pack" / "split" / f"{name}.txt"
                                                                   ).read_text()
    assert (run.path / "calibration.json").is_file()
    assert run.read_json("data_profile.json")["split_counts"] == man["profile"]["split_counts"]
    assert evaluate(run.path, quiet=True)["n"] == sum(man["counts"]["test"].values())
