"""LIME / SHAP / occlusion on the INT8 .tflite, through the device's decision rule; the logged-decision re-run.

The model is built by hand so the right answer is known: class ``patch`` is
decided by the brightest 5x5 neighbourhood (averaging conv -> global max ->
fixed dense), so every faithful method must put the planted bright square on top.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kdefect.errors import ModelError, ModelIntegrityError
from kdefect.trust import faithfulness as F
from kdefect.trust.model_fn import TFLiteProbs
from kdefect.trust.saliency import ExplainSettings, display, explain_one

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SIZE = 32
FAST = ExplainSettings(seed=0, segments=30, lime_samples=120, shap_evals=300)  # SHAP needs ~300 at 32 px


def patch_model(size: int = SIZE, threshold: float = 0.66):
    """P(patch) rises with the brightest 5x5 mean: a model whose evidence is exactly the bright square."""
    from kdefect.keras import keras

    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(1, 5, padding="same", use_bias=False, name="conv",
                            kernel_initializer=keras.initializers.Constant(1 / 75))(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.Constant([[0.0, 15.0]]),
                             bias_initializer=keras.initializers.Constant([0.0, -15.0 * threshold]))(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def samples(easy):
    rng = np.random.default_rng(3)
    return [easy.sample("patch", SIZE, rng) for _ in range(4)] + [easy.sample("good", SIZE, rng) for _ in range(4)]


def _export(model, out: Path, samples, temperature: float = 1.0) -> Path:
    from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
    from kdefect.export.tflite import to_tflite

    x = np.stack([s[0] for s in samples]).astype(np.float32)
    path = to_tflite(model, out, "int8", representative=np.concatenate([x] * 4))
    write_sidecar(path, Sidecar(sha256="", task="classify", labels=["good", "patch"], good_label="good",
                                input=InputSpec(size=[SIZE, SIZE], channels=3), quantization="int8",
                                thresholds={"review_below": 0.6, "temperature": temperature}))
    return path


@pytest.fixture(scope="module")
def keras_patch():
    return patch_model()


@pytest.fixture(scope="module")
def tflite_patch(keras_patch, samples, tmp_path_factory) -> Path:
    return _export(keras_patch, tmp_path_factory.mktemp("patch") / "model.tflite", samples)


def test_the_hand_built_model_decides_by_the_patch(tflite_patch, samples):
    fn = TFLiteProbs(tflite_patch)
    pred = fn(np.stack([s[0] for s in samples])).argmax(1)
    assert pred.tolist() == [1] * 4 + [0] * 4


@pytest.mark.parametrize("method", ["lime", "occlusion", pytest.param("shap", marks=pytest.mark.slow)])
def test_each_method_puts_the_patch_on_top(method, tflite_patch, samples):
    fn = TFLiteProbs(tflite_patch)
    for img, boxes in samples[:3]:
        s = explain_one(method, fn, img, 1, FAST)
        loc = F.localisation(s.heat, boxes)
        assert loc["pointing_hit"], method
        assert loc["heat_share_inside"] > 2 * loc["area_share"]
        assert s.model_images > 0 and s.heat.shape == (SIZE, SIZE)


def test_gradcam_puts_the_patch_on_top(keras_patch, samples):
    for img, boxes in samples[:3]:
        s = explain_one("gradcam", None, img, 1, FAST, keras_model=keras_patch)
        assert F.localisation(s.heat, boxes)["pointing_hit"]


def test_gradcam_refuses_a_tflite(tflite_patch, samples):
    with pytest.raises(ModelError, match="Keras model's gradients"):
        explain_one("gradcam", TFLiteProbs(tflite_patch), samples[0][0], 1, FAST)


def test_deterministic_under_a_seed(tflite_patch, samples):
    fn = TFLiteProbs(tflite_patch)
    img = samples[0][0]
    a, b = (explain_one("lime", fn, img, 1, FAST).heat for _ in range(2))
    c = explain_one("lime", fn, img, 1, ExplainSettings(**{**FAST.to_dict(), "seed": 7})).heat
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_shap_is_deterministic(tflite_patch, samples):
    fn = TFLiteProbs(tflite_patch)
    a, b = (explain_one("shap", fn, samples[1][0], 1, FAST).heat for _ in range(2))
    np.testing.assert_array_equal(a, b)
    state = np.random.get_state()
    explain_one("shap", fn, samples[1][0], 1, FAST)
    assert np.array_equal(np.random.get_state()[1], state[1]), "numpy's global generator must be left as it was"


def test_probabilities_go_through_the_sidecar_decision_rule(keras_patch, samples, tmp_path):
    """A sidecar temperature changes what the explainer sees, exactly as it changes the device's decision."""
    from kdefect.core.decisions import softmax

    path = _export(keras_patch, tmp_path / "t" / "model.tflite", samples, temperature=2.0)
    fn = TFLiteProbs(path)
    x = np.stack([s[0] for s in samples]).astype(np.float32)
    raw, p = fn.raw(x), fn(x)
    np.testing.assert_allclose(p, np.stack([softmax(np.log(np.maximum(r, 1e-12)) / 2.0) for r in raw]), atol=1e-9)
    assert not np.allclose(p, raw, atol=1e-3)
    for xi, pi in zip(x, p):
        d = fn.clf.decide(xi)
        assert d.label == fn.labels[int(pi.argmax())]
        assert d.probs == {k: round(float(v), 6) for k, v in zip(fn.labels, pi)}


