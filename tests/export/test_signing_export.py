"""``kdefect keys new`` + ``kdefect tflite --sign``; a run checked before export; code in a model file refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kdefect.cli import main

from .conftest import SIZE


def _invoke(*args: str):
    return CliRunner().invoke(main, ["-q", *map(str, args)])


@pytest.fixture(scope="module")
def signed_knn(handmade_run, tmp_path_factory) -> dict[str, Path]:
    """handmade_run exported INT8 with the kNN gate and signed through the CLI."""
    d = tmp_path_factory.mktemp("signed")
    res = _invoke("keys", "new", d / "line")
    assert res.exit_code == 0, res.output
    out = d / "export" / "model.tflite"
    res = _invoke("tflite", handmade_run, "--ood-gate", "knn", "--calib-size", "30", "--out", out, "--sign", d / "line.key")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["signature"] == str(out.with_suffix(".sig"))
    return {"model": out, "pub": d / "line.pub", "bank": out.with_suffix(".knn.npy")}


@pytest.fixture()
def device(signed_knn, tmp_path) -> dict[str, Path]:
    """A copy of the signed export as it lies on a device."""
    dst = tmp_path / "device"
    shutil.copytree(signed_knn["model"].parent, dst)
    return {"model": dst / "model.tflite", "pub": signed_knn["pub"], "bank": dst / "model.knn.npy"}


def test_signed_knn_export_loads_with_the_trusted_key(device):
    from kdefect.edge.classifier import EdgeClassifier

    clf = EdgeClassifier(device["model"], trust_key=device["pub"])
    assert clf.rule.knn is not None and clf.manifest_sha256


@pytest.mark.parametrize("tamper", ["bank_replaced", "bank_hash_deleted"])
def test_replaced_bank_is_refused(device, tamper):
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.errors import ModelIntegrityError

    if tamper == "bank_replaced":
        bank = np.load(device["bank"])
        np.save(device["bank"], bank[::-1].copy())
    else:  # the bank replaced and its hash deleted from the sidecar
        np.save(device["bank"], np.load(device["bank"])[::-1].copy())
        sp = device["model"].with_suffix(".json")
        d = json.loads(sp.read_text())
        d["thresholds"]["ood"].pop("bank_sha256")
        sp.write_text(json.dumps(d))
    with pytest.raises(ModelIntegrityError):
        EdgeClassifier(device["model"], trust_key=device["pub"])
    with pytest.raises(ModelIntegrityError):  # and without a key: the bank hash is mandatory and checked
        EdgeClassifier(device["model"])


def test_a_swapped_model_keras_is_not_exported(handmade_run, tmp_path):
    from kdefect.core.run import RunDir
    from kdefect.keras import keras

    run = RunDir(Path(shutil.copytree(handmade_run, tmp_path / "run")))
    run.write_manifest()
    other = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    other.save(run.model_path)
    res = _invoke("tflite", run.path, "--float32", "--out", tmp_path / "m.tflite")
    assert res.exit_code == 2 and "model.keras" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m.tflite").exists()


def _lambda_model(marker: Path):
    """A model whose Lambda writes ``marker`` whenever its code runs (also while the model is rebuilt on load)."""
    from kdefect.keras import keras

    fn = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(fn)(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


@pytest.mark.parametrize("fmt", ["h5", "saved_model"])
def test_model_with_a_lambda_is_refused_before_its_code_runs(tmp_path, fmt):
    marker = tmp_path / "marker"
    model = _lambda_model(marker)
    path = tmp_path / ("m.h5" if fmt == "h5" else "sm")
    model.save(path, save_format="h5" if fmt == "h5" else "tf")
    marker.unlink(missing_ok=True)  # saving traced the Lambda
    res = _invoke("tflite", "--model", path, "--float32", "--out", tmp_path / "m.tflite")
    assert res.exit_code == 2 and "Lambda" in res.output and "--trust-model" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not marker.exists()


def test_trust_model_loads_it_anyway(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "m.h5"
    _lambda_model(marker).save(path, save_format="h5")
    marker.unlink(missing_ok=True)
    res = _invoke("tflite", "--model", path, "--float32", "--trust-model", "--out", tmp_path / "m.tflite")
    assert res.exit_code == 0, res.output
    assert marker.exists()  # the code ran, as the user chose


def test_unknown_custom_objects_are_listed_and_plain_layers_are_not(tmp_path, trained_model):
    from kdefect.export.model_safety import code_findings
    from kdefect.keras import keras

    trained_model.save(tmp_path / "clean.h5", save_format="h5")
    trained_model.save(tmp_path / "clean_sm", save_format="tf")
    assert code_findings(tmp_path / "clean.h5") == [] and code_findings(tmp_path / "clean_sm") == []

    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inp = keras.Input((SIZE, SIZE, 3))
    keras.Model(inp, Mystery(name="mystery")(inp)).save(tmp_path / "custom.h5", save_format="h5")
    found = code_findings(tmp_path / "custom.h5")
    assert len(found) == 1 and "Mystery" in found[0]


def test_a_clean_saved_model_exports_through_the_isolated_loader(tmp_path, trained_model):
    from kdefect.export.saved_model import load_model_any
    from kdefect.keras import keras

    trained_model.save(tmp_path / "sm", save_format="tf")
    model = load_model_any(tmp_path / "sm")  # inspected, loaded in a subprocess, re-loaded here in safe mode
    assert isinstance(model, keras.Model) and model.count_params() == trained_model.count_params()
    res = _invoke("tflite", "--model", tmp_path / "sm", "--float32", "--out", tmp_path / "m.tflite")
    assert res.exit_code == 0, res.output
