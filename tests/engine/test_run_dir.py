"""The run folder: one folder per run even under races, names that stay inside runs_dir, failed runs marked."""

from __future__ import annotations

import multiprocessing
import pathlib
import threading
import time

import pytest

from kdefect.core.run import RunDir
from kdefect.errors import ConfigError, DataError


@pytest.fixture
def slow_mkdir(monkeypatch):
    """Widen the check-then-create window, as a busy machine or a network file system does."""
    real = pathlib.Path.mkdir

    def slow(self, *args, **kwargs):
        time.sleep(0.05)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", slow)


def test_concurrent_creates_in_threads_never_share_a_folder(tmp_path, slow_mkdir):
    n = 16
    barrier = threading.Barrier(n)
    paths: list[str] = []

    def make() -> None:
        barrier.wait()
        paths.append(str(RunDir.create(tmp_path, "x").path))

    threads = [threading.Thread(target=make) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == n
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x"] + [f"x-{i}" for i in range(2, n + 1)])


def _create_in_process(root: str, barrier, out) -> None:
    barrier.wait()
    out.put(str(RunDir.create(root, "x").path))


def test_concurrent_creates_in_processes_never_share_a_folder(tmp_path, slow_mkdir):
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_create_in_process, args=(str(tmp_path), barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    paths = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert len(set(paths)) == n


def test_create_with_exist_ok_reuses_the_folder(tmp_path):
    a = RunDir.create(tmp_path, "x")
    assert RunDir.create(tmp_path, "x", exist_ok=True).path == a.path


@pytest.mark.parametrize("name", ["../../x", "../x", "a/b", "/abs", ".", "..", ".hidden", ""])
def test_a_name_cannot_leave_runs_dir(tmp_path, name):
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="plain folder name"):
        RunDir.create(runs, name)
    assert [p for p in tmp_path.rglob("*") if p != runs] == []


def test_a_failed_run_is_marked_and_refused(tmp_path):
    run = RunDir.create(tmp_path, "x")
    (run.path / "config.yaml").write_text("task: classify\n")
    with pytest.raises(ValueError), run.failure_recorded():
        raise ValueError("unknown backbone 'nope'")
    assert run.failure() == {"error": "unknown backbone 'nope'", "type": "ValueError"}
    with pytest.raises(DataError, match="failed .*unknown backbone"):
        RunDir.open(run.path)
    assert RunDir.open(run.path, allow_failed=True).path == run.path


def test_an_interrupted_run_is_not_marked_failed(tmp_path):
    run = RunDir.create(tmp_path, "x")
    with pytest.raises(KeyboardInterrupt), run.failure_recorded():
        raise KeyboardInterrupt
    assert run.failure() is None
