"""Multi-worker training: two real worker processes on 127.0.0.1 against one process with the same global batch.

Why weights match only within a tolerance: MultiWorkerMirroredStrategy sums the
gradients of the two half-batches (each worker's share of one global batch), so
the step is mathematically the single-process step, but (a) the tiny CNN's
BatchNormalization normalises each half-batch with its own statistics (Keras
BatchNorm is not synchronised across replicas) and (b) the all-reduce adds in a
different order.  Both are small over a few steps: we check the loss curves
agree within 5 % per epoch and all weights within 5 % (relative L2 norm of
the difference); another initialisation is > 50 % away (see
test_weights_tolerance_is_meaningful).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdefect.engine.multiworker import worker_role
from kdefect.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240
REL_TOL = 0.05  # ||w2 - w1|| / ||w1|| over all weights
OVERRIDES = ["data.synthetic.n_per_class=24", "data.image_size=[32, 32]", "data.batch_size=16", "data.cache=memory",
             "model.backbone=tiny_cnn", "model.dropout=0.0", "train.epochs=3", "train.optimizer=sgd",
             "train.learning_rate=0.01", "train.lr_schedule=constant", "train.monitor=val_loss",
             "trust.calibrate=false", "name=mw"]
SCRIPT = """
import sys
from kdefect.config import load_config
from kdefect.engine import fit
fit(load_config(None, sys.argv[1:]), quiet=True)
"""
KILLED = 17
# the whole job dies right after epoch 1's snapshot on every worker (a preempted node, a power cut)
CRASH_SCRIPT = f"""
import os
from kdefect.engine import resume as R
_save = R.ResumeState.save
def save(self, epoch, **kw):
    _save(self, epoch, **kw)
    if epoch == 1:
        os._exit({KILLED})
R.ResumeState.save = save
""" + SCRIPT
RESUME_SCRIPT = """
import sys
from kdefect.engine import fit
fit(None, quiet=True, resume=sys.argv[1])
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _weights(run: Path) -> list[np.ndarray]:
    from kdefect.keras import keras

    return keras.models.load_model(run / "model.keras", compile=False).get_weights()


def _rel_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """||a - b|| / ||b|| over all weights as one vector (tiny bias tensors alone would be noise)."""
    flat = [np.concatenate([w.ravel() for w in ws]) for ws in (a, b)]
    return float(np.linalg.norm(flat[0] - flat[1]) / np.linalg.norm(flat[1]))


def _losses(run: Path) -> np.ndarray:
    import csv

    return np.asarray([float(r["loss"]) for r in csv.DictReader((run / "history.csv").open())])


def _launch(jobs: list[tuple[str, list[str], dict[str, str] | None, Path]], cwd: Path) -> list[tuple[int, str]]:
    """Run (script, args, TF_CONFIG or None, TMPDIR) processes side by side; (exit code, output) each.

    Every process is reaped, whatever happened: a hung collective must not outlive the test.
    """
    procs = []
    try:
        for script, args, tf_config, tmpdir in jobs:
            env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmpdir))
            env.pop("TF_CONFIG", None)
            if tf_config is not None:
                env["TF_CONFIG"] = json.dumps(tf_config)
            procs.append(subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=cwd,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def _tf_configs() -> list[dict]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    return [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)]


