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


@pytest.fixture
def umask_022():
    import os

    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_honour_the_umask(tmp_path, umask_022):
    """Artefacts are readable by a service user (0644 / 0755 with umask 022), not mkstemp's private 0600."""
    f = write_json(tmp_path / "m.json", {"x": 1})
    assert f.stat().st_mode & 0o777 == 0o644
    with atomic_path(tmp_path / "model.tflite") as tmp:
        tmp.write_bytes(b"model")
    assert (tmp_path / "model.tflite").stat().st_mode & 0o777 == 0o644
    with atomic_dir(tmp_path / "saved_model") as tmp:
        (tmp / "a.txt").write_text("1")
    assert (tmp_path / "saved_model").stat().st_mode & 0o777 == 0o755


def test_private_umask_is_honoured_too(tmp_path):
    import os

    old = os.umask(0o077)
    try:
        f = write_json(tmp_path / "m.json", {"x": 1})
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o600


def _fsynced_dirs(monkeypatch) -> list[str]:
    import os
    import stat

    seen: list[str] = []
    real = os.fsync

    def spy(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            seen.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="folder fsync is POSIX")
def test_parent_folder_is_fsynced_after_each_rename(tmp_path, monkeypatch):
    import os

    seen = _fsynced_dirs(monkeypatch)
    write_json(tmp_path / "m.json", {"x": 1})
    assert os.path.realpath(tmp_path) in seen
    seen.clear()
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a.txt").write_text("1")
    assert os.path.realpath(tmp_path) in seen


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="renameat2 is Linux-only")
def test_atomic_dir_swap_never_leaves_the_path_missing(tmp_path, monkeypatch):
    """Replacing an existing folder must be one atomic exchange: after every rename the path exists."""
    import os

    from kdefect.utils import io

    d = tmp_path / "saved_model"
    with atomic_dir(d) as tmp:
        (tmp / "old.txt").write_text("old")
    missing = []
    real = os.replace

    def spy(a, b):
        real(a, b)
        if not d.exists():
            missing.append((str(a), str(b)))

    monkeypatch.setattr(io.os, "replace", spy)
    with atomic_dir(d) as tmp:
        (tmp / "new.txt").write_text("new")
    assert missing == []
    assert sorted(f.name for f in d.iterdir()) == ["new.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["saved_model"]


def test_atomic_dir_falls_back_to_two_renames(tmp_path, monkeypatch):
    from kdefect.utils import io

    d = tmp_path / "saved_model"
    with atomic_dir(d) as tmp:
        (tmp / "old.txt").write_text("old")
    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    with atomic_dir(d) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(f.name for f in d.iterdir()) == ["new.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["saved_model"]