def test_batched_interpreter_matches_the_device_loop(tflite_patch, samples):
    x = np.concatenate([np.stack([s[0] for s in samples])] * 3).astype(np.float32)
    loop, batched = TFLiteProbs(tflite_patch, batch=1), TFLiteProbs(tflite_patch, batch=8)
    np.testing.assert_allclose(batched(x), loop(x), atol=1e-6)
    assert loop.invokes == len(x)
    if batched.batch == 8:  # a model that refuses the resize falls back to the loop
        assert batched.invokes == 3


def test_deletion_beats_a_random_order(tflite_patch, samples):
    """Faithfulness sanity: hiding the occlusion map's pixels first kills P(patch) faster than a random order."""
    fn = TFLiteProbs(tflite_patch)
    wins = []
    for i, (img, boxes) in enumerate(samples[:4]):
        heat = explain_one("occlusion", fn, img, 1, FAST).heat
        mine = F.causal_curves(fn, img, 1, heat, steps=16, seed=i)
        rand = F.causal_curves(fn, img, 1, F.random_heat(img.shape, i), steps=16, seed=i)
        wins.append(mine["deletion_auc"] < rand["deletion_auc"] and mine["insertion_auc"] > rand["insertion_auc"])
        assert F.localisation(F.random_heat(img.shape, i), boxes)["heat_share_inside"] < 0.2
        assert display(heat).max() == pytest.approx(1.0)
    assert all(wins)


def test_missing_library_says_how_to_install(monkeypatch, tflite_patch, samples):
    import sys

    monkeypatch.setitem(sys.modules, "lime", None)
    monkeypatch.setitem(sys.modules, "lime.lime_image", None)
    with pytest.raises(ModelError, match=r"pip install 'kdefect\[explain\]'"):
        explain_one("lime", TFLiteProbs(tflite_patch), samples[0][0], 1, FAST)


# --- CLI and the logged decision ------------------------------------------------------------------------------
@pytest.fixture()
def line(tflite_patch, samples, tmp_path) -> dict:
    """Two parts classified by kdefect-edge with the patch model: a decision log and its images."""
    from kdefect.edge.cli import main as edge

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in (0, 5):
        Image.fromarray(samples[i][0]).save(imgs / f"part{i}.png")
    log = tmp_path / "decisions.jsonl"
    assert edge([str(tflite_patch), str(imgs), "--log", str(log), "-q"]) == 0
    return {"imgs": imgs, "log": log}


def _kdefect(*args) -> object:
    from kdefect.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_explains_a_tflite_with_cost(tflite_patch, line, tmp_path):
    out = tmp_path / "out"
    r = _kdefect("-q", "explain", tflite_patch, line["imgs"], "--method", "occlusion", "--method", "lime",
                 "--samples", 60, "--out", out)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "explanations.json").read_text())
    assert summary["model_kind"] == "tflite" and len(summary["images"]) == 2
    assert summary["cost"]["lime"]["model_images_per_image"] == 60
    assert (out / "part0_occlusion.png").is_file() and (out / "part5_lime.png").is_file()


def test_cli_exit_codes(tflite_patch, line):
    assert _kdefect("explain", tflite_patch, line["imgs"], "--method", "gradcam").exit_code == 2
    r = _kdefect("explain", tflite_patch, line["imgs"], "--method", "drise")  # D-RISE explains a detector's box
    assert r.exit_code == 2 and "is a classifier" in r.output
    assert _kdefect("explain").exit_code == 2
    assert _kdefect("explain", tflite_patch, "--decision", line["log"], "--index", 9).exit_code == 2


def test_decision_rerun_writes_the_page(tflite_patch, line, tmp_path):
    out = tmp_path / "page"
    r = _kdefect("-q", "explain", tflite_patch, "--decision", line["log"], "--index", 0, "--method", "occlusion",
                 "--out", out)
    assert r.exit_code == 0, r.output
    page = (out / "decision_0.html").read_text()
    rec = json.loads(line["log"].read_text().splitlines()[0])
    assert rec["label"] in page and "review below" in page and rec["model_sha256"] in page
    assert (out / "decision_0.png").stat().st_size > 1000


