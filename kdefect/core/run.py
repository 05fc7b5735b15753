"""The run folder: the contract between training and everything after it.

``runs/<name>/`` holds the resolved config, class names, split lists, class
weights, the model, history, metrics and a manifest with the sha256 of every
artefact.  Later steps (evaluate, export, trust) read a run only through here.
TF-free so that reports and monitors can read runs without TensorFlow.

A run that stopped on an error holds ``failed.json`` (the error); ``open``
refuses it, so no later step evaluates or exports a half-made run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdefect.config import RULES
from kdefect.errors import ConfigError, DataError
from kdefect.utils.io import fsync_dir, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FAILED = "failed.json"
_SKIP_IN_MANIFEST = {MANIFEST}


def check_run_name(name: str) -> str:
    """``name`` if it is one plain folder name, else ConfigError (``../../x`` must not leave ``runs_dir``)."""
    why = RULES["name"](str(name))
    if why:
        raise ConfigError(f"name: {why}.")
    return str(name)


@dataclass
class RunDir:
    """A run folder on disk with typed accessors for its artefacts."""

    path: Path

    # ---- creation -------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, name: str, exist_ok: bool = False) -> RunDir:
        """Make ``runs_dir/name``; if taken (and not exist_ok) use ``name-2``, ``name-3``...

        Each candidate is claimed with an exclusive ``mkdir``, so two runs started together
        never share a folder: the loser of the race moves on to the next suffix.
        """
        base = Path(runs_dir)
        base.mkdir(parents=True, exist_ok=True)
        check_run_name(name)
        for i in itertools.count(1):
            path = base / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                if exist_ok and i == 1 and path.is_dir():
                    return cls(path)
                continue
            fsync_dir(base)
            return cls(path)
        raise AssertionError("unreachable")

    @classmethod
    def open(cls, path: str | Path, allow_failed: bool = False) -> RunDir:
        """Open an existing run folder (anything with a config.yaml that did not fail, unless ``allow_failed``)."""
        p = Path(path)
        if p.is_file():
            p = p.parent
        if not (p / "config.yaml").is_file():
            raise DataError(f"'{path}' is not a kdefect run folder (no config.yaml). Pass the folder `kdefect fit` made.")
        run = cls(p)
        failure = run.failure()
        if failure is not None and not allow_failed:
            raise DataError(f"run '{p}' failed ({failure.get('error', 'unknown error')}) and is incomplete; "
                            "fix the cause and fit again.")
        return run

    # ---- failure marker -----------------------------------------------------
    def mark_failed(self, exc: BaseException) -> Path:
        """Record why this run stopped, so that ``open`` (and so evaluate, export, report) refuses it."""
        return write_json(self.path / FAILED, {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                               "type": type(exc).__name__})

    @contextlib.contextmanager
    def failure_recorded(self) -> Iterator[RunDir]:
        """Run the body; if it raises, mark this run failed and re-raise.

        Only errors count: Ctrl-C or a kill leaves the run unmarked, as an interrupted run to resume.
        """
        try:
            yield self
        except Exception as exc:
            self.mark_failed(exc)
            log.error("run %s stopped on an error and is marked failed (%s)", self.path, FAILED)
            raise

    def failure(self) -> dict[str, Any] | None:
        """The recorded failure (``{"error", "type"}``), or None for a run that did not fail."""
        f = self.path / FAILED
        return read_json(f) if f.is_file() else None

    # ---- well-known paths -------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def saved_model_path(self) -> Path:
        return self.path / "saved_model"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "best.keras"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    # ---- small JSON artefacts ---------------------------------------------
    def save_classes(self, classes: list[str], good_label: str | None) -> None:
        good = good_label if good_label in classes else None
        write_json(self.path / "classes.json", {"classes": list(classes), "good_label": good})

    def classes(self) -> tuple[list[str], str | None]:
        d = read_json(self.path / "classes.json")
        return list(d["classes"]), d.get("good_label")

    def config(self) -> Any:
        """The resolved config this run was trained with (a ``kdefect.config.Config``)."""
        import yaml

        from kdefect.config import config_from_dict

        return config_from_dict(yaml.safe_load(self.config_path.read_text(encoding="utf-8")))

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path / name, obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    # ---- integrity ----------------------------------------------------------
    def write_manifest(self) -> Path:
        """sha256 of every artefact, so an auditor can tell nothing changed after training."""
        files = {}
        for f in sorted(p for p in self.path.rglob("*") if p.is_file()):
            rel = f.relative_to(self.path).as_posix()
            if rel in _SKIP_IN_MANIFEST or rel.startswith("tensorboard/") or "/." in "/" + rel:
                continue
            files[rel] = sha256_file(f)
        return write_json(self.path / MANIFEST, {"files": files})

    def update_manifest(self, names: list[str]) -> Path | None:
        """Re-hash only ``names`` (files a later step rewrote, e.g. calibration), keeping every other entry.

        Why not ``write_manifest``: re-hashing everything would bless a file changed since training.
        """
        if not (self.path / MANIFEST).is_file():
            return None
        files = dict(read_json(self.path / MANIFEST)["files"])
        for rel in names:
            f = self.path / rel
            if f.is_file():
                files[rel] = sha256_file(f)
            else:
                files.pop(rel, None)
        return write_json(self.path / MANIFEST, {"files": dict(sorted(files.items()))})

    def verify_manifest(self) -> list[str]:
        """Return the artefacts whose content no longer matches the manifest."""
        man = read_json(self.path / MANIFEST)["files"]
        bad = []
        for rel, digest in man.items():
            f = self.path / rel
            if not f.is_file() or sha256_file(f) != digest:
                bad.append(rel)
        return bad
