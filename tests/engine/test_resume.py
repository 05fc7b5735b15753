"""``fit --resume``: a run killed mid-way continues in its folder and ends like an uninterrupted one."""

from __future__ import annotations

import csv
import json

import pytest

from kdefect.engine.resume import ResumeState
from kdefect.errors import ConfigError, DataError

FAST = ("data.synthetic.n_per_class=20", "data.synthetic.size=32", "data.image_size=[32, 32]",
        "train.epochs=5", "train.steps_per_epoch=3", "trust.calibrate=false", "train.patience=10",
        "train.snapshot_every_s=0")  # a snapshot after every epoch: the crash points below are exact


class Crash(RuntimeError):
    """Stands in for a kill: raised right after an epoch's snapshot."""


def _crash_after(monkeypatch, n: int) -> None:
    orig = ResumeState.on_epoch_end

    def crashing(self, epoch, logs=None):
        orig(self, epoch, logs)
        if epoch + 1 == n:
            raise Crash(f"simulated crash after epoch {n}")

    monkeypatch.setattr(ResumeState, "on_epoch_end", crashing)


def _history(path):
    return list(csv.DictReader((path / "history.csv").read_text().splitlines()))


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, make_config):
    """A run killed after epoch 2 of 5: its folder and the history it had written."""
    from kdefect.engine import fit

    mp = pytest.MonkeyPatch()
    _crash_after(mp, 2)
    tmp = tmp_path_factory.mktemp("resume")
    cfg = make_config(tmp, *FAST)
    with pytest.raises(Crash):
        fit(cfg, quiet=True)
    mp.undo()
    return tmp / "tiny", cfg


def test_refuses_a_different_config_and_names_the_keys(crashed, make_config):
    from kdefect.engine import fit

    path, _ = crashed
    other = make_config(path.parent, *FAST, "train.epochs=7", "train.learning_rate=0.01")
    with pytest.raises(ConfigError, match=r"train\.epochs, train\.learning_rate"):
        fit(other, resume=path, quiet=True)


def test_cli_refuses_changed_options(crashed):
    from click.testing import CliRunner

    from kdefect.cli import main

    path, _ = crashed
    res = CliRunner().invoke(main, ["fit", "--resume", str(path), "--epochs", "9"])
    assert res.exit_code == 2 and "differs from the run's config.yaml in train.epochs." in res.output


def test_resumed_run_ends_like_an_uninterrupted_one(crashed):
    from kdefect.core.run import RunDir
    from kdefect.engine import fit

    path, cfg = crashed
    before = _history(path)
    assert [r["epoch"] for r in before] == ["1", "2"]
    state = json.loads((path / "resume" / "state.json").read_text())
    assert state["epoch"] == 2 and not state["done"]

    run = fit(cfg, resume=path, quiet=True)  # the same config (its "auto" values unresolved) is accepted
    assert run.path == path
    after = _history(path)
    assert [r["epoch"] for r in after] == ["1", "2", "3", "4", "5"]
    assert after[:2] == before, "history.csv must be continued, not rewritten"
    training = json.loads((path / "metrics.json").read_text())["training"]
    assert training["epochs_run"] == 5 and training["resumed_at_epoch"] == 2
    assert training["optimizer_steps"] == 5 * 3  # the optimizer's iteration count continued from 6
    assert training["train_seconds"] >= state["train_seconds"]  # time already spent counts
    assert not (path / "resume").exists()
    assert RunDir.open(path).verify_manifest() == []

    with pytest.raises(DataError, match="complete"):
        fit(None, resume=path, quiet=True)


