"""``kdefect tflite --ood-gate knn``: a feature output, a device-fitted bank, the same gate on host and device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kdefect.errors import ExportError, ModelIntegrityError

from .conftest import SIZE


@pytest.fixture(scope="module")
def knn_export(handmade_run, tmp_path_factory):
    from kdefect.export import export_run

    out = tmp_path_factory.mktemp("knn") / "model.tflite"
    return export_run(handmade_run, out=out, mode="int8", calib_size=30, ood_gate="knn")


def _off_distribution(n: int = 6) -> np.ndarray:
    """Images unlike every training class (green checkerboards): a defect type the model never saw."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    board = ((yy // 4 + xx // 4) % 2).astype(np.float32)
    imgs = np.zeros((n, SIZE, SIZE, 3), np.float32)
    for i in range(n):
        imgs[i, ..., 1] = 60 + 160 * board * (0.6 + 0.08 * i)
    return imgs


def test_sidecar_bank_and_output_positions(knn_export, trained_model):
    from kdefect.core.sidecar import read_sidecar
    from kdefect.utils.io import sha256_file

    sc = read_sidecar(knn_export["model"])
    gate = sc.thresholds["ood"]
    assert gate["method"] == "knn" and gate["k"] == 10 and gate["val_tpr"] == 0.95
    bank = knn_export["model"].replace(".tflite", ".knn.npy")
    assert gate["bank"] == "model.knn.npy" and gate["bank_sha256"] == sha256_file(bank)
    feat_dim = trained_model.get_layer("head_features").output.shape[-1]
    assert np.load(bank).shape == (gate["bank_size"], feat_dim) == (60, feat_dim)  # the whole training split
    assert {sc.output["index"], sc.output["features_index"]} == {0, 1} and sc.output["features_dim"] == feat_dim
    assert gate["val_flag_share"] <= 0.1  # the 95% quantile of validation: about 5% of known parts flagged
    # the calibrated rest is untouched: temperature, review threshold, operating point from calibration.json
    assert (sc.thresholds["temperature"], sc.thresholds["review_below"]) == (1.5, 0.6)


def test_device_gate_flags_unseen_images_and_agrees_with_the_host(knn_export, handmade_run, trained_model, easy_test):
    from kdefect.core.knn import KNN
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.trust.outputs import predict_heads

    clf = EdgeClassifier(knn_export["model"])
    known = [clf.decide(x) for x in easy_test[0].astype(np.float32)]
    unseen = [clf.decide(x) for x in _off_distribution()]
    assert all(d.ood["method"] == "knn" for d in known + unseen)
    assert np.mean([d.ood["flag"] for d in known]) <= 0.1
    assert all(d.ood["flag"] for d in unseen), [d.ood["score"] for d in unseen]
    # class decisions are the INT8 model's, as without the gate
    assert np.mean([d.label == clf.labels[y] for d, y in zip(known, easy_test[1], strict=True)]) >= 0.9
    # the INT8 device gate separates unseen from known images as well as the float host gate of the Keras model
    from kdefect.trust.ood import auroc

    x_all = np.concatenate([easy_test[0].astype(np.float32), _off_distribution()])
    host = KNN.fit(predict_heads(trained_model, _train_images(handmade_run))["features"]).score(
        predict_heads(trained_model, x_all)["features"])
    device = np.array([d.ood["score"] for d in known + unseen])
    n = len(known)
    assert auroc(device[:n], device[n:]) >= auroc(host[:n], host[n:]) - 0.02 and auroc(device[:n], device[n:]) > 0.95


def _train_images(run) -> np.ndarray:
    from kdefect.data.pipeline import load_images
    from kdefect.data.split import load_split

    return load_images(load_split(run)["train"][0], (SIZE, SIZE), 3).astype(np.float32)


