"""``fit``: the training lifecycle for a classification run.

One call goes from a config to a complete run folder: index and split the
data, compute class weights, build the model under the configured
``tf.distribute`` strategy, train (optionally head-first on a frozen backbone,
then fine-tune the top layers), keep the best checkpoint, evaluate on the
held-out test split and write every artefact atomically.
"""

from __future__ import annotations

import copy
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.config import Config, validate_config
from kdefect.core.run import RunDir
from kdefect.engine.callbacks import standard_callbacks
from kdefect.engine.optimizers import build_optimizer
from kdefect.engine.resume import STATE_DIR, ResumePoint, ResumeState
from kdefect.engine.selection import check_classifier_monitor, resolve_monitor, selection_keys
from kdefect.engine.strategy import make_strategy
from kdefect.errors import ConfigError, DataError
from kdefect.keras import keras, tf
from kdefect.models.compiled import build_training_state
from kdefect.tasks.base import get_task
from kdefect.tasks.heads import load_model
from kdefect.utils.io import atomic_dir, atomic_path

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """What ``fit`` would train on, before any folder exists: the index, split, profile and ``auto`` choices."""

    index: Any
    split: dict[str, np.ndarray]
    profile: dict[str, Any]
    choices: list[Any]


def plan_run(cfg: Config, split: dict[str, np.ndarray] | None = None) -> RunPlan:
    """Index, de-duplicate, split and profile the data, and resolve the ``auto`` settings; writes nothing.

    ``cfg`` is updated in place: its ``auto`` keys become the concrete values. ``kdefect data check`` prints this
    plan, so a user sees how kdefect reads a data set (format, classes, split, recipe) before training on it.
    """
    from kdefect.data.profile import FileScan, check_split_leaks, dedupe_index, profile_index
    from kdefect.data.recipe import (
        Choice,
        anchor_warning,
        few_images_warning,
        good_label_problem,
        resolve_auto,
        small_box_warning,
    )
    from kdefect.data.sources import index_dataset, subsample_indices
    from kdefect.data.split import split_index

    validate_config(cfg)
    scan = FileScan()  # each file is hashed once for dedupe, leak check and profile
    image_labels = get_task(cfg.task).image_labels
    index = index_dataset(cfg.data, image_labels)
    good = cfg.data.good_label if image_labels else None
    if problem := good_label_problem(index.classes, good):  # None without a label (and for detection)
        raise DataError(problem)  # before any hashing or training: the run could never judge escapes
    folders: tuple[str | None, str | None] = (None, None)  # data.split_folders resolved, and why
    if index.packed is not None:  # `kdefect data pack` checked, de-duplicated, split and profiled it once
        split, profile, dropped = index.packed.plan(split, cfg.data)
        profile = {"task": cfg.task, **profile}
    else:
        index, dropped = dedupe_index(index, cfg.data.duplicates, scan)
        if split is None and cfg.data.split_from:  # another run's split, image by image
            from kdefect.data.split import split_from_run

            split = split_from_run(index.paths, cfg.data.split_from)
        elif split is None:  # detection: labels are each image's dominant class (-1: no objects), for stratifying
            split, *folders = split_index(index, cfg.data, cfg.seed)
        else:
            check_split_leaks(index, split, scan)
        if cfg.data.subsample:  # detection: by each image's dominant class (images without objects are kept)
            train = np.asarray(split["train"])
            keep = subsample_indices(index.labels[train], index.classes, cfg.data.subsample, seed=cfg.seed)
            split = dict(split, train=train[keep])
        profile = {"task": cfg.task, **profile_index(index, split, good, dropped=dropped, scan=scan)}
        profile["duplicates"]["dropped_files"] = dropped
    choices = resolve_auto(cfg, profile, has_val=len(split.get("val", [])) > 0)
    if folders[0] is not None:  # a data set that came split into train/ val/ test/ folders
        cfg.data.split_folders = folders[0]
        choices.insert(0, Choice("data.split_folders", folders[0], folders[1]))
    profile["recipe"] = [{"key": c.key, "value": c.value, "reason": c.reason} for c in choices]
    warns = [few_images_warning(profile)] if image_labels else [small_box_warning(profile, cfg.data.image_size)]
    if cfg.task == "detect" and index.packed is None:  # boxes the detector's anchors can never learn
        sizes = [(f.width, f.height) for f in scan.infos(index.paths)]
        warns.append(anchor_warning(cfg.detect, cfg.data.image_size, index.boxes, index.box_labels, sizes,
                                    index.classes))
    if warns := [w for w in warns if w]:  # shown by the caller: fit logs them, `data check` prints them
        profile["warnings"] = warns
    _preflight(cfg, split, index)
    return RunPlan(index, split, profile, choices)