def test_restores_optimizer_and_best_checkpoint_state(tmp_path, make_config, monkeypatch):
    """Right after the restore, the optimizer moments and the selection state are the snapshot's."""
    from kdefect.engine import fit

    cfg = make_config(tmp_path, *FAST, "train.epochs=3", "train.lr_schedule=plateau")
    _crash_after(monkeypatch, 1)
    with pytest.raises(Crash):
        fit(cfg, quiet=True)
    monkeypatch.undo()
    saved = json.loads((tmp_path / "tiny" / "resume" / "state.json").read_text())
    seen = {}
    orig = ResumeState.restore_model

    def spy(self, model, phase, lr, schedule):
        orig(self, model, phase, lr, schedule)
        if phase == 0:
            seen["iterations"] = int(model.optimizer.iterations.numpy())
            seen["best"] = self.stateful["best_checkpoint"].best

    monkeypatch.setattr(ResumeState, "restore_model", spy)
    fit(None, resume=tmp_path / "tiny", quiet=True)
    assert seen["iterations"] == 3
    assert seen["best"] == pytest.approx(saved["callbacks"]["best_checkpoint"]["best"])


def test_snapshots_are_spaced_in_time_and_a_crash_resumes_from_the_last_one(tmp_path, make_config, monkeypatch):
    """``train.snapshot_every_s``: a snapshot at the first epoch end that many seconds after the last (here one
    clock tick per epoch, every 2): a crash after epoch 5 resumes after epoch 4, and history.csv's fifth row, which
    no snapshot covers, is trained again."""
    from kdefect.engine import fit

    cfg = make_config(tmp_path, *FAST, "train.epochs=6", "train.snapshot_every_s=2")
    ticks, snapshots = [0.0], []
    init, end = ResumeState.__init__, ResumeState.on_epoch_end

    def ticking_init(self, *a, **k):
        init(self, *a, clock=lambda: ticks[0], **k)

    def ticking_end(self, epoch, logs=None):
        ticks[0] += 1.0
        end(self, epoch, logs)
        snapshots.append(json.loads((self.folder / "state.json").read_text())["epoch"] if self.folder.exists() else 0)
        if epoch + 1 == 5:
            raise Crash("simulated crash after epoch 5")

    monkeypatch.setattr(ResumeState, "__init__", ticking_init)
    monkeypatch.setattr(ResumeState, "on_epoch_end", ticking_end)
    with pytest.raises(Crash):
        fit(cfg, quiet=True)
    monkeypatch.undo()
    path = tmp_path / "tiny"
    assert snapshots == [0, 2, 2, 4, 4]
    before = _history(path)
    assert len(before) == 5
    best = json.loads((path / "resume" / "state.json").read_text())["callbacks"]["best_checkpoint"]
    if best["best_epoch"] >= 0:  # the best epoch's checkpoint was flushed with the snapshot that names it
        assert (path / "checkpoints" / "best.keras").is_file()
    fit(None, resume=path, quiet=True)
    after = _history(path)
    assert [r["epoch"] for r in after] == ["1", "2", "3", "4", "5", "6"]
    assert after[:4] == before[:4]
    training = json.loads((path / "metrics.json").read_text())["training"]
    assert training["resumed_at_epoch"] == 4 and training["epochs_run"] == 6
    assert training["optimizer_steps"] == 6 * 3


def test_nothing_to_resume_before_the_first_epoch(tmp_path, make_config):
    from kdefect.engine import fit
    from kdefect.engine.trainer import prepare_run

    cfg = make_config(tmp_path, *FAST)
    run, _, _ = prepare_run(cfg)
    with pytest.raises(DataError, match="no resume point"):
        fit(None, resume=run.path, quiet=True)


def test_a_crash_after_training_resumes_straight_to_evaluation(tmp_path, make_config, monkeypatch):
    from kdefect.engine import evaluator, fit

    cfg = make_config(tmp_path, *FAST, "train.epochs=2")

    def boom(*a, **k):
        raise Crash("killed during evaluation")

    monkeypatch.setattr(evaluator, "evaluate_model", boom)
    with pytest.raises(Crash):
        fit(cfg, quiet=True)
    monkeypatch.undo()
    state = json.loads((tmp_path / "tiny" / "resume" / "state.json").read_text())
    assert state["done"] and state["epoch"] == 2
    fit(None, resume=tmp_path / "tiny", quiet=True)
    training = json.loads((tmp_path / "tiny" / "metrics.json").read_text())["training"]
    assert training["epochs_run"] == 2 and training["resumed_at_epoch"] == 2
    assert training["optimizer_steps"] == 2 * 3
    assert len(_history(tmp_path / "tiny")) == 2