def test_host_predict_applies_the_same_gate(knn_export, tmp_path):
    from PIL import Image

    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.engine.predictor import predict

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(_off_distribution(3)):
        Image.fromarray(img.astype(np.uint8)).save(folder / f"unseen_{i}.png")
    rows = predict(knn_export["model"], [folder])
    clf = EdgeClassifier(knn_export["model"])
    for r in rows:
        assert r["ood"] is True and r["ood"] == clf.classify(r["path"]).ood["flag"]


def test_evaluate_reports_what_the_device_gate_flags(knn_export, ptq_msp):
    from kdefect.export.evaluate import evaluate_tflite

    knn = evaluate_tflite(knn_export["model"], threads=(1,), latency_images=3)
    assert knn["decisions"]["ood"]["method"] == "knn" and knn["decisions"]["ood"]["flag_share"] <= 0.1
    assert knn["top1_agreement"] >= 0.95  # the feature output does not change the class output
    msp = evaluate_tflite(ptq_msp, threads=(1,), latency_images=3)
    assert msp["decisions"]["ood"]["method"] == "msp" and 0 <= msp["decisions"]["review_share"] <= 1


@pytest.fixture(scope="module")
def ptq_msp(handmade_run, tmp_path_factory):
    from kdefect.export import export_run

    return export_run(handmade_run, out=tmp_path_factory.mktemp("msp") / "m.tflite", mode="int8", calib_size=30)["model"]


def test_missing_or_changed_bank_is_refused(knn_export, tmp_path):
    from kdefect.edge.classifier import EdgeClassifier

    model = tmp_path / "model.tflite"
    shutil.copy(knn_export["model"], model)
    shutil.copy(knn_export["sidecar"], tmp_path / "model.json")
    with pytest.raises(ModelIntegrityError, match="feature bank 'model.knn.npy'"):
        EdgeClassifier(model)
    bank = np.load(knn_export["model"].replace(".tflite", ".knn.npy"))
    np.save(tmp_path / "model.knn.npy", bank[::-1])
    with pytest.raises(ModelIntegrityError, match="does not match the sidecar"):
        EdgeClassifier(model)


def test_gate_choices_and_errors(handmade_run, trained_model, tmp_path):
    from kdefect.core.sidecar import read_sidecar
    from kdefect.export import export_run

    res = export_run(handmade_run, out=tmp_path / "none.tflite", mode="float32", ood_gate="none")
    sc = read_sidecar(res["model"])
    assert "ood" not in sc.thresholds and "features_index" not in sc.output
    with pytest.raises(ExportError, match="unknown --ood-gate"):
        export_run(handmade_run, out=tmp_path / "x.tflite", ood_gate="mahalanobis")
    path = tmp_path / "mine.keras"
    trained_model.save(path)
    with pytest.raises(ExportError, match="export a run folder"):
        export_run(path, out=tmp_path / "y.tflite", mode="float32", ood_gate="knn")


@pytest.mark.slow
def test_qat_model_exports_with_the_knn_gate(handmade_run, tmp_path):
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.export import export_run

    res = export_run(handmade_run, out=tmp_path / "qat.tflite", mode="int8", qat=True, epochs=1, steps_per_epoch=2,
                     calib_size=20, ood_gate="knn")
    assert json.loads(Path(res["sidecar"]).read_text())["thresholds"]["ood"]["method"] == "knn"
    assert EdgeClassifier(res["model"]).classify(_off_distribution(1)[0].astype(np.uint8)).ood["method"] == "knn"


def test_big_training_split_is_subsampled_by_class(knn_export, handmade_run, tmp_path):
    from kdefect.core.sidecar import read_sidecar
    from kdefect.data.split import load_split
    from kdefect.export.feature_gate import fit_gate

    model = tmp_path / "m.tflite"
    shutil.copy(knn_export["model"], model)
    sc = read_sidecar(knn_export["model"])
    gate = fit_gate(model, sc.output["features_index"], load_split(handmade_run), (SIZE, SIZE), 3, max_bank=12)
    assert gate["bank_size"] == 12 and np.load(tmp_path / "m.knn.npy").shape[0] == 12  # 4 per class, not 60