def prepare_run(cfg: Config, split: dict[str, np.ndarray] | None = None) -> tuple[RunDir, Any, dict[str, np.ndarray]]:
    """``plan_run``, then create the run folder with the resolved config, profile, classes and split (every task).

    A ``split`` from outside (cross-validation folds) indexes the de-duplicated data, as ``cross_validate`` does.
    Everything that can be checked is checked before the folder exists, so a bad config leaves no orphan
    (which would also shift the next run's name).
    """
    from kdefect.data.profile import format_profile
    from kdefect.data.split import save_split, write_skipped

    plan = plan_run(cfg, split)
    index, split, profile = plan.index, plan.split, plan.profile
    good = cfg.data.good_label if get_task(cfg.task).image_labels else None
    run = RunDir.create(cfg.runs_dir, cfg.name)
    with run.failure_recorded():
        cfg.save(run.config_path)
        run.write_json("data_profile.json", profile)
        run.save_classes(index.classes, good)
        save_split(run.path, index, split)
        if write_skipped(run.path, index.skipped):
            log.warning("%d bad image(s) skipped; see %s", len(index.skipped), run.path / "skipped.csv")
    log.info("data profile:\n%s", format_profile(profile))
    for c in plan.choices:
        log.info("auto: %s", c)
    for w in profile.get("warnings", []):
        log.warning("%s", w)
    log.info("run folder %s: %d classes, split %s", run.path, len(index.classes),
             {k: len(v) for k, v in split.items()})
    return run, index, split


def _preflight(cfg: Config, split: dict[str, np.ndarray], index: Any = None) -> None:
    """The checks that would otherwise fail only after the run folder exists: backbone and batch size."""
    validate_config(cfg)  # the resolved ``auto`` values too
    task = get_task(cfg.task)
    if task.preflight is not None:  # a task with its own lifecycle checks its own keys
        task.preflight(cfg, split, index)
        return
    from kdefect.models.backbones import check_backbone

    check_classifier_monitor(cfg.train.monitor)
    m = cfg.model
    check_backbone(m.backbone, min(cfg.data.image_size), weights=m.weights, alpha=m.alpha, attention=m.attention,
                   attention_in_blocks=m.attention_in_blocks)
    n_train = len(split["train"])
    if n_train < cfg.data.batch_size:  # training drops the last partial batch: nothing would be left
        raise DataError(f"the training split has {n_train} image(s), fewer than one batch (data.batch_size="
                        f"{cfg.data.batch_size}). Add images or set data.batch_size to {max(n_train, 1)} or less.")


def _datasets(cfg: Config, index: Any, split: dict[str, np.ndarray], seed: int) -> dict[str, tf.data.Dataset]:
    from kdefect.data.pipeline import make_dataset

    k = len(index.classes)
    if index.packed is not None:  # data.source tfrecord: stream the packed shards
        from kdefect.data.tfrecord import packed_datasets
        from kdefect.engine.multiworker import worker_role

        workers = worker_role().num_workers if cfg.train.strategy == "multi_worker" else 1
        return packed_datasets(index.packed, cfg.data, k, cfg.seed, workers=workers)
    paths = np.asarray(index.paths)
    out = {}
    for name, idx in split.items():
        if len(idx) == 0:
            continue
        out[name] = make_dataset(list(paths[idx]), index.labels[idx], k, cfg.data, training=(name == "train"),
                                 seed=seed)
    return out


def _compile(model: keras.Model, cfg: Config, loss: Any, lr: float, good_index: int | None) -> None:
    from kdefect.engine.selection import selection_metrics

    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
               *selection_metrics(int(model.output_shape[-1]), good_index, cfg.trust.target_escape)]
    optimizer = build_optimizer(cfg.train.optimizer, lr, cfg.train.weight_decay)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    build_training_state(model)  # one trace of the train step, not two


