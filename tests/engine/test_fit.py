"""``fit`` end to end: a complete, consistent run folder that learned something."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

from kdefect.core.run import RunDir

EXPECTED = ["config.yaml", "classes.json", "class_weights.json", "split/train.txt", "split/val.txt",
            "split/test.txt", "model.keras", "saved_model/saved_model.pb", "checkpoints/best.keras", "history.csv",
            "metrics.json", "confusion_matrix.png", "per_class.csv", "manifest.json"]


def test_run_folder_is_complete(fitted_run):
    for rel in EXPECTED:
        assert (fitted_run.path / rel).exists(), rel
    assert any((fitted_run.path / "tensorboard").rglob("events.out.*"))
    assert fitted_run.verify_manifest() == []
    assert not list(fitted_run.path.rglob("*.tmp*")), "temporary files left behind"


def test_learns_above_chance_and_reports_escape_rate(fitted_run):
    m = json.loads((fitted_run.path / "metrics.json").read_text())
    classes, good = fitted_run.classes()
    assert good == "good" and len(classes) == 5
    assert m["split"] == "test" and m["n"] == 60
    assert m["accuracy"] > 0.5, m["accuracy"]  # chance is 0.2
    assert set(m["per_class"]) == set(classes)
    assert {"precision", "recall", "f1", "support"} <= set(m["per_class"]["scratch"])
    assert 0.0 <= m["escape_rate"] <= 1.0 and m["defective"] == 48
    assert m["training"]["train_images_per_s"] > 0
    rows = list(csv.DictReader((fitted_run.path / "history.csv").read_text().splitlines()))
    assert len(rows) == 15 and float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_split_is_stratified_disjoint_and_saved(fitted_run):
    parts = {s: (fitted_run.path / "split" / f"{s}.txt").read_text().splitlines() for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [180, 60, 60]
    files = [line.split("\t")[0] for s in parts for line in parts[s]]
    assert len(files) == len(set(files))
    test_labels = [line.split("\t")[1] for line in parts["test"]]
    assert {c: test_labels.count(c) for c in set(test_labels)} == dict.fromkeys(set(test_labels), 12)


def test_saved_model_reloads_with_same_predictions(fitted_run):
    import kdefect.models  # noqa: F401
    from kdefect.keras import keras

    m1 = keras.models.load_model(fitted_run.model_path, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 3)).astype("float32")
    from kdefect.keras import tf

    sm = tf.saved_model.load(str(fitted_run.saved_model_path))
    np.testing.assert_allclose(m1.predict(x, verbose=0), sm(x).numpy(), atol=1e-5)


def test_evaluate_recomputes_the_saved_test_metrics(fitted_run):
    from kdefect.engine import evaluate

    saved = json.loads((fitted_run.path / "metrics.json").read_text())
    again = evaluate(fitted_run.path, quiet=True)
    assert again["accuracy"] == pytest.approx(saved["accuracy"])
    assert again["confusion_matrix"] == saved["confusion_matrix"]
    assert (fitted_run.path / "evaluation" / "test" / "metrics.json").is_file()


def test_evaluate_on_new_data_rejects_unknown_classes(fitted_run, tmp_path):
    from PIL import Image

    from kdefect.engine import evaluate
    from kdefect.errors import DataError

    for cls in ("good", "rust"):
        (tmp_path / "new" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (48, 48), (i * 40, 90, 90)).save(tmp_path / "new" / cls / f"{i}.png")
    with pytest.raises(DataError, match="rust"):
        evaluate(fitted_run.path, data=str(tmp_path / "new"))


def test_predict_writes_probabilities_and_flags_bad_files(fitted_run, tmp_path):
    from kdefect.engine import predict

    src = [line.split("\t")[0] for line in (fitted_run.path / "split" / "test.txt").read_text().splitlines()[:4]]
    cfg = fitted_run.config()
    from kdefect.data.synthetic import materialize_synthetic

    root = materialize_synthetic(cfg.data.synthetic, "folder")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, rel in enumerate(src):
        (folder / f"{i}.png").write_bytes((root / rel).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "preds.csv"
    rows = predict(fitted_run.path, [folder], out=out)
    assert len(rows) == 5
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 4
    for r in ok:
        assert sum(r[f"p_{c}"] for c in fitted_run.classes()[0]) == pytest.approx(1.0, abs=1e-4)
        assert r["class"] in fitted_run.classes()[0]
    bad = [r for r in rows if r["error"]]
    assert bad[0]["path"].endswith("broken.png") and "unreadable" in bad[0]["error"]
    assert out.read_text().count("\n") == 6


@pytest.mark.slow
def test_transfer_schedule_and_imbalance_options(tmp_path, make_config):
    from kdefect.engine import fit

    cfg = make_config(tmp_path, "train.epochs=3", "train.freeze_epochs=1", "train.fine_tune_layers=2", "train.lr_schedule=constant",
                      "loss.name=focal", "loss.class_weights=effective", "data.subsample={scratch: 0.25}")
    run = fit(cfg, quiet=True)
    rows = list(csv.DictReader((run.path / "history.csv").read_text().splitlines()))
    assert len(rows) == 3
    assert float(rows[0]["learning_rate"]) == pytest.approx(cfg.train.learning_rate)
    assert float(rows[-1]["learning_rate"]) == pytest.approx(cfg.train.fine_tune_learning_rate)
    cw = json.loads((run.path / "class_weights.json").read_text())
    assert cw["counts"]["scratch"] == 9 and cw["counts"]["good"] == 36
    assert cw["weights"]["scratch"] > cw["weights"]["good"]
    assert len((run.path / "split" / "train.txt").read_text().splitlines()) == 153


def test_run_dir_names_do_not_collide(tmp_path):
    a = RunDir.create(tmp_path, "x")
    b = RunDir.create(tmp_path, "x")
    assert a.path.name == "x" and b.path.name == "x-2"


@pytest.mark.slow
def test_mirrored_strategy_trains_with_the_global_batch(tmp_path, make_config):
    from kdefect.engine import fit

    run = fit(make_config(tmp_path, "train.strategy=mirrored", "train.epochs=1"), quiet=True)
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["training"]["epochs_run"] == 1 and m["training"]["train_images"] == 176  # 11 global batches of 16


def test_cosine_schedule_decays_to_its_floor_and_follows_the_time_budget(tmp_path, make_config):
    from kdefect.engine import fit
    from kdefect.engine.callbacks import CosineDecay

    cfg = make_config(tmp_path, "train.epochs=4", "train.lr_schedule=cosine")
    run = fit(cfg, quiet=True)
    lrs = [float(r["learning_rate"]) for r in csv.DictReader((run.path / "history.csv").read_text().splitlines())]
    assert len(lrs) == 4 and all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] < 0.1 * cfg.train.learning_rate  # last batch of the last epoch is near the 1% floor
    # time-based progress: half the budget spent -> half-way down the cosine, whatever the epoch count says
    cb = CosineDecay(epochs=1000, budget_s=100.0, start=0.0, clock=lambda: 50.0)  # fixed clock: no timing flake
    cb.base = 1.0
    cb.params = {"steps": 10}
    assert cb.rate(cb.progress(0)) == pytest.approx(cb.rate(0.5)) and 0.45 < cb.rate(0.5) < 0.56


def test_keep_best_restores_the_epoch_with_the_lowest_validation_loss():
    from kdefect.engine.callbacks import KeepBest
    from kdefect.keras import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    cb = KeepBest("val_loss")
    cb.set_model(model)
    snapshots = []
    for epoch, loss in enumerate([1.0, 0.5, 0.8]):  # epoch 2 (index 1) is the best; the last is worse
        model.set_weights([np.full((2, 1), float(epoch)), np.full((1,), float(epoch))])
        snapshots.append(model.get_weights())
        cb.on_epoch_end(epoch, {"val_loss": loss})
    cb.on_train_end()
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snapshots[1], strict=True))
    assert cb.best_epoch == 1


def test_split_from_reuses_another_runs_split(fitted_run, tmp_path):
    """`data.split_from=RUN` (a detector warm-started from a classifier takes its split): the same files per split."""
    from kdefect.data.split import load_split
    from kdefect.engine.trainer import prepare_run
    from tests.conftest import tiny_config

    run, _index, _split = prepare_run(tiny_config(tmp_path, f"data.split_from={fitted_run.path}", "seed=7"))
    mine, theirs = load_split(run.path), load_split(fitted_run.path)
    for name in ("train", "val", "test"):
        assert sorted(mine[name][0]) == sorted(theirs[name][0]) and mine[name][0], name


def test_fit_runs_the_test_split_through_the_model_once(tmp_path, make_config, monkeypatch):
    """The test metrics come from the outputs cache calibration reads too: no second inference pass."""
    from kdefect.engine import evaluator, fit

    def refuse(*args, **kwargs):
        raise AssertionError("fit predicted the test split a second time")

    monkeypatch.setattr(evaluator, "predict_probs", refuse)
    run = fit(make_config(tmp_path, "train.epochs=2"), quiet=True)
    m = json.loads((run.path / "metrics.json").read_text())
    with np.load(run.path / "trust" / "outputs-test.npz") as z:
        y, pred = z["y"], z["logits"].argmax(1)
    assert m["n"] == len(y) == 60
    assert m["accuracy"] == pytest.approx(float((pred == y).mean()))
    rows = list(csv.DictReader((run.path / "test_predictions.csv").read_text().splitlines()))
    assert len(rows) == 60
