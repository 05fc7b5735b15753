"""Atomic writes: a failed write leaves nothing (or the old file) behind."""

from __future__ import annotations

import pytest

from kdefect.utils.io import atomic_dir, atomic_path, read_json, sha256_file, write_json


def test_write_json_and_hash(tmp_path):
    p = write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert read_json(p) == {"x": 1}
    assert len(sha256_file(p)) == 64
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["model.bin"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    d = tmp_path / "saved_model"
    with atomic_dir(d) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(ValueError), atomic_dir(d) as tmp:
        (tmp / "b.txt").write_text("2")
        raise ValueError
    assert sorted(f.name for f in d.iterdir()) == ["a.txt"]
    with atomic_dir(d) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(f.name for f in d.iterdir()) == ["c.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["saved_model"]
