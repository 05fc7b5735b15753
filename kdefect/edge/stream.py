"""The classification loop: never lose a decision, never stop on a bad file.

A loader thread decodes and resizes the next image while the interpreter runs
the current one (``invoke`` releases the GIL), so preprocessing costs almost
no throughput.  The main thread infers, decides, writes the durable log
record, then files low-confidence parts for review.  Setting ``stop`` ends the
loop after the current record: whatever was logged is complete.  Parts the log
already holds (an earlier run with the same log was stopped or killed) are
skipped before decoding, so a restart continues where it stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kdefect.core.decision_log import DecisionLog, PartKey, file_key, now_iso
from kdefect.edge.model_base import EdgeModel
from kdefect.edge.preprocess import ImageRejected
from kdefect.edge.review import ReviewQueue
from kdefect.edge.sources import Item

log = logging.getLogger(__name__)

_END = object()


@dataclass
class RunSummary:
    """What the run did; ``latency_ms`` is per decision (decode + resize + invoke + decide)."""

    decisions: int = 0
    errors: int = 0
    review: int = 0
    ood: int = 0
    wall_s: float = 0.0
    images_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    first_decision_s: float | None = None
    stopped_by_signal: bool = False
    labels: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    already_logged: int = 0  # parts skipped because the log already holds their decision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pending(items: Iterator[Item], decision_log: DecisionLog, summary: RunSummary
             ) -> Iterator[tuple[Item, PartKey | None]]:
    """(item, ledger key) for the parts not yet in the log; the rest are counted and skipped."""
    for item in items:
        key = file_key(item.source, item.path) if item.path is not None else None
        if decision_log.logged(key):
            summary.already_logged += 1
            log.debug("%s is already in the log: skipped", item.source)
            continue
        yield item, key


def _loader(clf: EdgeModel, items: Iterator[tuple[Item, PartKey | None]], out: queue.Queue,
            stop: threading.Event) -> None:
    """Producer: (item, key) -> (item, key, input or rejection reason, prep seconds)."""
    try:
        for item, key in items:
            t0 = time.perf_counter()
            try:
                x: Any = clf.load_input(item.frame if item.frame is not None else item.path, name=item.source)
            except ImageRejected as exc:
                x = exc
            dt = time.perf_counter() - t0
            while not stop.is_set():
                try:
                    out.put((item, key, x, dt), timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except BaseException as exc:  # a source failure (camera gone, folder removed) ends the run cleanly
        out.put(exc)
        return
    out.put(_END)


def _load_one(clf: EdgeModel, items: Iterator[tuple[Item, PartKey | None]]) -> Any:
    """The in-thread variant of ``_loader``: one (item, key, input or rejection, seconds), ``_END`` or the failure."""
    try:
        item, key = next(items)
    except StopIteration:
        return _END
    except Exception as exc:
        return exc
    t0 = time.perf_counter()
    try:
        x: Any = clf.load_input(item.frame if item.frame is not None else item.path, name=item.source)
    except ImageRejected as exc:
        x = exc
    return item, key, x, time.perf_counter() - t0


def run_stream(clf: EdgeModel, items: Iterator[Item], decision_log: DecisionLog, stop: threading.Event,
               review: ReviewQueue | None = None, max_items: int | None = None, prefetch: int = 4,
               t_start: float | None = None, on_record: Callable[[dict[str, Any]], None] | None = None) -> RunSummary:
    """Classify ``items`` until they end, ``max_items`` are done or ``stop`` is set.

    ``prefetch``: how many decoded inputs the loader thread may hold ahead; 0 decodes in the calling thread.
    ``on_record``: called with each record once it is in the log (the CLI prints one line per part).
    """
    summary = RunSummary()
    if review is not None:  # a crash between a log record and its review image: finish what the log vouches for
        review.recover(decision_log.review_paths)
    items_ = _pending(items, decision_log, summary)
    lat: list[float] = []
    t_start = time.perf_counter() if t_start is None else t_start
    t_loop = time.perf_counter()
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    th = threading.Thread(target=_loader, args=(clf, items_, q, stop), name="kdefect-edge-loader", daemon=True)
    if prefetch > 0:
        th.start()
    failure: BaseException | None = None
    try:
        while not stop.is_set() and (max_items is None or summary.decisions + summary.errors < max_items):
            if prefetch <= 0:  # decode in this thread: cheapest when the model is tiny and the CPU has one core
                got = _load_one(clf, items_)
            else:
                try:
                    got = q.get(timeout=0.2)
                except queue.Empty:
                    continue
            if got is _END:
                break
            if isinstance(got, BaseException):
                failure = got
                break
            item, key, x, prep_s = got
            rec = _handle(clf, item, key, x, prep_s, decision_log, review, summary, lat)
            if on_record is not None:
                on_record(rec)
            if summary.first_decision_s is None:
                summary.first_decision_s = round(time.perf_counter() - t_start, 4)
    finally:
        summary.stopped_by_signal = stop.is_set()
        stop.set()  # ends the loader (and a watched folder) too
        if th.is_alive():
            th.join(timeout=5)
    summary.wall_s = round(time.perf_counter() - t_loop, 4)
    n = summary.decisions + summary.errors
    summary.images_per_s = round(n / summary.wall_s, 3) if summary.wall_s > 0 else 0.0
    if summary.already_logged:
        log.info("%d part(s) already in the log skipped: continued where the last run stopped",
                 summary.already_logged)
    if lat:
        a = np.asarray(lat)
        summary.latency_ms = {k: round(float(v), 3) for k, v in
                              (("p50", np.percentile(a, 50)), ("p95", np.percentile(a, 95)), ("mean", a.mean()),
                               ("max", a.max()))}
    if failure is not None:
        raise failure
    return summary


def _handle(clf: EdgeModel, item: Item, key: PartKey | None, x: Any, prep_s: float, decision_log: DecisionLog,
            review: ReviewQueue | None, summary: RunSummary, lat: list[float]) -> dict[str, Any]:
    """One item -> one durable record (a decision or an error), then its review image."""
    t0 = time.perf_counter()
    part = {"file_size": key[1], "file_mtime_ns": key[2]} if key else {}  # the ledger key (see decision_log)
    if isinstance(x, ImageRejected):
        err = {"time": now_iso(), "source": item.source, "label": None, "score": None, "probs": None,
               "review": False, "ood": None, "latency_ms": round(prep_s * 1000, 3),
               "model_sha256": clf.sha256, "manifest_sha256": clf.manifest_sha256, "verdict": None, "error": str(x),
               **part}
        decision_log.write(err)
        summary.errors += 1
        log.warning("skipped %s", x)
        return err
    d = clf.decide_input(x)
    ms = (prep_s + time.perf_counter() - t0) * 1000
    rec = {"time": now_iso(), "source": item.source, "label": d.label, "score": d.score, "probs": d.probs,
           "review": d.review, "ood": d.ood, "latency_ms": round(ms, 3), "model_sha256": clf.sha256,
           "manifest_sha256": clf.manifest_sha256, "verdict": d.verdict, **part}
    if d.boxes is not None:
        rec["boxes"] = d.boxes
    flagged = d.review or bool(d.ood and d.ood["flag"])
    staged = None
    if flagged and review is not None:
        try:
            staged, dest = (review.stage_frame(item.frame, item.source, d.label, d.score) if item.frame is not None
                            else review.stage_file(item.path, d.label, d.score))
            rec["review_path"] = str(dest)
        except OSError as exc:  # the decision still counts; say why the copy is missing
            rec["review_path"] = None
            log.error("could not file %s for review: %s", item.source, exc)
    decision_log.write(rec)
    if staged is not None:  # shown only once its record is durable: the log and the queue agree
        try:
            review.commit(staged, dest)
        except OSError as exc:
            log.error("could not file %s for review: %s", item.source, exc)
    lat.append(ms)
    summary.decisions += 1
    summary.review += int(d.review)
    summary.ood += int(bool(d.ood and d.ood["flag"]))
    summary.labels[d.label] = summary.labels.get(d.label, 0) + 1
    if d.verdict is not None:
        summary.verdicts[d.verdict] = summary.verdicts.get(d.verdict, 0) + 1
    return rec
