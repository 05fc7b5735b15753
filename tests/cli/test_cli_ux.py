"""What a new user sees from `kdefect`: -q/-v anywhere, no TensorFlow noise, where files went, clear refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kdefect.cli import main

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield prefix + name, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + name + " ")


def test_every_subcommand_accepts_quiet_and_verbose():
    names = dict(_commands(main))
    assert {"fit", "evaluate", "predict", "tflite", "detect predict"} <= set(names)
    for name, cmd in names.items():
        opts = {o for p in cmd.params for o in p.opts}
        assert {"-q", "--quiet", "-v", "--verbose"} <= opts, name


def test_quiet_after_the_subcommand_and_where_evaluate_wrote(fitted_run, tmp_path):
    r = CliRunner().invoke(main, ["evaluate", str(fitted_run.path), "-q", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert f"Metrics written to {tmp_path / 'ev' / 'metrics.json'}" in r.stderr
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_predict_writes_into_the_run_folder_by_default(fitted_run, tmp_path, monkeypatch):
    from kdefect.data.split import load_split

    monkeypatch.chdir(tmp_path)
    first = load_split(fitted_run.path)["test"][0][0]
    r = CliRunner().invoke(main, ["predict", str(fitted_run.path), first, "-q"])
    assert r.exit_code == 0, r.output
    csv = fitted_run.path / "predictions.csv"
    assert f"1 predictions -> {csv.resolve()}" in r.stdout
    assert csv.read_text().startswith("path,class,score")
    assert not (tmp_path / "predictions.csv").exists()


def test_fit_closing_block_has_accuracy_verdict_saved_to_and_next(fitted_run, capsys):
    from kdefect.cli.train import _echo_verdict

    _echo_verdict(fitted_run.path)
    err = capsys.readouterr().err
    assert re.search(r"test split: accuracy \d\.\d{4}, macro recall \d\.\d{4}", err)
    assert "recall " in err and "verdict: " in err
    assert f"Results saved to {fitted_run.path}" in err and "Next: " in err
    assert "data warning" not in err  # this fixture's data has enough images per class


def test_fit_closing_block_repeats_the_data_warnings_before_the_verdict(fitted_run, tmp_path, capsys):
    import json
    import shutil

    from kdefect.cli.train import _echo_verdict

    run = shutil.copytree(fitted_run.path, tmp_path / "run")
    profile = json.loads((run / "data_profile.json").read_text())
    (run / "data_profile.json").write_text(json.dumps({**profile, "warnings": ["few images: 'x' 3 train"]}))
    _echo_verdict(run)
    err = capsys.readouterr().err
    assert "data warning: few images: 'x' 3 train" in err
    assert err.index("data warning: ") < err.index("verdict: ")  # read before the verdict it qualifies


def test_tflite_on_a_folder_that_is_not_a_run(tmp_path):
    r = CliRunner().invoke(main, ["tflite", str(tmp_path), "-q"])
    assert r.exit_code == 2
    assert "is not a kdefect run folder" in r.stderr and "config.yaml, model.keras" in r.stderr


@pytest.mark.slow
def test_tensorflow_start_up_noise_is_hidden_unless_verbose(tmp_path):
    """Two processes that import TensorFlow: by default stderr is kdefect's one error line only; -v shows TF's."""
    cmd = [sys.executable, "-m", "kdefect", "tflite", str(tmp_path)]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert r.stderr.startswith("error: ") and "not a kdefect run folder" in r.stderr
    r = subprocess.run([*cmd, "-v"], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert re.search(r"oneDNN|cuda|absl", r.stderr), r.stderr[-2000:]


BLOCK_CLICK = """
import importlib.abc, sys
class _NoClick(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "click" or name.startswith("click."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoClick())
"""


BLOCK_TF = BLOCK_CLICK.replace('"click"', '"tensorflow"').replace('"click."', '"tensorflow."')


@pytest.mark.parametrize("args", [["fit"], ["cv"], ["data", "check", "synthetic"],
                                  ["data", "pack", "synthetic", "packed"]])
def test_a_config_typo_is_reported_before_tensorflow_loads(tmp_path, args):
    """A mistyped key costs a user a second, not TensorFlow's start-up: no command imports TF before the config."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TF)
    env = _env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0, "the blocker must hide TensorFlow, or this test proves nothing"
    r = subprocess.run([sys.executable, "-m", "kdefect", *args, "--set", "run_dir=x"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == "error: unknown config key 'run_dir'. Did you mean 'runs_dir'?"


@pytest.mark.parametrize(("args", "says"), [
    (["fit", "--data", "{missing}"], "data folder '{missing}' does not exist. Pass a folder with one subfolder per "
                                     "class."),
    (["fit", "--data", "voc:{missing}"], "VOC folder '{missing}' does not exist. It needs images/ and annotations/ "
                                         "subfolders."),
    (["cv", "--set", "data.source=csv:{missing}.csv"], "label table '{missing}.csv' does not exist."),
    (["data", "check", "{missing}"], "data folder '{missing}' does not exist. Pass a folder with one subfolder per "
                                     "class."),
    (["data", "pack", "yolo:{missing}", "packed"], "YOLO folder '{missing}' does not exist."),
])
def test_a_missing_data_path_is_reported_before_tensorflow_loads(tmp_path, args, says):
    """The commonest first mistake, a mistyped data path, answered in a second with the source's own message."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TF)
    env = _env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    missing = str(tmp_path / "no_such_data")
    r = subprocess.run([sys.executable, "-m", "kdefect", *[a.format(missing=missing) for a in args]], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == "error: " + says.format(missing=missing)


@pytest.mark.parametrize(("args", "says"), [
    (["fit", "--set", "model.backbone=mobilenet_v4"], "unknown backbone 'mobilenet_v4'. Did you mean 'mobilenet_v2'?"),
    (["fit", "--backbone", "resnet_smal"], "unknown backbone 'resnet_smal'. Did you mean 'resnet_small'?"),
    (["cv", "--set", "model.backbone=tiny_cn"], "unknown backbone 'tiny_cn'. Did you mean 'tiny_cnn'?"),
    (["fit", "--set", "task=detect", "--backbone", "yolo_v8_x"],
     "detect.backbone 'yolo_v8_x' is unknown. Did you mean 'yolo_v8_xs'?"),
    (["fit", "--set", "model.backbone=densenet121", "--set", "model.alpha=0.5"],
     "model.alpha=0.5: backbone 'densenet121' has no width multiplier."),
])
def test_a_backbone_typo_is_reported_before_tensorflow_loads(tmp_path, args, says):
    """Backbone names and their options come from a TF-free catalogue: a typo costs a second, with the closest name."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TF)
    env = _env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-m", "kdefect", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: " + says), r.stderr[-2000:]


def test_backbone_option_replaces_the_config_backbone_before_it_is_checked(tmp_path):
    """`--backbone` overrides the config's backbone: only the one the run would use is checked, and named."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TF)
    (tmp_path / "cfg.yaml").write_text("model:\n  backbone: no_such_net\n")
    env = _env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-m", "kdefect", "fit", "--config", "cfg.yaml", "--backbone", "tiny_cn"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: unknown backbone 'tiny_cn'. Did you mean 'tiny_cnn'?"), r.stderr[-2000:]


def test_kdefect_without_click_says_what_to_install(tmp_path):
    """An edge-only install (no click): `kdefect --help` is one line and exit 2; `kdefect-edge --help` still works."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_CLICK)
    env = _env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-m", "kdefect", "--help"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "pip install 'kdefect[train]'" in r.stderr and "kdefect-edge" in r.stderr
    r = subprocess.run([sys.executable, "-c", "import click"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, "the blocker must hide click, or this test proves nothing"
    r = subprocess.run([sys.executable, "-m", "kdefect.edge.cli", "--help"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "kdefect-edge" in r.stdout


def test_readme_model_loading_snippet_runs_as_written(tmp_path):
    """Every README python block that loads a model with tf_keras, run verbatim next to a real model.keras."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
              if "load_model(" in b]
    assert blocks and all("import tf_keras" in b for b in blocks)
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier

    keras.utils.set_random_seed(0)
    for block in blocks:
        path = re.search(r'load_model\("([^"]+)"', block).group(1)
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        build_classifier(3, backbone="tiny_cnn", input_size=(32, 32), weights="none").save(tmp_path / path)
        r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "(None, 3)" in r.stdout
