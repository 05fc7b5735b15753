"""The classification loop: never lose a decision, never stop on a bad file.

A loader thread decodes and resizes the next image while the interpreter runs
the current one (``invoke`` releases the GIL), so preprocessing costs almost
no throughput.  The main thread infers, decides, writes the durable log
record, then files low-confidence parts for review.  Setting ``stop`` ends the
loop after the current record: whatever was logged is complete.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kdefect.core.decision_log import DecisionLog, now_iso
from kdefect.edge.classifier import EdgeClassifier
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _loader(clf: EdgeClassifier, items: Iterator[Item], out: queue.Queue, stop: threading.Event) -> None:
    """Producer: item -> (item, input or rejection reason, prep seconds)."""
    try:
        for item in items:
            t0 = time.perf_counter()
            try:
                x: Any = clf.load(item.frame if item.frame is not None else item.path, name=item.source)
            except ImageRejected as exc:
                x = exc
            dt = time.perf_counter() - t0
            while not stop.is_set():
                try:
                    out.put((item, x, dt), timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except BaseException as exc:  # a source failure (camera gone, folder removed) ends the run cleanly
        out.put(exc)
        return
    out.put(_END)


def _load_one(clf: EdgeClassifier, items: Iterator[Item]) -> Any:
    """The in-thread variant of ``_loader``: one (item, input or rejection, seconds), ``_END`` or the failure."""
    try:
        item = next(items)
    except StopIteration:
        return _END
    except Exception as exc:
        return exc
    t0 = time.perf_counter()
    try:
        x: Any = clf.load(item.frame if item.frame is not None else item.path, name=item.source)
    except ImageRejected as exc:
        x = exc
    return item, x, time.perf_counter() - t0


def run_stream(clf: EdgeClassifier, items: Iterator[Item], decision_log: DecisionLog, stop: threading.Event,
               review: ReviewQueue | None = None, max_items: int | None = None, prefetch: int = 4,
               t_start: float | None = None) -> RunSummary:
    """Classify ``items`` until they end, ``max_items`` are done or ``stop`` is set.

    ``prefetch``: how many decoded inputs the loader thread may hold ahead; 0 decodes in the calling thread.
    """
    summary = RunSummary()
    lat: list[float] = []
    t_start = time.perf_counter() if t_start is None else t_start
    t_loop = time.perf_counter()
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    th = threading.Thread(target=_loader, args=(clf, items, q, stop), name="kdefect-edge-loader", daemon=True)
    if prefetch > 0:
        th.start()
    failure: BaseException | None = None
    try:
        while not stop.is_set() and (max_items is None or summary.decisions + summary.errors < max_items):
            if prefetch <= 0:  # decode in this thread: cheapest when the model is tiny and the CPU has one core
                got = _load_one(clf, items)
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
            item, x, prep_s = got
            _handle(clf, item, x, prep_s, decision_log, review, summary, lat)
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
    if lat:
        a = np.asarray(lat)
        summary.latency_ms = {k: round(float(v), 3) for k, v in
                              (("p50", np.percentile(a, 50)), ("p95", np.percentile(a, 95)), ("mean", a.mean()),
                               ("max", a.max()))}
    if failure is not None:
        raise failure
    return summary


def _handle(clf: EdgeClassifier, item: Item, x: Any, prep_s: float, decision_log: DecisionLog,
            review: ReviewQueue | None, summary: RunSummary, lat: list[float]) -> None:
    """One item -> one durable record (a decision or an error)."""
    t0 = time.perf_counter()
    if isinstance(x, ImageRejected):
        decision_log.write({"time": now_iso(), "source": item.source, "label": None, "score": None, "probs": None,
                            "review": False, "ood": None, "latency_ms": round(prep_s * 1000, 3),
                            "model_sha256": clf.sha256, "verdict": None, "error": str(x)})
        summary.errors += 1
        log.warning("skipped %s", x)
        return
    d = clf.decide(x)
    ms = (prep_s + time.perf_counter() - t0) * 1000
    rec = {"time": now_iso(), "source": item.source, "label": d.label, "score": d.score, "probs": d.probs,
           "review": d.review, "ood": d.ood, "latency_ms": round(ms, 3), "model_sha256": clf.sha256,
           "verdict": d.verdict}
    flagged = d.review or bool(d.ood and d.ood["flag"])
    if flagged and review is not None:
        try:
            dest = (review.add_frame(item.frame, item.source, d.label, d.score) if item.frame is not None
                    else review.add_file(item.path, d.label, d.score))
            rec["review_path"] = str(dest)
        except OSError as exc:  # the decision still counts; say why the copy is missing
            rec["review_path"] = None
            log.error("could not file %s for review: %s", item.source, exc)
    decision_log.write(rec)
    lat.append(ms)
    summary.decisions += 1
    summary.review += int(d.review)
    summary.ood += int(bool(d.ood and d.ood["flag"]))
    summary.labels[d.label] = summary.labels.get(d.label, 0) + 1