@pytest.fixture(scope="module")
def data_args(synthetic_cache) -> list[str]:
    from kdefect.config import SyntheticConfig
    from kdefect.data.synthetic import materialize_synthetic

    data = materialize_synthetic(SyntheticConfig(n_per_class=24, size=32, seed=0, contrast=2.5), "folder",
                                 synthetic_cache)
    return [*OVERRIDES, f"data.source={data}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_args):
    """(two-worker chief run, single-process run, per-worker temp folders)."""
    tmp = tmp_path_factory.mktemp("mw")
    scratch = [tmp / f"tmp{i}" for i in range(3)]
    for d in scratch:
        d.mkdir()
    multi = [*data_args, f"runs_dir={tmp / 'multi'}", "train.strategy=multi_worker"]
    jobs = [(SCRIPT, multi, c, scratch[i]) for i, c in enumerate(_tf_configs())]
    jobs.append((SCRIPT, [*data_args, f"runs_dir={tmp / 'single'}"], None, scratch[2]))  # the reference, alongside
    for i, (code, out) in enumerate(_launch(jobs, tmp)):
        assert code == 0, f"process {i} failed:\n{out[-3000:]}"
    return tmp / "multi", tmp / "single" / "mw", scratch


@pytest.mark.slow
def test_only_the_chief_writes_a_complete_run(runs):
    from kdefect.core.run import RunDir

    multi, _, scratch = runs
    assert [p.name for p in multi.iterdir()] == ["mw"]  # one run: the worker made no second folder
    run = RunDir(multi / "mw")
    for rel in ["config.yaml", "split/test.txt", "model.keras", "checkpoints/best.keras", "history.csv",
                "metrics.json", "manifest.json", "saved_model/saved_model.pb"]:
        assert (run.path / rel).exists(), rel
    assert run.verify_manifest() == []
    assert not [p for p in run.path.rglob("*") if "kdefect-worker" in str(p) or ".tmp" in p.name]
    assert not list(scratch[1].glob("kdefect-worker1-*")), "the worker's temporary run folder was left behind"
    assert len(_losses(run.path)) == 3


@pytest.mark.slow
def test_two_workers_match_one_process(runs):
    multi, single, _ = runs
    l2, l1 = _losses(multi / "mw"), _losses(single)
    np.testing.assert_allclose(l2, l1, rtol=0.05)
    assert l2[-1] < l2[0]
    best = [json.loads((r / "metrics.json").read_text())["training"]["best_epoch"] for r in (multi / "mw", single)]
    assert best[0] == best[1]  # model.keras holds the best epoch's weights: the same epoch in both
    assert _rel_diff(_weights(multi / "mw"), _weights(single)) <= REL_TOL


@pytest.mark.slow
def test_weights_tolerance_is_meaningful(runs):
    """A run with another seed is far outside the tolerance, so the match above says something."""
    from kdefect.keras import keras
    from kdefect.tasks.classify import build_classifier

    _, single, _ = runs
    keras.utils.set_random_seed(1)
    other = build_classifier(5, "tiny_cnn", (32, 32), dropout=0.0).get_weights()
    assert _rel_diff(other, _weights(single)) > 10 * REL_TOL


def test_tf_config_roles():
    w = {"worker": ["a:1", "b:2"]}
    assert worker_role(json.dumps({"cluster": w, "task": {"type": "worker", "index": 0}})).is_chief
    assert not worker_role(json.dumps({"cluster": w, "task": {"type": "worker", "index": 1}})).is_chief
    c = {"chief": ["c:0"], **w}
    assert not worker_role(json.dumps({"cluster": c, "task": {"type": "worker", "index": 0}})).is_chief
    assert worker_role(json.dumps({"cluster": c, "task": {"type": "chief", "index": 0}})).num_workers == 3
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        worker_role("")
    with pytest.raises(ConfigError, match="ps"):
        worker_role(json.dumps({"cluster": w, "task": {"type": "ps", "index": 0}}))


def test_multi_worker_without_tf_config_is_a_config_error(monkeypatch):
    from kdefect.engine.strategy import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multi_worker")


def test_agreed_time_budget_stops_at_epoch_end():
    """One replica here; with several, ``agree_any`` is the all-reduce every worker joins at epoch end."""
    from kdefect.engine.multiworker import AgreedTimeBudget, agree_any
    from kdefect.keras import keras, tf

    strategy = tf.distribute.get_strategy()
    assert agree_any(strategy, True) and not agree_any(strategy, False)
    model = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    budget = AgreedTimeBudget(0.0, strategy)
    hist = model.fit(np.zeros((8, 2)), np.zeros(8), batch_size=2, epochs=5, verbose=0, callbacks=[budget])
    assert budget.exhausted and len(hist.history["loss"]) == 1  # the whole first epoch ran, then all stop


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, data_args):
    """A two-worker job killed after epoch 1, then restarted with ``fit --resume`` on every worker:
    (the chief's run folder, the worker's TMPDIR)."""
    tmp = tmp_path_factory.mktemp("mw_resume")
    scratch = [tmp / f"tmp{i}" for i in range(2)]
    for d in scratch:
        d.mkdir()
    multi = [*data_args, f"runs_dir={tmp / 'multi'}", "train.strategy=multi_worker"]
    for i, (code, out) in enumerate(_launch([(CRASH_SCRIPT, multi, c, scratch[i])
                                             for i, c in enumerate(_tf_configs())], tmp)):
        assert code == KILLED, f"worker {i} was not killed after epoch 1 (exit {code}):\n{out[-3000:]}"
    run = tmp / "multi" / "mw"
    assert json.loads((run / "resume" / "state.json").read_text())["epoch"] == 1
    assert not (run / "manifest.json").exists()
    # the restarted job: new ports, the same run folder (shared storage) on every worker
    for i, (code, out) in enumerate(_launch([(RESUME_SCRIPT, [str(run)], c, scratch[i])
                                             for i, c in enumerate(_tf_configs())], tmp)):
        assert code == 0, f"worker {i} failed to resume:\n{out[-3000:]}"
    return run, scratch[1]


@pytest.mark.slow
def test_a_killed_multi_worker_job_resumes_on_every_worker(resumed, runs):
    from kdefect.core.run import RunDir

    run, worker_tmp = resumed
    assert RunDir(run).verify_manifest() == []
    assert not (run / "resume").exists()  # complete: the snapshot is gone
    assert not [p for p in run.rglob("*") if "kdefect-worker" in str(p) or ".tmp" in p.name]
    # the crashed worker's folder stays (it was killed); the resumed worker removed its own
    assert len(list(worker_tmp.glob("kdefect-worker1-*"))) == 1
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert training["resumed_at_epoch"] == 1 and training["epochs_run"] == 3
    # the resumed curve follows the uninterrupted two-worker run: epoch 1 is the same computation, and epochs
    # 2-3 differ only in the shuffle order (a resumed run reshuffles with seed + epochs done)
    resumed_loss, straight = _losses(run), _losses(runs[0] / "mw")
    assert len(resumed_loss) == 3
    np.testing.assert_allclose(resumed_loss[0], straight[0], rtol=1e-3)
    np.testing.assert_allclose(resumed_loss, straight, rtol=0.05)
