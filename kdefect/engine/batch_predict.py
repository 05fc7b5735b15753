"""``predict_parts``: score 100,000s of images in bounded memory, in resumable parts.

Why parts: a job over an archive runs for hours; writing every ``part_size``
images to its own file (atomically) means memory holds one part's rows at
most, and a restarted job skips the parts already on disk.  ``_job.json``
records the model and a hash of the sorted input list, so a restart against
different inputs or another model is refused instead of mixing results.

Each part streams through tf.data (parallel decode + resize, prefetch) into
the model loaded once (each file decoded once: only files the pipeline drops
are checked with Pillow, for the reason in the row), and rows come from the same decision rule as
``kdefect predict`` (``predictor.decision_rows``).  Parquet is written when
asked (needs pyarrow), CSV otherwise.  For millions of archived images on a
cluster, see docs/scale.md (Apache Beam RunInference) rather than a home-made
scheduler here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.errors import ConfigError, DataError
from kdefect.utils.io import atomic_path, read_json, write_json, write_text

from .predictor import _task_of, collect_images, csv_text, decision_rows, output_columns

log = logging.getLogger(__name__)

JOB_FILE = "_job.json"
FORMATS = ("csv", "parquet")


class _Scorer:
    """A model loaded once: probabilities, features and kNN flags for a list of files, streamed in batches."""

    def __init__(self, target: Path, batch_size: int) -> None:
        from kdefect.core.decisions import rule_from_sidecar, rule_from_thresholds

        self.batch_size, self.tflite = batch_size, target.suffix == ".tflite"
        if self.tflite:
            from kdefect.core.sidecar import read_sidecar
            from kdefect.edge.interpreter import TFLiteRunner, roles_of

            sc = read_sidecar(target)
            self.size, self.channels, self.resize = tuple(sc.input.size), sc.input.channels, sc.input.resize
            self.runner = TFLiteRunner(target, roles=roles_of(sc.output))
            self.classes, self.rule, self.gate = list(sc.labels), rule_from_sidecar(sc, model_path=target), None
            return
        from kdefect.core.calibration import load_calibration, thresholds_from
        from kdefect.core.run import RunDir
        from kdefect.data.pipeline import resize_mode
        from kdefect.tasks.heads import head_model, load_model

        run = RunDir.open(target)
        cfg = run.config()
        model_file = target if target.suffix in (".keras", ".h5") else run.model_path
        cal = load_calibration(run) if model_file == run.model_path else None
        self.run, self.classes = run, run.classes()[0]
        self.size, self.channels, self.resize = tuple(cfg.data.image_size), cfg.data.channels, resize_mode(cfg.data)
        from kdefect.keras import tf

        heads, self.is_logits = head_model(load_model(model_file))
        self.heads = tf.function(lambda x: heads(tf.cast(x, tf.float32), training=False), reduce_retracing=True)
        self.rule = rule_from_thresholds(self.classes, thresholds_from(cal))
        self.gate = (cal or {}).get("feature_ood")

    def batches(self, files: list[Path]) -> Iterator[Any]:
        """(paths, uint8 images) batches; a file that cannot be decoded is left out here, not fatal."""
        from kdefect.data.pipeline import load_image
        from kdefect.keras import tf

        ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
        ds = ds.map(lambda p: (p, load_image(p, self.size, self.channels, self.resize)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
        yield from ds.batch(self.batch_size).prefetch(2)

    def score(self, files: list[Path]) -> tuple[list[Path], dict[str, str], np.ndarray, np.ndarray | None,
                                                list[bool] | None]:
        """(readable files, {unreadable file: reason}, probabilities, features (TFLite) or None, kNN flags or None).

        Why not ``predict``'s up-front check: it decodes every file with Pillow before
        TF decodes it again.  Here each file is decoded once, and only the files the
        pipeline dropped are checked, for the same human reason ``predict`` gives.
        """
        from scipy.special import softmax

        from kdefect.data.images import check_image

        probs, feats, seen = [], [], []
        for paths, x in self.batches(files):
            seen += [p.decode() for p in paths.numpy()]
            if self.tflite:
                p, f = self.runner.run_all(x.numpy())
            else:
                f, o = self.heads(x)
                o = np.asarray(o, np.float64)
                p = softmax(o if self.is_logits else np.log(np.clip(o, 1e-12, 1.0)), axis=1)
                f = np.asarray(f).reshape(len(f), -1)
            probs.append(p)
            if f is not None:
                feats.append(f)
        ok = set(seen)
        readable = [f for f in files if str(f) in ok]
        bad = {str(f): f"unreadable image: {check_image(f) or 'cannot be decoded'}" for f in files if str(f) not in ok}
        k = len(self.classes)
        prob = np.concatenate(probs) if probs else np.zeros((0, k))
        feat = np.concatenate(feats) if feats else None
        knn = None
        if self.gate and feat is not None:
            from .predictor import _knn_flags

            knn = _knn_flags(self.run, self.gate, feat)
        return readable, bad, prob, (feat if self.tflite else None), knn


def _write_part(path: Path, rows: list[dict[str, Any]], classes: list[str], has_knn: bool, fmt: str) -> None:
    if fmt == "csv":
        write_text(path, csv_text(rows, classes, has_knn))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = output_columns(classes, has_knn)
    table = pa.table({c: [r.get(c) if r.get(c) != "" else None for r in rows] for c in cols})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def _check_job(out: Path, job: dict[str, Any]) -> None:
    if (out / JOB_FILE).is_file():
        old = read_json(out / JOB_FILE)
        if old != job:
            diff = sorted(k for k in job if old.get(k) != job[k])
            raise DataError(f"'{out}' holds parts of another job (different {', '.join(diff)}). "
                            "Use a new --out-dir, or delete the old parts to start over.")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / JOB_FILE, job)


def predict_parts(model: str | Path, inputs: list[str | Path], out_dir: str | Path, part_size: int = 10_000,
                  fmt: str = "csv", batch_size: int = 64) -> dict[str, Any]:
    """Score every image below ``inputs`` into ``out_dir/part-NNNNN.{csv,parquet}``; resumes where it stopped.

    Returns ``{"images", "parts", "skipped_parts", "seconds", "model_load_seconds", "images_per_s"}`` for this
    call (seconds and images/s exclude loading the model).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format '{fmt}' is unknown; use {' or '.join(FORMATS)}.")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ConfigError("Parquet output needs pyarrow: pip install pyarrow, or use --format csv.") from exc
    if part_size < 1:
        raise ConfigError(f"part size must be >= 1, got {part_size}.")
    target, out = Path(model).resolve(), Path(out_dir)
    if _task_of(target) != "classify":
        raise ConfigError("predict in parts (--out-dir) scores classifiers; use --out for a detection model.")
    files = collect_images(list(inputs))
    digest = hashlib.sha256("\n".join(map(str, files)).encode()).hexdigest()
    _check_job(out, {"model": str(target), "inputs": digest, "n_images": len(files), "part_size": part_size,
                     "format": fmt})
    n_parts = -(-len(files) // part_size)
    scorer, done, skipped, t0, load_s = None, 0, 0, time.perf_counter(), 0.0
    for i in range(n_parts):
        path = out / f"part-{i:05d}.{fmt}"
        if path.is_file():  # written atomically: present means complete
            skipped += 1
            continue
        if scorer is None:  # loaded once, and only when there is work left
            t_load = time.perf_counter()
            scorer = _Scorer(target, batch_size)
            load_s = time.perf_counter() - t_load
        part = files[i * part_size:(i + 1) * part_size]
        readable, bad, probs, feats, knn = scorer.score(part)
        rows = decision_rows(part, readable, bad, probs, feats, scorer.rule, knn)
        _write_part(path, rows, scorer.classes, knn is not None, fmt)
        done += len(part)
        rate = done / max(time.perf_counter() - t0 - load_s, 1e-9)
        left = len(files) - (i + 1) * part_size
        log.info("part %d/%d: %d images (%d unreadable) -> %s; %.0f images/s, about %.0f s left", i + 1, n_parts,
                 len(part), len(bad), path.name, rate, max(left, 0) / rate)
    if skipped:
        log.info("resumed: %d part(s) were already written", skipped)
    secs = time.perf_counter() - t0 - load_s
    return {"images": done, "parts": n_parts, "skipped_parts": skipped, "seconds": round(secs, 2),
            "model_load_seconds": round(load_s, 2), "images_per_s": round(done / secs, 2) if done else 0.0}