def _verbose(quiet: bool) -> int:
    if quiet:
        return 0
    return 1 if sys.stderr.isatty() or sys.stdout.isatty() else 2


def train_model(cfg: Config, run: RunDir, index: Any, split: dict[str, np.ndarray], quiet: bool = False,
                resume: ResumePoint | None = None, strategy: tf.distribute.Strategy | None = None
                ) -> tuple[keras.Model, dict[str, Any]]:
    """Build, compile and train the classifier; return the best model and training stats.

    ``resume`` continues from the snapshot of a killed run (``kdefect.engine.resume``): same epoch count, optimizer
    state, schedule, budget, best checkpoint and early stopping as an uninterrupted run.
    ``strategy``: one made already (multi-worker strategies must exist before any TF op), else from the config.
    """
    from kdefect.engine.multiworker import AgreedTimeBudget, is_multi_worker, local_copy
    from kdefect.losses import build_loss, compute_class_weights
    from kdefect.tasks.classify import build_classifier_from_config, freeze_backbone, unfreeze_top

    k = len(index.classes)
    counts = np.bincount(index.labels[split["train"]], minlength=k)
    weights = compute_class_weights(counts, cfg.loss.class_weights, cfg.loss.beta)
    run.write_json("class_weights.json", {"mode": cfg.loss.class_weights, "counts": dict(zip(index.classes,
                   counts.tolist())), "weights": dict(zip(index.classes, np.asarray(weights).tolist()))})
    done = resume.epoch if resume else 0
    data = _datasets(cfg, index, split, seed=cfg.seed + done)  # resumed: no replay of epoch 1's shuffle order
    keras.utils.set_random_seed(cfg.seed)
    strategy = strategy or make_strategy(cfg.train.strategy)
    multi = is_multi_worker(strategy)  # decisions must be agreed across workers (kdefect.engine.multiworker)
    with strategy.scope():
        model = build_classifier_from_config(cfg, k)
        loss = build_loss(cfg.loss, weights)
    t0 = time.perf_counter() - (resume.train_seconds if resume else 0.0)  # the budget already spent counts
    has_val = "val" in data
    good_index = index.classes.index(cfg.data.good_label) if cfg.data.good_label in index.classes else None
    monitor = resolve_monitor(cfg.train.monitor, good_index, has_val)
    cbs = standard_callbacks(cfg.train, cfg.data.batch_size, run.path / "history.csv", monitor,
                             loss_key="val_loss" if has_val else "loss",  # the LR follows the loss, not the selection
                             keys=selection_keys(monitor), checkpoint=run.checkpoint_path, start=t0,
                             history_rows=list(resume.history) if resume else None,
                             tensorboard=run.path / "tensorboard",
                             make_budget=(lambda s, start: AgreedTimeBudget(s, strategy, start)) if multi else None,
                             defer_checkpoint=not multi)
    history, counter, ckpt, budget = cbs.history, cbs.counter, cbs.best, cbs.budget
    callbacks = list(cbs.callbacks)
    # multi-worker: every epoch, so no worker's clock can disagree with another's on when to snapshot
    saver = ResumeState(run.path, t0, cbs.roles(), resume, every_s=0.0 if multi else cfg.train.snapshot_every_s)
    saver.restore_persistent()
    callbacks.append(saver)  # last: its snapshot sees the epoch's update of every other callback
    fit_kw = dict(validation_data=data.get("val"), steps_per_epoch=cfg.train.steps_per_epoch,
                  verbose=_verbose(quiet), callbacks=callbacks)
    phases = []
    if cfg.train.freeze_epochs > 0:
        phases.append(("head (frozen backbone)", cfg.train.freeze_epochs, cfg.train.learning_rate, "freeze"))
        phases.append((f"fine-tune (top {cfg.train.fine_tune_layers} layers)", cfg.train.epochs,
                       cfg.train.fine_tune_learning_rate, "unfreeze"))
    else:
        phases.append(("full", cfg.train.epochs, cfg.train.learning_rate, None))
    epoch = done
    for i, (title, until, lr, action) in enumerate(phases):
        if resume and resume.phase_stopped and i == resume.phase:
            continue  # early stopping or the budget had ended this phase before the crash
        if (budget and budget.exhausted) or until <= epoch or (resume and resume.done):
            continue
        with strategy.scope():
            if action == "freeze":
                freeze_backbone(model)
            elif action == "unfreeze":
                unfreeze_top(model, cfg.train.fine_tune_layers)
            _compile(model, cfg, loss, lr, good_index)
            saver.phase = i
            saver.restore_model(model, i, lr, cfg.train.lr_schedule)
        n_train = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        log.info("phase %s: epochs %d-%d, lr %g, %d trainable parameters", title, epoch + 1, until, lr, n_train)
        model.fit(data["train"], initial_epoch=epoch, epochs=until, **fit_kw)
        epoch = len(history.rows)
    saver.restore_model(model, -1, 0.0, cfg.train.lr_schedule)  # resumed with no epoch left: the snapshot's weights
    saver.finish(epoch)
    train_s = time.perf_counter() - t0
    if multi:  # the chief evaluates and exports alone: a plain copy needs no other worker
        model = local_copy(model, run.checkpoint_path)
    elif run.checkpoint_path.is_file():
        best = load_model(run.checkpoint_path)
        model.set_weights(best.get_weights())
        log.info("restored the weights of epoch %s (best %s %.4f)", max(ckpt.best_epoch, 0) + 1, monitor,
                 ckpt.best if ckpt.best is not None else float("nan"))
    stats = {"train_seconds": round(train_s, 2), "epochs_run": epoch, "best_epoch": max(ckpt.best_epoch, 0) + 1,
             "monitor": monitor, "best_value": ckpt.best,
             "train_images": counter.images, "train_images_per_s": round(counter.images_per_s, 2),
             "time_budget_exhausted": bool(budget and budget.exhausted),
             "optimizer_steps": (int(model.optimizer.iterations.numpy()) if model.optimizer  # else: no epoch was left
                                 else resume.optimizer_steps if resume else 0),
             "resumed_at_epoch": resume.epoch if resume else None,
             "params": int(model.count_params())}
    return model, stats


