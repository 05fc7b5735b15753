"""`kdefect-edge` as a separate process: no TensorFlow, watched folder, SIGTERM leaves a complete log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NO_TF_CHILD = r"""
import json, sys
from kdefect.edge.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'keras_cv', 'jax',
                                                             'torch', 'tensorflow_model_optimization'))
print(json.dumps({'rc': rc, 'heavy': heavy, 'kdefect': sorted(m for m in sys.modules if m.startswith('kdefect'))}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def _wait_for(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_classifying_a_folder_never_imports_tensorflow(edge_model, image_folder, tmp_path):
    log = tmp_path / "d.jsonl"
    out = subprocess.run([sys.executable, "-c", NO_TF_CHILD, str(edge_model), str(image_folder), "--log", str(log),
                          "-q"], capture_output=True, text=True, env=_env(), timeout=120, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    assert res["heavy"] == [], f"the edge runtime imported {res['heavy']}"
    assert "kdefect.keras" not in res["kdefect"] and all(not m.startswith("kdefect.export") for m in res["kdefect"])
    assert len(_lines(log)) == 10


def test_watched_folder_picks_up_new_files_and_sigterm_leaves_a_complete_log(edge_model, image_folder, tmp_path):
    watch, log, summary = tmp_path / "incoming", tmp_path / "d.jsonl", tmp_path / "summary.json"
    watch.mkdir()
    srcs = sorted(image_folder.iterdir())
    shutil.copy(srcs[0], watch / srcs[0].name)  # a backlog file, there before the start
    proc = subprocess.Popen([sys.executable, "-m", "kdefect.edge.cli", str(edge_model), "--watch", str(watch),
                             "--log", str(log), "--poll", "0.1", "--settle", "1.0", "--summary", str(summary), "-q"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: len(_lines(log)) >= 1), "the backlog file was not classified"
        # a file that arrives slowly: written in two halves; it must be read only once complete
        data = srcs[1].read_bytes()
        with open(watch / srcs[1].name, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.3)  # a stall shorter than --settle
            fh.write(data[len(data) // 2:])
        for p in srcs[2:6]:
            tmp = watch / f".{p.name}.part"  # hidden while copied, then renamed: the usual safe drop
            shutil.copy(p, tmp)
            tmp.rename(watch / p.name)
        (watch / "readme.txt").write_text("not an image")
        assert _wait_for(lambda: len(_lines(log)) >= 7), f"only {len(_lines(log))} records"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    recs = _lines(log)  # every line parses (json.loads above would raise otherwise)
    names = [Path(r["source"]).name for r in recs]
    assert sorted(names) == sorted([p.name for p in srcs[:6]] + ["readme.txt"])
    assert all(r.get("error") is None for r in recs if r["source"].endswith(".png")), "a half-written file was read"
    assert json.loads(summary.read_text())["stopped_by_signal"] is True
    assert log.read_bytes().endswith(b"\n")


def test_sigterm_in_the_middle_of_a_folder(edge_model, image_folder, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    for i in range(300):
        for p in sorted(image_folder.iterdir()):
            os.link(p, big / f"{i:03d}_{p.name}")
    log = tmp_path / "d.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "kdefect.edge.cli", str(edge_model), str(big), "--log", str(log),
                             "--threads", "1", "-q"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert _wait_for(lambda: log.exists() and log.stat().st_size > 0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    raw = log.read_bytes()
    assert raw.endswith(b"\n")
    recs = [json.loads(line) for line in raw.decode().splitlines()]
    assert 1 <= len(recs) < 3000 and all(r["label"] for r in recs)
    assert "stopped by signal" in err
