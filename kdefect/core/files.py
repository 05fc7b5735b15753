"""Which files and folders a scan of the user's images leaves out, for training and on the device alike.

Why: image folders carry what operating systems and archivers put beside the images. Windows writes
``Thumbs.db`` and ``desktop.ini`` into folders opened in Explorer, a zip made on a Mac carries a ``__MACOSX/``
tree, and a USB stick's root holds ``System Volume Information/`` and ``$RECYCLE.BIN/``. None of them is a bad
image the user must fix, or a class: they are skipped like hidden (dot) files, not reported. TF-free (the edge
runtime's folder source uses it too).
"""

from __future__ import annotations

from pathlib import Path

# lower-case names; a hidden name (leading dot: .DS_Store, ._x.jpg AppleDouble files, .git) is clutter too
CLUTTER_NAMES = frozenset({
    "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r",  # Windows Explorer, macOS folder icon
    "__macosx",  # macOS resource forks in zip archives
    "$recycle.bin", "system volume information",  # the root of a Windows drive or USB stick
})


def is_clutter(name: str) -> bool:
    """True for a hidden name or one the operating system or an archiver wrote (never the user's image or class)."""
    return name.startswith(".") or name.lower() in CLUTTER_NAMES


def in_clutter(path: Path, root: Path) -> bool:
    """True when ``path`` or a folder between ``root`` and it is clutter (``root`` itself is what the user gave)."""
    return any(is_clutter(part) for part in path.relative_to(root).parts)
