"""System clutter (Thumbs.db, __MACOSX/, ...) is skipped by every folder scan, on the host and on the device."""

from __future__ import annotations

import threading

from PIL import Image

from kdefect.core.files import in_clutter, is_clutter
from kdefect.edge.sources import iter_files


def test_clutter_names():
    for name in (".DS_Store", "._a.jpg", "Thumbs.db", "THUMBS.DB", "desktop.ini", "__MACOSX", "$RECYCLE.BIN",
                 "System Volume Information"):
        assert is_clutter(name), name
    for name in ("good", "a.jpg", "thumbs.db.jpg", "macosx", "scratch_desktop.ini.png"):
        assert not is_clutter(name), name


def test_in_clutter_looks_below_the_root_only(tmp_path):
    root = tmp_path / ".data"  # the folder the user named may itself be hidden
    assert not in_clutter(root / "good" / "a.jpg", root)
    assert in_clutter(root / "__MACOSX" / "good" / "a.jpg", root)
    assert in_clutter(root / "good" / "Thumbs.db", root)


def test_device_folder_source_skips_clutter(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "b.png").write_bytes(b"x")
    for recursive in (False, True):
        items = list(iter_files([tmp_path], threading.Event(), recursive=recursive))
        assert [i.path.name for i in items] == ["a.png"]