def save_model(model: keras.Model, run: RunDir) -> None:
    """Write model.keras and a SavedModel, each atomically."""
    with atomic_path(run.model_path, suffix=".keras") as tmp:
        model.save(tmp)
    with atomic_dir(run.saved_model_path) as tmp:
        tf.saved_model.save(model, str(tmp))


def fit(cfg: Config | None, split: dict[str, np.ndarray] | None = None, quiet: bool = False,
        resume: str | Path | None = None) -> RunDir | None:
    """Train a model from ``cfg`` and return its complete run folder.

    ``resume``: a run folder killed mid-way; training continues there from its last completed epoch
    (``cfg`` None takes the run's config; a given ``cfg`` must match it, ``auto`` values aside).

    Classifiers are then calibrated on the validation split (``trust.calibrate``), detectors get their image
    reject threshold there, and both are judged READY or NOT READY on the test split against
    ``trust.targets``; the verdict is logged and kept in ``calibration.json`` (``kdefect tflite`` refuses a
    NOT READY run).  ``cfg`` is not changed: the resolved copy is the run's ``config.yaml``.  With
    ``train.strategy: multi_worker`` only the chief returns the run; the other workers train in a temporary
    folder, remove it and return None.
    """
    from kdefect.engine.evaluator import evaluate_model

    point = None
    strategy, scratch = None, None
    if resume is not None:
        from kdefect.engine.resume import load_run_index, open_for_resume, resume_role

        role, strategy = resume_role(resume)  # a multi-worker run: the strategy first, as below
        chief = role is None or role.is_chief
        run, cfg, point = open_for_resume(resume, cfg, read_only=not chief)
        index, split = load_run_index(run)
        if not chief:  # a restarted worker reads the chief's snapshot (shared storage) and writes only its own folder
            from kdefect.engine.multiworker import worker_scratch

            scratch = worker_scratch(role)
            run = RunDir.create(scratch, run.path.name)
    else:
        if cfg is None:
            raise ConfigError("fit needs a config (or resume=RUN to continue a run).")
        cfg = copy.deepcopy(cfg)
        task = get_task(cfg.task)
        if cfg.train.strategy == "multi_worker" and task.train is None:  # the strategy first: collectives start up
            from kdefect.engine.multiworker import worker_role, worker_scratch

            role, strategy = worker_role(), make_strategy(cfg.train.strategy)
            if not role.is_chief:  # only the chief writes the run folder
                scratch = worker_scratch(role)
                cfg.runs_dir = str(scratch)
        run, index, split = prepare_run(cfg, split)
        if task.train is not None:  # a task with its own training loop, on this run folder and these callbacks
            with run.failure_recorded():  # an error leaves a run marked failed, never one that looks complete
                run = task.train(cfg, run, index, split, standard_callbacks, quiet=quiet)
                if task.image_scores is not None:  # an image-level reject rule: its threshold and verdict
                    _judge_images(cfg, run)
            return run
    with run.failure_recorded():
        model, stats = train_model(cfg, run, index, split, quiet=quiet, resume=point, strategy=strategy)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            log.info("worker done; the chief writes the run folder")
            return None
        save_model(model, run)
        paths = np.asarray(index.paths)
        eval_split = "test" if len(split.get("test", [])) else "val"
        eval_paths, eval_labels = list(paths[split[eval_split]]), index.labels[split[eval_split]]
        probs = _cached_probs(run, model, eval_split, eval_paths) if cfg.trust.calibrate else None
        metrics = evaluate_model(model, eval_paths, eval_labels, index.classes, cfg, out_dir=run.path,
                                 good_label=cfg.data.good_label, skipped=len(index.skipped), quiet=quiet, probs=probs)
        metrics.update({"split": eval_split, "training": stats})
        run.write_json("metrics.json", metrics)
        verdict = _judge(cfg, run, model, eval_paths, eval_labels, index.classes)
        shutil.rmtree(run.path / STATE_DIR, ignore_errors=True)  # complete: nothing to resume, nothing in the manifest
        run.write_manifest()
    log.info("done: %s accuracy %.4f, macro recall %.4f -> %s", eval_split, metrics["accuracy"],
             metrics["macro_recall"], run.path)
    # one line here: the CLI prints the full table (format_verdict) once, at the very end
    log.info("verdict on the %s split: %s%s", verdict["split"], verdict["verdict"],
             "".join(f"; {r}" for r in verdict["reasons"]))
    return run


