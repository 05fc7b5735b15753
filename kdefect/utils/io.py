"""Atomic file writing and hashing.

Every file kdefect writes goes through here: write to a temporary file in the
same folder, fsync, ``os.replace``, then fsync the folder (so the rename itself
survives a power cut).  A crash or Ctrl-C therefore never leaves a half-written
model, metrics or sidecar file behind.  Temporaries are created with the
process umask (0644 for a normal user), not ``mkstemp``'s private 0600, so a
service user on the device can read the model it is given.  TF-free.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _tmp_name(path: Path, suffix: str) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"


def _tmp_path(path: Path, suffix: str = "") -> Path:
    """A new empty file beside ``path``; mode 0666 minus the umask (``mkstemp`` would force 0600)."""
    while True:
        name = _tmp_name(path, ".tmp" + suffix)
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            return name
        except FileExistsError:
            continue


def _tmp_dir(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty folder beside ``path``; mode 0777 minus the umask (``mkdtemp`` would force 0700)."""
    while True:
        name = _tmp_name(path, suffix)
        try:
            name.mkdir(0o777)
            return name
        except FileExistsError:
            continue


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (new and renamed names) to disk; a no-op where folders cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows: NTFS journals renames, and folders cannot be fsynced
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems (e.g. certain network mounts) refuse folder fsync
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder below ``root`` (deepest first), so the swapped-in folder is complete on disk."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(dirpath)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not glibc >= 2.28 / not Linux
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # old kernel or file system
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Use it for writers that need a file name (``model.save``, TFLite, PNG). The
    temporary keeps ``suffix`` so libraries that look at extensions still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path, suffix or path.suffix)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        elif tmp.is_dir():
            _fsync_tree(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it into place on success.

    An existing ``path`` is exchanged with the new folder in one atomic step
    (``renameat2(RENAME_EXCHANGE)``), so a reader never finds ``path`` missing or half
    old, half new.  Where the kernel or file system lacks the exchange, the old folder
    is renamed aside and the new one renamed in: two renames, with a window of
    microseconds in which ``path`` does not exist (a crash there leaves the old
    folder beside it as ``.<name>.*.old/x``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_dir(path)
    try:
        yield tmp
        _fsync_tree(tmp)
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):  # tmp now holds the old folder; the finally removes it
            pass
        else:
            log.debug("atomic folder exchange unsupported here; replacing %s with two renames", path)
            old = _tmp_dir(path, ".old")
            os.replace(path, old / "x")
            os.replace(tmp, path)
            fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Atomically write ``obj`` as JSON (numpy scalars/arrays are converted)."""
    return write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (streamed, so large models need little memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike) -> str:
    """One sha256 over every file below ``path`` (relative names + contents)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()
