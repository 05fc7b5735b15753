"""The CLI is thin: it resolves configs, calls the engine, and turns kdefect errors into one clear line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kdefect import __version__
from kdefect.cli import main


@pytest.fixture()
def cli():
    return CliRunner()


def test_help_and_version(cli):
    r = cli.invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = cli.invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("fit", "evaluate", "predict"):
        assert cmd in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.backbnoe=tiny_cnn"], "Did you mean 'backbone'"),
        (["--backbone", "mobilenetv2"], "Did you mean 'mobilenet_v2'"),
        (["--set", "train.epochs=lots"], "train.epochs: expected an integer"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--set", "data.batch_size=0"], "data.batch_size: 0 is out of range; allowed: >= 1"),
        (["--set", "data.image_size=[0,0]"], "data.image_size"),
        (["--set", "data.channels=2"], "data.channels: '2' is not one of 1, 3"),
        (["--set", "data.split=[1,0,0]"], "data.split: [1.0, 0.0, 0.0] is not allowed"),
        (["--epochs", "-1"], "train.epochs: -1 is out of range; allowed: >= 1"),
        (["--set", "train.learning_rate=.nan"], "train.learning_rate: nan is out of range; allowed: > 0"),
        (["--name", "../../x"], "name: '../../x' is not a plain folder name"),
        (["--backbone", "nope"], "unknown backbone 'nope'"),
        (["--set", "data.batch_size=64"], "fewer than one batch (data.batch_size=64)"),
    ],
)
def test_bad_config_gives_one_clear_line(cli, tmp_path, args, message):
    r = cli.invoke(main, ["-q", "fit", "--set", f"runs_dir={tmp_path}", "--set", "data.synthetic.n_per_class=6",
                          "--set", "data.synthetic.size=32", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not list(tmp_path.rglob("model.keras"))
    assert not list(tmp_path.rglob("config.yaml")), "a failed fit must not leave a run folder"


def test_binary_config_file_gives_one_clear_line(cli, tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(bytes(range(256)) * 4)
    r = cli.invoke(main, ["-q", "fit", "--config", str(p), "--set", f"runs_dir={tmp_path}"])
    assert r.exit_code == 2 and "not UTF-8 text" in r.output and "Traceback" not in r.output


def _image_folder(root, n=6, size=32):
    from PIL import Image

    for ci, cls in enumerate(("good", "scratch")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (size + i, size), (40 * ci + 5 * i, 100, 100)).save(root / cls / f"{i}.png")


def test_bad_images_fail_listing_every_file(cli, tmp_path):
    data = tmp_path / "data"
    _image_folder(data)
    (data / "good" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (data / "scratch" / "notes.txt").write_text("not an image")
    r = cli.invoke(main, ["-q", "fit", "--data", str(data), "--set", f"runs_dir={tmp_path / 'runs'}"])
    assert r.exit_code == 2
    assert "corrupt.png" in r.output and "notes.txt" in r.output
    assert "--on-bad-image skip" in r.output
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("model.keras"))


@pytest.mark.slow
def test_skip_policy_records_skipped_files_in_run_and_metrics(cli, tmp_path):
    data = tmp_path / "data"
    _image_folder(data, n=10)
    (data / "good" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    r = cli.invoke(main, ["-q", "fit", "--data", str(data), "--on-bad-image", "skip", "--name", "skip",
                          "--set", f"runs_dir={tmp_path / 'runs'}", "--set", "data.image_size=[32, 32]",
                          "--epochs", "1", "--set", "data.batch_size=4"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "skip"
    skipped = (run / "skipped.csv").read_text()
    assert "corrupt.jpg" in skipped
    assert json.loads((run / "metrics.json").read_text())["skipped_images"] == 1
    assert "corrupt.jpg" not in (run / "split" / "train.txt").read_text()


def test_single_class_and_empty_class_are_refused(cli, tmp_path):
    from PIL import Image

    one = tmp_path / "one" / "good"
    one.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (16, 16)).save(one / f"{i}.png")
    r = cli.invoke(main, ["-q", "fit", "--data", str(tmp_path / "one"), "--set", f"runs_dir={tmp_path}"])
    assert r.exit_code == 2 and "class" in r.output.lower()
    (tmp_path / "one" / "scratch").mkdir()
    r = cli.invoke(main, ["-q", "fit", "--data", str(tmp_path / "one"), "--set", f"runs_dir={tmp_path}"])
    assert r.exit_code == 2 and "scratch" in r.output


def test_evaluate_and_predict_commands(cli, fitted_run, tmp_path):
    r = cli.invoke(main, ["-q", "evaluate", str(fitted_run.path), "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert 0 <= out["accuracy"] <= 1 and "escape_rate" in out
    assert (tmp_path / "ev" / "metrics.json").is_file()
    test_file = (fitted_run.path / "split" / "test.txt").read_text().splitlines()[0].split("\t")[0]
    from kdefect.data.split import load_split

    first = load_split(fitted_run.path)["test"][0][0]
    assert first.endswith(test_file)
    r = cli.invoke(main, ["predict", str(fitted_run.path / "model.keras"), first, "--out", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.csv").read_text().splitlines()[0].startswith("path,class,score,review,ood,ood_knn,verdict,p_good")  # calibrated by fit


@pytest.mark.slow
def test_readme_quickstart_command_runs_through_the_console_script(tmp_path):
    """The README's second newcomer command, via the installed `kdefect` entry point (fewer epochs)."""
    import subprocess
    import sys
    from pathlib import Path

    config = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    exe = Path(sys.executable).with_name("kdefect")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kdefect"]
    r = subprocess.run([*cmd, "-q", "fit", "--config", str(config), "--set", "train.epochs=2",
                        "--set", f"runs_dir={tmp_path}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    run = Path(r.stdout.strip().splitlines()[-1])
    assert run.name == "quickstart" and (run / "model.keras").is_file() and (run / "metrics.json").is_file()
