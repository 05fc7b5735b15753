"""The decision log: one JSON object per line, durable per record.

The one kdefect file that is appended to rather than atomically replaced
(``kdefect.utils.io``): a log must grow while the line runs.  Each record is
encoded first and written with a single ``os.write`` on an ``O_APPEND``
descriptor, then ``fsync``-ed, so a SIGTERM or power cut loses nothing already
logged.  A line torn by a power cut during a previous run is cut off when the
log is reopened, so every line of the file stays valid JSON.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from kdefect.errors import EdgeError
from kdefect.utils.io import _json_default

log = logging.getLogger(__name__)

RECORD_KEYS = ("time", "source", "label", "score", "probs", "review", "ood", "latency_ms", "model_sha256")


def now_iso() -> str:
    """UTC wall-clock time with milliseconds (the decision's timestamp)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class DecisionLog:
    """Append-only JSONL writer; ``fsync=False`` only for benchmarks of the cost."""

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.count = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise EdgeError(f"cannot open the decision log '{self.path}' for appending ({exc}); "
                            "pick a writable path with --log.") from exc

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

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and make it durable before returning."""
        if self._fd is None:
            raise EdgeError(f"decision log '{self.path}' is closed.")
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False, default=_json_default) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)
        self.count += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a decision log (for tests, tools and ``trust.monitor``)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