def _cached_probs(run: RunDir, model: keras.Model, split: str, paths: list[str]) -> np.ndarray | None:
    """The split's probabilities from the outputs cache that calibration reads next (``split_outputs``): one
    inference pass over the split instead of two. None when the cache's images are not ``paths`` in order."""
    from scipy.special import softmax  # lazy: scipy loads only when used

    from kdefect.tasks.outputs import split_outputs

    out = split_outputs(run, split, model=model)
    if [str(p) for p in out["paths"]] != [str(p) for p in paths]:
        return None
    return softmax(np.asarray(out["logits"], np.float64), axis=1)


def _judge_images(cfg: Config, run: RunDir) -> None:
    """Choose the image reject threshold on validation and judge it on test (``trust.calibrate``)."""
    if not cfg.trust.calibrate:
        log.warning("trust.calibrate is off: the run has no operating threshold and is NOT READY for export.")
        return
    from kdefect.trust.calibrate import calibrate_run

    verdict = calibrate_run(run.path)["verdict"]
    log.info("verdict on the %s split: %s%s", verdict["split"], verdict["verdict"],
             "".join(f"; {r}" for r in verdict["reasons"]))


def _judge(cfg: Config, run: RunDir, model: keras.Model, paths: list[str], labels: np.ndarray,
           classes: list[str]) -> dict[str, Any]:
    """Calibrate on validation and judge on test (``trust.calibrate``); uncalibrated runs are NOT READY."""
    from kdefect.trust.verdict import assess, targets_of

    if cfg.trust.calibrate:
        from kdefect.trust.calibrate import calibrate_run

        return calibrate_run(run.path, model=model)["verdict"]
    from kdefect.engine.evaluator import predict_probs

    log.warning("trust.calibrate is off: the run has no operating point and is NOT READY for export.")
    return assess(predict_probs(model, paths, cfg), labels, classes, cfg.data.good_label, None,
                  targets_of(cfg))
