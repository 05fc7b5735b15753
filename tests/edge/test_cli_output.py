"""What `kdefect-edge` shows a person: one line per part, a closing summary, one-line errors for bad sources."""

from __future__ import annotations

import gc

import pytest

from kdefect.core.decision_log import read_log
from kdefect.edge.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_interpreters():
    """Free each test's interpreters now: a LiteRT interpreter finalised by a later garbage collection that happens
    to run inside CPython 3.11's AST builder (pytest rewriting a module) made it fail with "AST constructor
    recursion depth mismatch"."""
    yield
    gc.collect()


def _cli(*args) -> int:
    return main([str(a) for a in args])


def test_one_line_per_part_and_a_closing_summary(edge_model, image_folder, bad_files, tmp_path, capsys):
    log = tmp_path / "d.jsonl"
    assert _cli(edge_model, image_folder, bad_files["text"], "--log", log, "--threads", 1, "--review-below", 0.99) == 0
    out, err = capsys.readouterr()
    recs = read_log(log)
    lines = out.splitlines()
    assert len(lines) == len(recs) == 11
    for line, rec in zip(lines, recs):
        assert line.startswith(rec["source"] + "  ")
        if rec.get("error"):
            assert "ERROR" in line and "not an image" in line
        else:
            assert f"  {rec['label']}  {rec['score']:.3f}" in line
            assert ("REVIEW" in line) == rec["review"]
    n_review = sum(bool(r["review"]) for r in recs)
    assert "10 parts classified, 1 errors" in err
    assert "p95" in err and "labels: " in err
    assert f"review {n_review} ({100 * n_review / 10:.1f}%), OOD " in err
    assert n_review > 0


def test_quiet_prints_no_part_lines_but_keeps_the_summary(edge_model, image_folder, tmp_path, capsys):
    assert _cli(edge_model, image_folder, "--log", tmp_path / "d.jsonl", "--threads", 1, "-q") == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "10 parts classified" in err


def test_missing_input_is_a_one_line_error_with_exit_2(edge_model, image_folder, tmp_path, capsys):
    log = tmp_path / "d.jsonl"
    assert _cli(edge_model, image_folder, tmp_path / "nonexist.png", "--log", log) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("kdefect-edge: error: input ") and "nonexist.png" in err[-1]
    assert "does not exist" in err[-1]
    assert not log.exists(), "nothing was classified, so no log is started"


def test_verdict_counts_in_the_summary(edge_model, image_folder, tmp_path, capsys):
    """With an operating point in the sidecar the line shows pass / fail and the summary counts them."""
    import shutil

    from kdefect.utils.io import read_json, write_json

    m = tmp_path / "m" / "model.tflite"
    m.parent.mkdir()
    shutil.copy(edge_model, m)
    side = read_json(edge_model.with_suffix(".json"))
    good = side["labels"][0]
    side.setdefault("thresholds", {})["decision"] = {"good_label": good, "good_min_prob": 0.5}
    write_json(m.with_suffix(".json"), side)
    assert _cli(m, image_folder, "--log", tmp_path / "d.jsonl", "--threads", 1) == 0
    out, err = capsys.readouterr()
    recs = read_log(tmp_path / "d.jsonl")
    verdicts = [r["verdict"] for r in recs]
    assert set(verdicts) <= {"pass", "fail"} and None not in verdicts
    for line, v in zip(out.splitlines(), verdicts):
        assert f"  {v}" in line
    counts = ", ".join(f"{k} {verdicts.count(k)}" for k in sorted(set(verdicts)))
    assert f"verdicts: {counts}" in err


def test_kdefect_evaluate_on_a_tflite_model_says_where_it_wrote_the_metrics(edge_model, synthetic_root):
    """`kdefect evaluate model.tflite` (host CLI) names its metrics.json (by default beside the model)."""
    pytest.importorskip("click")
    from click.testing import CliRunner

    from kdefect.cli import main as kdefect_main

    r = CliRunner().invoke(kdefect_main, ["evaluate", str(edge_model), "--data", str(synthetic_root), "-q"])
    assert r.exit_code == 0, r.output
    where = edge_model.parent / f"{edge_model.stem}_evaluation" / "metrics.json"
    assert f"Metrics written to {where}" in r.stderr and where.is_file()
