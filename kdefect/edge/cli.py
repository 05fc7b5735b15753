"""``kdefect-edge``: classify parts, or find their defects with a detector, on the device (argparse only:
no click on a Pi).

Exit codes: 0 when the run ended (all inputs done, --max-images reached, or a
clean stop on SIGTERM / Ctrl-C: every decision made is in the log); 2 when the
model, sidecar, interpreter or a source is unusable (one clear line on
stderr); 1 for an unexpected failure.  Bad images never change the exit code:
they are error records in the log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kdefect.errors import EdgeError, KDefectError

log = logging.getLogger("kdefect.edge")

EPILOG = """examples:
  kdefect-edge model.tflite images/                         # a folder, then exit
  kdefect-edge model.tflite --watch /srv/incoming --review-dir /srv/review
  kdefect-edge model_edgetpu.tflite --edgetpu --camera 0    # Coral + USB camera (needs opencv)

exit codes: 0 finished or stopped cleanly by SIGTERM/Ctrl-C (the log is complete),
            2 unusable model / sidecar / interpreter / source, 1 unexpected failure.
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 200x200, not {text!r}") from None
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdefect-edge", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Classify parts (or find their defects with a detector) with a kdefect "
                                            "INT8 TFLite model (LiteRT / tflite-runtime, optional Coral Edge TPU) "
                                            "and log every decision.")
    p.add_argument("model", help="model.tflite with its sidecar model.json beside it")
    p.add_argument("inputs", nargs="*", help="image files and/or folders")
    src = p.add_argument_group("sources")
    src.add_argument("--watch", metavar="DIR", help="classify files as they arrive in DIR until stopped")
    src.add_argument("--new-only", action="store_true", help="with --watch: ignore files already in DIR at start")
    src.add_argument("--poll", type=float, default=0.5, metavar="S", help="watch poll interval (default 0.5 s)")
    src.add_argument("--settle", type=float, default=0.5, metavar="S",
                     help="a watched file must keep its size this long before it is read (default 0.5 s)")
    src.add_argument("--camera", metavar="INDEX|URL", help="OpenCV camera index or stream URL")
    src.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    src.add_argument("--max-images", type=int, metavar="N", help="stop after N records")
    out = p.add_argument_group("output")
    out.add_argument("--log", default="decisions.jsonl", metavar="PATH",
                     help="decision log, appended to (default decisions.jsonl)")
    out.add_argument("--review-dir", metavar="DIR", help="link/copy low-confidence (and OOD) images here")
    out.add_argument("--review-below", type=float, metavar="P",
                     help="review when the top score is below P (default: the sidecar's thresholds.review_below)")
    out.add_argument("--review-mode", choices=("link", "copy"), default="link",
                     help="hard-link (falls back to copy) or always copy (default link)")
    out.add_argument("--temperature", type=float, metavar="T", help="override the sidecar's calibration temperature")
    out.add_argument("--fsync", choices=("group", "record"), default="group",
                     help="group (default): a background fsync covers every record written before it, a power cut "
                          "loses at most the records of the fsync in flight; record: fsync each record before the "
                          "next part (one fsync per part). A crash or kill of the process loses nothing either way")
    out.add_argument("--summary", metavar="PATH", help="also write the run summary as JSON here")
    run = p.add_argument_group("runtime")
    run.add_argument("--trust-key", metavar="PUB",
                     help="public key (kdefect keys new): refuse a model, sidecar or bank that is unsigned, altered "
                          "or signed by another key (model.sig beside the model)")
    run.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                     help="interpreter threads (default: min(4, CPUs))")
    run.add_argument("--warmup", type=int, default=2, metavar="N", help="warm-up invokes before the first part")
    run.add_argument("--edgetpu", action="store_true", help="use the Coral Edge TPU delegate (CPU fallback + warning)")
    run.add_argument("--require-edgetpu", action="store_true", help="fail instead of falling back to the CPU")
    run.add_argument("--color", choices=("strict", "convert"), default="strict",
                     help="strict: reject grayscale/alpha images for a colour model (default); convert: convert them")
    run.add_argument("--expect-size", type=_size, metavar="WxH", help="reject images of any other size")
    run.add_argument("--no-prefetch", action="store_true", help="decode in the main thread (no loader thread; best for tiny models on one core)")
    p.add_argument("--info", action="store_true", help="verify and describe the model, then exit")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no line per part; warnings, errors and the closing summary only")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM / SIGINT set ``stop`` (the loop ends after the current record); a second one exits at once."""
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            os._exit(128 + signum)  # records are written with single write()s: nothing is torn
        log.warning("%s received: finishing the current part and stopping", signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _items(args: argparse.Namespace, stop: threading.Event) -> Iterator[Any]:
    from kdefect.edge import sources

    chosen = sum(bool(x) for x in (args.inputs, args.watch, args.camera is not None))
    if chosen != 1:
        raise KDefectError("give exactly one source: image files/folders, --watch DIR, or --camera INDEX.")
    if args.watch:
        return sources.watch_folder(args.watch, stop, args.poll, args.settle, not args.new_only, args.recursive)
    if args.camera is not None:
        cam = int(args.camera) if args.camera.isdigit() else args.camera
        return sources.camera(cam, stop)
    missing = [p for p in args.inputs if not os.path.exists(p)]
    if missing:  # a typo in a one-shot run is the user's mistake, not a part to log (--watch may wait instead)
        raise EdgeError(f"input {', '.join(repr(p) for p in missing)} does not exist; give existing image files or "
                        "folders, or --watch DIR to wait for files.")
    return sources.iter_files(args.inputs, stop, args.recursive)


def part_line(rec: dict[str, Any]) -> str:
    """One line per part for the operator: file, label, score, verdict and the review / OOD flags."""
    if rec.get("error"):
        return f"{rec['source']}  ERROR  {rec['error']}"
    flags = [f for f, on in (("REVIEW", rec.get("review")), ("OOD", (rec.get("ood") or {}).get("flag"))) if on]
    verdict = f"  {rec['verdict']}" if rec.get("verdict") else ""
    boxes = f"  {len(rec['boxes'])} box(es)" if rec.get("boxes") is not None else ""
    return f"{rec['source']}  {rec['label']}  {rec['score']:.3f}{verdict}{boxes}" + "".join(f"  {f}" for f in flags)


def open_model(args: argparse.Namespace) -> Any:
    """``EdgeClassifier`` or ``EdgeDetector``, as the sidecar's ``task`` says; options of the other kind refused."""
    from kdefect.core.sidecar import sidecar_path

    try:  # a peek only: the model class verifies the sidecar (and its signature) in full
        task = json.loads(sidecar_path(args.model).read_bytes()).get("task", "classify")
    except (OSError, ValueError, AttributeError):
        task = "classify"  # EdgeClassifier names what is wrong with the sidecar
    if task == "detect":
        from kdefect.edge.detector import EdgeDetector

        given = [o for o, v in (("--review-below", args.review_below), ("--temperature", args.temperature),
                                ("--expect-size", args.expect_size)) if v is not None]
        if given:
            raise EdgeError(f"{', '.join(given)} apply to classifiers; '{args.model}' is a detector (it rejects a "
                            "part when a box reaches the sidecar's detection.reject_min_score).")
        return EdgeDetector(args.model, threads=args.threads, edgetpu=args.edgetpu,
                            require_edgetpu=args.require_edgetpu, trust_key=args.trust_key)
    from kdefect.edge.classifier import EdgeClassifier
    from kdefect.edge.preprocess import ImagePolicy

    return EdgeClassifier(args.model, threads=args.threads, edgetpu=args.edgetpu, require_edgetpu=args.require_edgetpu,
                          review_below=args.review_below, temperature=args.temperature,
                          policy=ImagePolicy(color=args.color, expect_size=args.expect_size),
                          trust_key=args.trust_key)


def closing_summary(s: Any, backend: str, threads: int, log_path: str) -> str:
    """The end-of-run block: throughput and latency, counts per verdict (or label), review and OOD shares."""
    lat = s.latency_ms
    n = s.decisions

    def share(k: int) -> str:
        return f"{k} ({100 * k / n:.1f}%)" if n else "0"

    lines = [f"kdefect-edge: {n} parts classified, {s.errors} errors"
             f"{', stopped by signal' if s.stopped_by_signal else ''}; {s.images_per_s:.1f} img/s"
             + (f"; latency p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms" if lat else "")
             + f" ({backend}, {threads} thread(s))"]
    for name, counts in (("verdicts", s.verdicts), ("labels", s.labels)):
        if counts:
            lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(f"  review {share(s.review)}, OOD {share(s.ood)}; log {log_path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from kdefect.core.decision_log import DecisionLog
    from kdefect.edge.review import ReviewQueue
    from kdefect.edge.stream import run_stream
    from kdefect.utils.io import write_json

    t_start = time.perf_counter()
    clf = open_model(args)
    if args.info:
        print(json.dumps(clf.info(), indent=2))
        return 0
    stop = threading.Event()
    review = ReviewQueue(args.review_dir, args.review_mode) if args.review_dir else None
    items = _items(args, stop)  # a bad source fails here, before the log file is created
    with _signals(stop), DecisionLog(args.log, sync=args.fsync) as dlog:
        clf.warm_up(args.warmup)
        on_record = None if args.quiet else (lambda rec: print(part_line(rec), flush=True))
        summary = run_stream(clf, items, dlog, stop, review=review, max_items=args.max_images,
                             prefetch=0 if args.no_prefetch else 4, t_start=t_start, on_record=on_record)
    info = {**summary.to_dict(), "backend": clf.backend, "threads": args.threads, "model_sha256": clf.sha256,
            "manifest_sha256": clf.manifest_sha256, "load_s": round(clf.load_s, 4), "log": os.path.abspath(args.log)}
    if args.summary:
        write_json(args.summary, info)
    print(closing_summary(summary, clf.backend, args.threads, args.log), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return run(args)
    except KDefectError as exc:
        print(f"kdefect-edge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