def test_decision_rerun_finds_the_model_beside_the_log(tflite_patch, line, tmp_path):
    import shutil as sh

    from kdefect.trust.explain_decision import explain_decision, find_model

    assert find_model(line["log"], "0" * 64) is None
    for suffix in (".tflite", ".json"):
        sh.copy(tflite_patch.with_suffix(suffix), line["log"].parent / f"model{suffix}")
    paths = explain_decision(line["log"], -1, tmp_path / "p", None, ["occlusion"])
    assert paths["html"].is_file()


def test_decision_rerun_refuses_another_model(samples, line, tmp_path):
    """The log line's model hash must match the model file given, or nothing is explained."""
    from kdefect.trust.explain_decision import explain_decision

    other = _export(patch_model(threshold=0.62), tmp_path / "other" / "model.tflite", samples)
    with pytest.raises(ModelIntegrityError, match="is not the model that made this decision"):
        explain_decision(line["log"], 0, tmp_path / "x", other, ["occlusion"])
    r = _kdefect("explain", other, "--decision", line["log"], "--index", 0, "--method", "occlusion")
    assert r.exit_code == 2 and "not the model that made this decision" in r.output
    assert not (tmp_path / "x").exists()


# --- the report section ------------------------------------------------------------------------------------------
def test_pick_parts_takes_the_most_confident_correct_and_wrong_per_class():
    from kdefect.trust.report_explain import pick_parts

    y = np.array([0, 0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.45, 0.55]])
    assert pick_parts(y, p) == [(0, "correct"), (2, "wrong"), (3, "correct")]


def test_report_section_explains_the_exported_model(trust_run, tmp_path):
    """With an export in the run, the section's maps and faithfulness figures come from the .tflite."""
    import shutil as sh

    from kdefect.core.run import RunDir
    from kdefect.core.sidecar import InputSpec, Sidecar, write_sidecar
    from kdefect.export.tflite import to_tflite
    from kdefect.trust.outputs import load_model, split_images
    from kdefect.trust.report_explain import explanations_section

    run = RunDir.open(sh.copytree(trust_run, tmp_path / "run"))
    classes = run.classes()[0]
    model = load_model(run.model_path)
    _, y, images = split_images(run, "test")
    plain = explanations_section(run, images[:6], y[:6], classes, model, settings=FAST)
    assert "float Keras model" in plain and "deletion AUC" in plain
    tfl = to_tflite(model, run.path / "export" / "model.tflite", "int8", representative=images.astype(np.float32))
    write_sidecar(tfl, Sidecar(sha256="", task="classify", labels=classes, input=InputSpec(size=[32, 32])))
    html_ = explanations_section(run, images[:6], y[:6], classes, model, settings=FAST)
    assert "export/model.tflite" in html_ and html_.count("data:image/png;base64,") >= 2


def test_explaining_a_tflite_imports_no_tensorflow(tflite_patch, samples, tmp_path):
    """LIME / occlusion on the .tflite need only the edge runtime: they work where TensorFlow is not installed."""
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", samples[0][0])
    code = ("import sys, numpy as np\n"
            "from kdefect.trust.model_fn import TFLiteProbs\n"
            "from kdefect.trust.saliency import ExplainSettings, explain_one\n"
            "import kdefect.trust.explain_decision, kdefect.trust.explain_run, kdefect.trust.faithfulness\n"
            f"fn = TFLiteProbs({str(tflite_patch)!r}); x = np.load({str(tmp_path / 'x.npy')!r})\n"
            "for m in ('occlusion', 'lime'):\n"
            "    explain_one(m, fn, x, 1, ExplainSettings(lime_samples=20))\n"
            "print('TF' if 'tensorflow' in sys.modules else 'NO-TF')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("NO-TF")


def test_pointing_game_tests_the_centre_of_a_tied_plateau_not_its_top_left_pixel():
    # a superpixel map: one top segment (rows 8..23, cols 8..23) straddling a box that covers rows/cols 12..32
    heat = np.zeros((32, 32), np.float32)
    heat[8:24, 8:24] = 1.0
    loc = F.localisation(heat, np.array([[12, 12, 32, 32]]))
    assert loc["pointing_hit"] and not loc["pointing_hit_first"]  # raster argmax is (8, 8), outside the box
    # a single maximum (Grad-CAM-like) is its own peak under both rules
    heat = np.zeros((32, 32), np.float32)
    heat[3, 4] = 1.0
    loc = F.localisation(heat, np.array([[12, 12, 32, 32]]))
    assert not loc["pointing_hit"] and not loc["pointing_hit_first"]
