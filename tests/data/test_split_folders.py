"""Data sets that come already split into train/ (val/) test/ folders of class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig, load_config
from kdefect.data.profile import dedupe_index
from kdefect.data.sources import index_dataset
from kdefect.data.split import load_split, split_index
from kdefect.errors import DataError


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12), value, np.uint8)).save(path)


def _presplit(root: Path, parts: dict[str, dict[str, int]]) -> Path:
    """``parts``: split folder -> class -> image count; every image differs (no accidental duplicates)."""
    v = 0
    for part, classes in parts.items():
        for cls, n in classes.items():
            for i in range(n):
                v += 1
                _img(root / part / cls / f"{cls}_{i}.png", v)
    return root


def test_split_folders_are_splits_not_classes(tmp_path, caplog):
    root = _presplit(tmp_path / "ds", {"Train": {"ok": 8, "def": 6}, "test": {"ok": 3, "def": 2}})
    _img(root / "ground_truth" / "def" / "mask.png", 250)  # beside the splits (MVTec AD): left out
    _img(root / "test" / "loose.png", 251)  # not in a class folder: left out
    idx = index_dataset(DataConfig(source=str(root)))
    assert idx.classes == ["def", "ok"]
    assert len(idx) == 19
    assert sorted(set(idx.split_names)) == ["test", "train"]
    assert not any("ground_truth" in p or "loose" in p for p in idx.paths)
    assert "ground_truth" in caplog.text and "loose" not in caplog.text and "1 image(s) lie directly" in caplog.text


def test_a_split_named_folder_of_images_is_a_class(tmp_path):
    _img(tmp_path / "ds" / "test" / "a.png", 1)
    _img(tmp_path / "ds" / "good" / "b.png", 2)
    idx = index_dataset(DataConfig(source=str(tmp_path / "ds")))
    assert idx.classes == ["good", "test"] and idx.split_names is None


def test_keep_uses_the_given_test_and_carves_val_from_train(tmp_path):
    root = _presplit(tmp_path / "ds", {"train": {"ok": 30, "def": 20}, "test": {"ok": 5, "def": 5}})
    cfg = DataConfig(source=str(root), split=[0.6, 0.2, 0.2])
    idx = index_dataset(cfg)
    split, value, why = split_index(idx, cfg, seed=0)
    assert value == "keep" and "val/ carved from train/" in why
    names = np.asarray(idx.split_names)
    assert (names[split["test"]] == "test").all() and len(split["test"]) == 10
    assert (names[split["train"]] == "train").all() and (names[split["val"]] == "train").all()
    assert len(split["val"]) == 13 and len(split["train"]) == 37  # 0.2 / (0.6 + 0.2) of 50, stratified
    assert set(idx.labels[split["val"]]) == {0, 1}
    assert not set(split["train"]) & set(split["val"])
    again, _, _ = split_index(idx, cfg, seed=0)
    assert all((again[s] == split[s]).all() for s in split)  # seeded


def test_all_three_folders_are_kept_as_they_are(tmp_path):
    root = _presplit(tmp_path / "ds", {"train": {"a": 4, "b": 4}, "valid": {"a": 2, "b": 1}, "test": {"a": 2}})
    cfg = DataConfig(source=str(root))
    idx = index_dataset(cfg)
    split, value, why = split_index(idx, cfg)
    assert value == "keep" and "carved" not in why
    assert [len(split[s]) for s in ("train", "val", "test")] == [8, 3, 2]


def test_a_class_missing_from_train(tmp_path):
    # MVTec AD: train/ holds only good parts; the defects are only in test/
    root = _presplit(tmp_path / "ds", {"train": {"good": 20}, "test": {"good": 10, "crack": 10}})
    idx = index_dataset(DataConfig(source=str(root)))
    split, value, why = split_index(idx, DataConfig(source=str(root)))
    assert value == "pool" and "'crack'" in why
    assert set(idx.labels[split["train"]]) == {0, 1}
    with pytest.raises(DataError, match="train/ has no images of 'crack'.*data.split_folders=pool"):
        split_index(idx, DataConfig(source=str(root), split_folders="keep"))


def test_pool_ignores_the_folders(tmp_path):
    root = _presplit(tmp_path / "ds", {"train": {"ok": 10, "def": 10}, "test": {"ok": 10, "def": 10}})
    cfg = DataConfig(source=str(root), split_folders="pool", split=[0.5, 0.25, 0.25])
    idx = index_dataset(cfg)
    split, value, _ = split_index(idx, cfg)
    assert value == "pool"
    assert set(np.asarray(idx.split_names)[split["test"]]) == {"train", "test"}


def test_a_test_copy_of_a_training_image_is_dropped_not_leaked(tmp_path):
    root = _presplit(tmp_path / "ds", {"train": {"ok": 4, "def": 4}, "test": {"ok": 2, "def": 2}})
    (root / "test" / "ok" / "leak.png").write_bytes((root / "train" / "ok" / "ok_0.png").read_bytes())
    idx, dropped = dedupe_index(index_dataset(DataConfig(source=str(root))), "drop")
    assert [Path(r["path"]).name for r in dropped] == ["leak.png"]
    split, _, _ = split_index(idx, DataConfig(source=str(root)))
    assert not any("leak" in idx.paths[i] for i in split["test"])


def test_fit_records_the_given_split(tmp_path, caplog):
    from kdefect.engine.trainer import prepare_run

    root = _presplit(tmp_path / "ds", {"train": {"ok": 12, "def": 12}, "test": {"ok": 4, "def": 4}})
    cfg = load_config(None, [f"runs_dir={tmp_path / 'runs'}", f"data.source={root}", "data.good_label=ok",
                             "data.batch_size=4", "data.image_size=[32, 32]"])
    with caplog.at_level("WARNING"):
        run, _, _ = prepare_run(cfg)
    assert caplog.text.count("few images: ") == 1  # fit logs the data warnings once, at the start
    tests = load_split(run.path)["test"][0]
    assert sorted(Path(p).parent.parent.name for p in tests) == ["test"] * 8
    assert "split_folders: keep" in run.config_path.read_text()
    recipe = (run.path / "data_profile.json").read_text()
    assert "data.split_folders" in recipe and "comes split" in recipe


def test_evaluate_on_a_split_data_set_reads_only_its_test_folder(tmp_path):
    from kdefect.config import Config
    from kdefect.engine.evaluator import labelled_data

    root = _presplit(tmp_path / "ds", {"train": {"ok": 6, "def": 6}, "test": {"ok": 2, "def": 3}})
    paths, labels, skipped = labelled_data(str(root), Config(), ["ok", "def"])
    assert len(paths) == 5 and all("/test/" in p for p in paths) and skipped == 0
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 1]  # in the model's class order


def test_evaluate_names_the_class_a_renamed_folder_looks_like(tmp_path):
    from kdefect.config import Config
    from kdefect.engine.evaluator import labelled_data

    root = _presplit(tmp_path / "ds", {"test": {"OK": 2, "Pitted-Surface": 2, "weld": 2}})
    with pytest.raises(DataError) as err:
        labelled_data(str(root / "test"), Config(), ["ok", "pitted_surface", "scratch"])
    msg = str(err.value)
    assert "not trained on: OK, Pitted-Surface, weld" in msg
    assert "'OK' looks like the model's 'ok'" in msg and "'Pitted-Surface' looks like the model's 'pitted_surface'" in msg
    assert "'weld' looks like" not in msg  # no known class resembles it: no guess


def test_data_check_shows_the_split_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from kdefect.cli import main

    root = _presplit(tmp_path / "ds", {"train": {"ok": 12, "def": 12}, "test": {"ok": 4, "def": 3}})
    before = sorted(tmp_path.rglob("*"))
    r = CliRunner().invoke(main, ["data", "check", str(root), "--set", "data.good_label=ok", "-q"])
    assert r.exit_code == 2 and "fewer than one batch" in r.output  # what fit would stop on, before training
    r = CliRunner().invoke(main, ["data", "check", str(root), "--set", "data.good_label=ok", "--set",
                                  "data.batch_size=8", "-q"])
    assert r.exit_code == 0, r.output
    assert "folder data for task classify, 31 images, 2 classes" in r.output
    assert "split (given by the folders)" in r.output
    rows = {line.split()[0]: line.split()[1:] for line in r.output.splitlines() if line.startswith("  ")}
    assert rows["def"][-1] == "3" and rows["ok"][-1] == "4"  # the test/ folder's own images
    assert "auto: data.split_folders = keep" in r.output
    assert "warning: few images: 'def' 9 train / 3 val / 3 test; 'ok' 9 train / 3 val / 4 test" in r.output
    assert sorted(tmp_path.rglob("*")) == before  # no run folder


def test_cross_validation_pools_split_folders_and_says_so(tmp_path, caplog):
    from kdefect.core.run import RunDir
    from kdefect.trust.cv import cross_validate

    root = _presplit(tmp_path / "d", {"train": {"good": 6, "crack": 6}, "test": {"good": 3, "crack": 3}})
    tests = []

    def fake_fit(cfg, split, quiet):
        run = RunDir.create(cfg.runs_dir, cfg.name)
        tests.append(split["test"])
        run.write_json("metrics.json", {"accuracy": 1.0})
        return run

    cfg = load_config(None, [f"data.source={root}", f"runs_dir={tmp_path / 'runs'}", "name=cv"])
    with caplog.at_level("WARNING"):
        cross_validate(cfg, folds=3, fit_fn=fake_fit)
    assert "pools the data set's own split folders (test, train)" in caplog.text
    assert sorted(np.concatenate(tests).tolist()) == list(range(18))  # every image a test image once


def test_a_split_inside_each_class_folder_is_kept(tmp_path, caplog):
    root = tmp_path / "d"
    v = 0
    for cls in ("good", "crack"):
        for part, n in (("Train", 8), ("Test", 3)):
            for i in range(n):
                v += 1
                _img(root / cls / part / f"{i}.png", v)
        _img(root / cls / "Train" / "Label" / "0.png", 0)  # a DAGM-like mask folder inside the split
    with caplog.at_level("INFO"):
        idx, _ = dedupe_index(index_dataset(DataConfig(source=str(root))), "drop")
    assert idx.classes == ["crack", "good"] and len(idx) == 22  # no "Train"/"Test" classes, no masks
    assert "<class>/test/, <class>/train/" in caplog.text and "holds no images itself" not in caplog.text
    split, mode, _ = split_index(idx, DataConfig(source=str(root)))
    assert mode == "keep" and len(split["test"]) == 6
    assert all("/Test/" in idx.paths[i] for i in split["test"])


def test_a_split_inside_only_some_class_folders_is_not_kept(tmp_path, caplog):
    root = tmp_path / "d"
    for i in range(4):
        _img(root / "good" / "train" / f"{i}.png", i + 1)
        _img(root / "good" / "test" / f"{i}.png", i + 11)
        _img(root / "crack" / f"{i}.png", i + 21)
    with caplog.at_level("WARNING"):
        idx = index_dataset(DataConfig(source=str(root)))
    assert idx.split_names is None and idx.classes == ["crack", "good"]
    assert "class folder 'good' is split inside (test/, train/) but not every class folder is" in caplog.text


def test_class_names_that_differ_only_in_case_are_warned_about(tmp_path, caplog):
    root = _presplit(tmp_path / "d", {"train": {"good": 6, "Crack": 6}, "test": {"good": 2, "crack": 2}})
    with caplog.at_level("WARNING"):
        idx = index_dataset(DataConfig(source=str(root)))
    assert idx.classes == ["Crack", "crack", "good"]  # read as given, but not silently
    assert "class folders 'Crack' and 'crack' in" in caplog.text and "differ only in case" in caplog.text
