"""``predict_parts``: the same rows as ``predict``, in parts, resumable, refusing a different job."""

from __future__ import annotations

import csv

import pytest

from kdefect.engine.batch_predict import JOB_FILE, predict_parts
from kdefect.engine.predictor import predict
from kdefect.errors import DataError


def _read(folder) -> list[dict]:
    return [r for f in sorted(folder.glob("part-*.csv")) for r in csv.DictReader(f.open())]


def test_parts_match_predict_and_resume(fitted_run, synthetic_root, tmp_path):
    images = sorted(synthetic_root.rglob("*.png"))[:23]
    (tmp_path / "in").mkdir()
    for f in images:
        (tmp_path / "in" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "in" / "broken.png").write_bytes(b"nope")
    out = tmp_path / "parts"
    s = predict_parts(fitted_run.path, [tmp_path / "in"], out, part_size=10, batch_size=4)
    assert s["parts"] == 3 and s["images"] == 24 and s["skipped_parts"] == 0
    got = _read(out)
    want = predict(fitted_run.path, [tmp_path / "in"], out=tmp_path / "one.csv")
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert [r["class"] for r in got] == [r["class"] for r in want]
    assert [float(r["score"]) for r in got if r["score"]] == pytest.approx(
        [r["score"] for r in want if r["score"] != ""], abs=1e-4)
    assert [r["error"] != "" for r in got].count(True) == 1  # the broken file is reported, not fatal

    (out / "part-00001.csv").unlink()  # a job killed before its 2nd part
    before = (out / "part-00000.csv").stat().st_mtime_ns
    s = predict_parts(fitted_run.path, [tmp_path / "in"], out, part_size=10, batch_size=4)
    assert s["skipped_parts"] == 2 and s["images"] == 10  # only the missing part was scored
    assert (out / "part-00000.csv").stat().st_mtime_ns == before and _read(out) == got

    (tmp_path / "in" / images[0].name).unlink()  # other inputs: refuse to mix results
    with pytest.raises(DataError, match="another job"):
        predict_parts(fitted_run.path, [tmp_path / "in"], out, part_size=10)
    assert (out / JOB_FILE).is_file()


def test_parquet_parts(fitted_run, synthetic_root, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    predict_parts(fitted_run.path, [synthetic_root / "good"], tmp_path / "pq", part_size=5, fmt="parquet")
    tables = [pq.read_table(f) for f in sorted((tmp_path / "pq").glob("part-*.parquet"))]
    assert len(tables) == 3 and sum(t.num_rows for t in tables) == 12
    assert {"path", "class", "score", "p_good"} <= set(tables[0].column_names)
