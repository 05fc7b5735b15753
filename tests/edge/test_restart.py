"""A restart with the same log continues where it stopped: no part decided twice, review folder and log agree."""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest

from kdefect.core.decision_log import DecisionLog, read_log
from kdefect.edge.classifier import EdgeClassifier
from kdefect.edge.cli import main
from kdefect.edge.review import ReviewQueue
from kdefect.edge.sources import iter_files
from kdefect.edge.stream import run_stream

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _cli(*args) -> int:
    return main([str(a) for a in args])


def _sources(log):
    return [r["source"] for r in read_log(log)]


def test_restart_skips_parts_already_logged(edge_model, image_folder, tmp_path):
    log, summary = tmp_path / "d.jsonl", tmp_path / "s.json"
    assert _cli(edge_model, image_folder, "--log", log, "--max-images", 4, "-q") == 0
    assert _cli(edge_model, image_folder, "--log", log, "--summary", summary, "-q") == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 10, "a restart must not decide a logged part again"
    assert sorted(_sources(log)) == sorted(str(p) for p in image_folder.iterdir())
    s = json.loads(summary.read_text())
    assert s["already_logged"] == 4 and s["decisions"] + s["errors"] == 6


def test_a_changed_file_is_a_new_part(edge_model, image_folder, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(image_folder.iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    log = tmp_path / "d.jsonl"
    assert _cli(edge_model, folder, "--log", log, "-q") == 0
    again = sorted(folder.iterdir())[0]
    st = again.stat()
    os.utime(again, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the name reused by a new part
    assert _cli(edge_model, folder, "--log", log, "-q") == 0
    assert len(log.read_text().splitlines()) == 4
    assert len(read_log(log)) == 4


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["before_record", "after_record"])
def test_review_folder_agrees_with_the_log_after_a_crash(edge_model, image_folder, tmp_path, monkeypatch, where):
    """A crash between filing an image for review and its log record (either order), then a restart."""
    log, rev = tmp_path / "d.jsonl", tmp_path / "review"
    clf = EdgeClassifier(edge_model, review_below=1.01)  # every part goes to review
    n = {"records": 0}
    if where == "before_record":
        orig = DecisionLog.write

        def write(self, rec):
            if n["records"] == 2:
                raise Crash("power cut before the 3rd record")
            n["records"] += 1
            orig(self, rec)

        monkeypatch.setattr(DecisionLog, "write", write)
    else:
        orig_commit = ReviewQueue.commit

        def commit(staged, dest):
            n["records"] += 1
            if n["records"] == 3:
                raise Crash("power cut after the 3rd record")
            return orig_commit(staged, dest)

        monkeypatch.setattr(ReviewQueue, "commit", staticmethod(commit))
    with pytest.raises(Crash), DecisionLog(log) as dlog:
        run_stream(clf, iter_files([image_folder], threading.Event()), dlog, threading.Event(),
                   review=ReviewQueue(rev), prefetch=0)
    monkeypatch.undo()
    with DecisionLog(log) as dlog:
        s = run_stream(clf, iter_files([image_folder], threading.Event()), dlog, threading.Event(),
                       review=ReviewQueue(rev), prefetch=0)
    recs = read_log(log)
    assert len(log.read_text().splitlines()) == len(recs) == 10
    assert s.already_logged == (2 if where == "before_record" else 3)
    files = sorted(str(p) for p in rev.iterdir())
    assert files == sorted(r["review_path"] for r in recs), "every review image has its record and vice versa"


def test_read_log_skips_torn_lines_and_repeats(tmp_path, caplog):
    rec = {"time": "t", "source": "/in/a.png", "label": "good", "score": 0.9, "file_size": 10, "file_mtime_ns": 5}
    other = {**rec, "source": "/in/b.png"}
    log = tmp_path / "d.jsonl"
    log.write_text("\n".join([json.dumps(rec), '{"time": "t", "source": "/in/x.p', json.dumps(rec),
                              json.dumps(other), json.dumps({**rec, "file_mtime_ns": 6})]) + "\n")
    with caplog.at_level(logging.WARNING):
        recs = read_log(log)
    assert [(r["source"], r["file_mtime_ns"]) for r in recs] == [("/in/a.png", 5), ("/in/b.png", 5),
                                                                 ("/in/a.png", 6)]
    text = caplog.text
    assert "torn" in text and "1 repeated record" in text
