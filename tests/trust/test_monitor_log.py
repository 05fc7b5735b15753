"""``kdefect monitor`` reads a decision log leniently: each part once, a torn line skipped with a warning."""

from __future__ import annotations

import json
import logging

from kdefect.trust.monitor import read_decisions


def _rec(source: str, mtime: int = 1, **kw) -> str:
    return json.dumps({"time": "t", "source": source, "label": "good", "score": 0.9, "review": False,
                       "file_size": 100, "file_mtime_ns": mtime, **kw})


def test_repeated_parts_count_once_and_a_torn_line_is_skipped(tmp_path, caplog):
    log = tmp_path / "d.jsonl"
    lines = [_rec(f"/in/{i}.png") for i in range(5)]
    lines += [_rec("/in/1.png"), _rec("/in/2.png")]  # re-decided after a restart
    lines.insert(3, '{"time": "t", "source": "/in/torn.png", "lab')  # cut by a power failure, then appended to
    lines += [_rec("/in/1.png", mtime=2), json.dumps({"source": "/in/bad.png", "error": "truncated"})]
    log.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        recs, skipped = read_decisions(log)
    assert [r["source"] for r in recs] == [f"/in/{i}.png" for i in range(5)] + ["/in/1.png"]
    assert skipped == 4  # 2 repeats, 1 torn line, 1 error record
    assert "torn" in caplog.text and "2 repeated" in caplog.text


def test_records_without_file_stats_are_all_kept(tmp_path):
    """Camera frames (and logs written before the ledger) have no file stats: a reused name is not a repeat."""
    log = tmp_path / "d.jsonl"
    log.write_text("\n".join(json.dumps({"source": "camera:0#1", "label": "good", "score": 0.8}) for _ in range(3)))
    recs, skipped = read_decisions(log)
    assert len(recs) == 3 and skipped == 0
