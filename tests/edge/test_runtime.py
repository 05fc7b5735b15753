"""The runtime in-process: same decisions as a bare interpreter and as `kdefect evaluate`, integrity, bad input."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from kdefect.core.decision_log import DecisionLog, read_log
from kdefect.edge.classifier import EdgeClassifier
from kdefect.edge.cli import main
from kdefect.edge.interpreter import TFLiteRunner
from kdefect.edge.preprocess import load_image, prepare
from kdefect.edge.review import ReviewQueue
from kdefect.edge.sources import camera, iter_files
from kdefect.edge.stream import run_stream
from kdefect.errors import EdgeError, ModelIntegrityError

# LiteRT 2.3 Delegate.__del__ raises when load_delegate failed (no libedgetpu): noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _cli(*args) -> int:
    return main([str(a) for a in args])


def test_decisions_equal_a_bare_tflite_runner(edge_model, image_folder, tmp_path):
    log = tmp_path / "d.jsonl"
    assert _cli(edge_model, image_folder, "--log", log, "--threads", 1, "-q") == 0
    recs = read_log(log)
    runner = TFLiteRunner(edge_model)
    labels = list(EdgeClassifier(edge_model).labels)
    assert len(recs) == 10
    for r in recs:
        ref = runner(prepare(load_image(r["source"]), runner.input_shape[1:3]))[0].reshape(-1)
        assert r["label"] == labels[int(np.argmax(ref))]
        assert r["probs"] == {k: round(float(v), 6) for k, v in zip(labels, ref)}
        assert set(r) >= {"time", "source", "label", "score", "probs", "review", "ood", "latency_ms", "model_sha256"}
    assert len({r["label"] for r in recs}) > 1, "the fixture model should not be constant"


def test_decisions_match_kdefect_evaluate(edge_model, synthetic_root, tmp_path):
    """Decision for decision against the export helper's evaluation path (run_tflite on pipeline-loaded images),
    and the same accuracy as `kdefect evaluate model.tflite --data FOLDER`."""
    ev = pytest.importorskip("kdefect.export.evaluate")
    from kdefect.data.pipeline import load_images

    files = sorted(synthetic_root.rglob("*.png"))
    clf = EdgeClassifier(edge_model)
    probs = ev.run_tflite(edge_model, load_images([str(f) for f in files], clf.size, clf.channels))
    mine = [clf.classify(f).label for f in files]
    assert mine == [clf.labels[i] for i in probs.argmax(1)]
    res = ev.evaluate_tflite(edge_model, data=str(synthetic_root), threads=(1,), latency_images=2, out=tmp_path / "ev")
    truth = [f.parent.name for f in files]
    assert res["n"] == len(files)
    assert res["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(mine, truth)]))


@pytest.mark.parametrize("damage", ["byte", "truncate"])
def test_tampered_model_is_refused(model_copy, image_folder, tmp_path, capsys, damage):
    data = bytearray(model_copy.read_bytes())
    if damage == "byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) - 100]
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match its sidecar"):
        EdgeClassifier(model_copy)
    log = tmp_path / "d.jsonl"
    assert _cli(model_copy, image_folder, "--log", log) == 2
    err = capsys.readouterr().err
    assert "does not match its sidecar" in err and "changed or truncated" in err
    assert not log.exists() or log.read_text() == ""


def test_missing_sidecar_is_refused(model_copy, capsys):
    model_copy.with_suffix(".json").unlink()
    assert _cli(model_copy, "--info") == 2
    assert "no sidecar" in capsys.readouterr().err


def test_bad_files_become_error_records_and_the_loop_continues(edge_model, bad_files, image_folder, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in [*bad_files.values(), *sorted(image_folder.iterdir())[:3]]:
        (folder / p.name).write_bytes(p.read_bytes())
    log = tmp_path / "d.jsonl"
    assert _cli(edge_model, folder, "--log", log, "--expect-size", "32x32", "-q") == 0
    recs = {r["source"].rsplit("/", 1)[-1]: r for r in read_log(log)}
    assert len(recs) == 9
    reasons = {name: r.get("error") for name, r in recs.items()}
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.txt"]
    assert "empty" in reasons["empty.png"]
    assert "grayscale" in reasons["gray.png"]
    assert "alpha" in reasons["rgba.png"]
    assert "expects 32x32" in reasons["small.png"]
    good = [r for r in recs.values() if r.get("error") is None]
    assert len(good) == 3 and all(r["label"] for r in good)
    assert all(r["label"] is None and r["model_sha256"] for r in recs.values() if r.get("error"))


def test_review_folder_and_sidecar_threshold(edge_model, image_folder, tmp_path):
    log, rev = tmp_path / "d.jsonl", tmp_path / "review"
    assert _cli(edge_model, image_folder, "--log", log, "--review-dir", rev, "--review-below", 1.01, "-q") == 0
    recs = read_log(log)
    assert all(r["review"] for r in recs)
    files = sorted(rev.iterdir())
    assert len(files) == len(recs) == 10
    src = {r["review_path"]: r["source"] for r in recs}
    for f in files:  # hard links (same file system): same content, no copy
        assert f.read_bytes() == Path(src[str(f)]).read_bytes() and f.stat().st_nlink == 2
    log2 = tmp_path / "d2.jsonl"
    assert _cli(edge_model, image_folder, "--log", log2, "--review-dir", tmp_path / "r2", "--review-below", 0, "-q") == 0
    assert not any(r["review"] for r in read_log(log2)) and not any((tmp_path / "r2").iterdir())


def test_review_copy_mode(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(b"x" * 10)
    q = ReviewQueue(tmp_path / "rev", mode="copy")
    dest = q.add_file(src, "scratch", 0.41)
    assert dest.read_bytes() == src.read_bytes() and dest.stat().st_ino != src.stat().st_ino
    assert "scratch_0.410_a" in dest.name
    frame = q.add_frame(np.zeros((8, 8, 3), np.uint8), "camera:0#1", "spot", 0.2)
    assert frame.suffix == ".png" and frame.stat().st_size > 0


def test_edgetpu_falls_back_with_one_warning_or_fails_when_required(edge_model, image_folder, tmp_path, caplog,
                                                                    capsys):
    log = tmp_path / "d.jsonl"
    assert _cli(edge_model, image_folder, "--log", log, "--edgetpu") == 0
    warnings = [r for r in caplog.records if "Edge TPU delegate" in r.getMessage()]
    assert len(warnings) == 1 and "running on the CPU" in warnings[0].getMessage()
    assert len(read_log(log)) == 10
    assert _cli(edge_model, image_folder, "--log", tmp_path / "e.jsonl", "--require-edgetpu") == 2
    err = capsys.readouterr().err
    assert "libedgetpu.so.1" in err and "--require-edgetpu" in err


def test_interpreter_fallback_order_and_forced_backend(monkeypatch):
    from kdefect.edge import interpreter

    monkeypatch.setenv(interpreter.BACKEND_ENV, "ai_edge_litert")
    assert interpreter.interpreter_backend() == "ai_edge_litert"
    monkeypatch.setenv(interpreter.BACKEND_ENV, "tensorflow")
    with pytest.raises(EdgeError, match="not one of"):
        interpreter.interpreter_backend()
    monkeypatch.delenv(interpreter.BACKEND_ENV)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # LiteRT missing
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    fake = types.ModuleType("tflite_runtime.interpreter")
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert interpreter._modules() == (fake, "tflite_runtime")
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(EdgeError, match="pip install ai-edge-litert"):
        interpreter.interpreter_backend()


def test_sidecar_for_another_model_is_refused(model_copy):
    import json

    sc = json.loads(model_copy.with_suffix(".json").read_text())
    sc["input"]["size"] = [64, 64]
    model_copy.with_suffix(".json").write_text(json.dumps(sc))
    with pytest.raises(ModelIntegrityError, match="belongs to another model"):
        EdgeClassifier(model_copy)


def test_camera_source_with_a_fake_opencv(edge_model, tmp_path, monkeypatch):
    frames = [np.full((40, 40, 3), v, np.uint8) for v in (10, 120, 250)]

    class Cap:
        def __init__(self, index):
            self.i = 0

        def isOpened(self):
            return True

        def read(self):
            self.i += 1
            return (True, frames[self.i - 1]) if self.i <= len(frames) else (False, None)

        def release(self):
            pass

    cv2 = types.SimpleNamespace(VideoCapture=Cap, COLOR_BGR2RGB=4, cvtColor=lambda f, code: f[..., ::-1])
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    clf = EdgeClassifier(edge_model, review_below=1.01)
    stop = threading.Event()
    with DecisionLog(tmp_path / "d.jsonl") as log:
        s = run_stream(clf, camera(0, stop), log, stop, review=ReviewQueue(tmp_path / "rev"), max_items=3)
    recs = read_log(tmp_path / "d.jsonl")
    assert s.decisions == 3 and [r["source"] for r in recs] == ["camera:0#1", "camera:0#2", "camera:0#3"]
    assert len(list((tmp_path / "rev").glob("*.png"))) == 3


@pytest.mark.parametrize("prefetch", [0, 4])
def test_stop_event_ends_the_stream_after_the_current_record(edge_model, image_folder, tmp_path, prefetch):
    clf = EdgeClassifier(edge_model)
    stop = threading.Event()

    class StopAfterTwo(DecisionLog):
        def write(self, record):
            super().write(record)
            if self.count == 2:
                stop.set()

    with StopAfterTwo(tmp_path / "d.jsonl") as log:
        s = run_stream(clf, iter_files([image_folder], stop), log, stop, prefetch=prefetch)
    assert s.stopped_by_signal and s.decisions == 2 and len(read_log(tmp_path / "d.jsonl")) == 2
