"""The decision log: one JSON object per line, durable per record.

The one kdefect file that is appended to rather than atomically replaced
(``kdefect.utils.io``): a log must grow while the line runs.  Each record is
encoded first and written with a single ``os.write`` on an ``O_APPEND``
descriptor before the next part is handled, so a crash, SIGKILL or SIGTERM of
the process loses nothing already logged (the kernel holds it).  Power-cut
safety needs ``fsync``, and the ``sync`` policy says when it happens:

- ``record``: ``fsync`` before ``write`` returns: every record is on disk
  before the next part; costs one fsync per part (milliseconds on an SD card).
- ``group`` (the ``kdefect-edge`` default): a background thread fsyncs
  whatever was written since its last fsync (group commit): a power cut can
  lose only the records of the fsync in flight (about one fsync's time of
  parts), and ``close`` returns after a final fsync of everything.
- ``none``: no fsync (benchmarks of the cost only).

A line torn by a power cut during a previous run is cut off when the log is
reopened, so every line of the file stays valid JSON.

The log is also the ledger that makes processing idempotent per part: a file
record carries the file's size and mtime, and a restart with the same log
skips every part already in it (``DecisionLog.logged``), so a ``kill -9``
mid-folder never logs a part twice.  Readers (``read_log``, ``kdefect
monitor``) drop duplicates and skip a torn line with a warning.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdefect.errors import EdgeError
from kdefect.utils.io import _json_default

log = logging.getLogger(__name__)

RECORD_KEYS = ("time", "source", "label", "score", "probs", "review", "ood", "latency_ms", "model_sha256",
               "manifest_sha256")


PartKey = tuple[Any, ...]


def part_key(record: dict[str, Any]) -> PartKey | None:
    """Which part a record is about: (source, size, mtime_ns) of a file; None for a camera frame.

    Records without file stats (camera frames, logs written before the ledger) are never treated as repeats:
    a path alone does not tell a re-decided part from a new file that reused the name.
    """
    src = record.get("source")
    if not isinstance(src, str) or record.get("file_size") is None:
        return None
    return (src, record["file_size"], record.get("file_mtime_ns"))


def file_key(source: str, path: str | Path) -> PartKey | None:
    """The ledger key of a file about to be classified (None when it cannot be stat-ed: it becomes an error)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (source, st.st_size, st.st_mtime_ns)


@dataclass
class LogScan:
    """A decision log read leniently: records (first of each part), torn lines and duplicates dropped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0
    duplicates: int = 0


def scan_log(path: str | Path) -> LogScan:
    """Read every valid record once; a torn or unparsable line is skipped and counted, not raised."""
    out = LogScan()
    seen: set[PartKey] = set()
    for rec in _lines(Path(path), out):
        key = part_key(rec)
        if key is not None:
            if key in seen:
                out.duplicates += 1
                continue
            seen.add(key)
        out.records.append(rec)
    return out


def _lines(path: Path, scan: LogScan) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict):
                scan.torn += 1
                log.warning("%s:%d: torn or unreadable line skipped", path, n)
                continue
            yield rec


def now_iso() -> str:
    """UTC wall-clock time with milliseconds (the decision's timestamp)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


SYNC_POLICIES = ("record", "group", "none")


class _GroupSync:
    """Background fsync of an append-only descriptor: one fsync covers every record written before it started."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self.written = self.synced = 0
        self._closing = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="kdefect-log-fsync", daemon=True)
        self._thread.start()

    def wrote(self, count: int) -> None:
        with self._cond:
            self.written = count
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self.written == self.synced and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return  # close() does the last fsync itself
                target = self.written
            try:
                os.fsync(self._fd)
            except OSError as exc:  # reported by the next write(): the disk is failing
                self.error = exc
                return
            with self._cond:
                self.synced = target

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()


class DecisionLog:
    """Append-only JSONL writer.

    ``sync``: ``record`` | ``group`` | ``none`` (module docstring); ``fsync=False`` is ``none``.
    ``parts`` (the ledger) and ``review_paths`` are read from the existing log when it is opened.
    """

    def __init__(self, path: str | Path, fsync: bool = True, sync: str = "record") -> None:
        self.path = Path(path)
        if sync not in SYNC_POLICIES:
            raise EdgeError(f"unknown fsync policy {sync!r}; choose one of {', '.join(SYNC_POLICIES)}.")
        self.sync = sync if fsync else "none"
        self.fsync = self.sync == "record"
        self.count = 0
        self._group: _GroupSync | None = None
        self.parts: set[PartKey] = set()
        self.review_paths: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            if self.path.is_file():
                scan = LogScan()
                for rec in _lines(self.path, scan):
                    self._remember(rec)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise EdgeError(f"cannot open the decision log '{self.path}' for appending ({exc}); "
                            "pick a writable path with --log.") from exc
        if self.sync == "group":
            self._group = _GroupSync(self._fd)

    def _repair_tail(self) -> None:
        """Cut a last line left without its newline (power cut mid-write in an earlier run)."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            keep = 0
            pos = size
            while pos > 0:  # find the last newline, reading backwards in blocks
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                block = fh.read(step)
                if (i := block.rfind(b"\n")) >= 0:
                    keep = pos + i + 1
                    break
            fh.truncate(keep)
            os.fsync(fh.fileno())
        log.warning("decision log '%s' ended in a torn line (%d bytes cut); earlier records are intact.",
                    self.path, size - keep)

    def _remember(self, record: dict[str, Any]) -> None:
        if (key := part_key(record)) is not None:
            self.parts.add(key)
        if record.get("review_path"):
            self.review_paths.add(str(record["review_path"]))

    def logged(self, key: PartKey | None) -> bool:
        """True when the part is already in the log (a restart must not decide it again)."""
        return key is not None and key in self.parts

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one ``os.write``); with ``sync="record"`` it is fsync-ed before returning."""
        if self._fd is None:
            raise EdgeError(f"decision log '{self.path}' is closed.")
        if self._group is not None and self._group.error is not None:
            raise EdgeError(f"fsync of the decision log '{self.path}' failed ({self._group.error}); the disk is "
                            "failing or full: stop the line and check it.")
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False, default=_json_default) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)
        self.count += 1
        self._remember(record)
        if self._group is not None:
            self._group.wrote(self.count)

    def close(self) -> None:
        """Close the log; every record written is on disk when it returns (unless ``sync="none"``)."""
        if self._fd is not None:
            if self._group is not None:
                self._group.close()
                self._group = None
            if self.sync != "none":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every part's record once (for tests and tools); torn lines and repeats are skipped with a warning."""
    scan = scan_log(path)
    if scan.duplicates:
        log.warning("%s: %d repeated record(s) of the same part ignored (a restart before the ledger existed?)",
                    path, scan.duplicates)
    return scan.records
