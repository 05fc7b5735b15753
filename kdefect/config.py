"""Typed, layered run configuration.

Layers, each overriding the one before: dataclass defaults, then a YAML file,
then ``--set a.b=value`` overrides from the CLI.  Unknown keys anywhere are
rejected with the closest valid key suggested, and values are checked against
the field types, the allowed choices (``CHOICES``) and the allowed ranges
(``RULES``), so a typo or an impossible value (``batch_size: 0``, a NaN
learning rate) stops with one line naming the key instead of a traceback
or, worse, a "complete" run holding an untrained model.  The
resolved config is saved beside every run (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdefect.errors import ConfigError
from kdefect.utils.io import write_text


@dataclass
class SyntheticConfig:
    """The built-in procedural defect data (the embedded default)."""

    classes: list[str] = field(default_factory=lambda: ["good", "scratch", "spot", "crack", "patch"])
    n_per_class: int = 80
    size: int = 64
    seed: int = 0
    contrast: float = 1.0


@dataclass
class AugmentConfig:
    """Training-time augmentation; every op is off when its value is 0/false."""

    flip: bool = True
    rot90: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    crop_min_area: float = 1.0
    noise_std: float = 0.0


@dataclass
class DataConfig:
    """Where the images come from and how they are fed."""

    source: str = "synthetic"
    format: str = "auto"
    # "auto": chosen from the data profile (see kdefect.data.recipe), resolved into the saved config.yaml
    image_size: list[int] | str = "auto"
    max_auto_size: int = 128  # the largest side "auto" picks (CPU cost grows with its square)
    resize: str = "auto"  # squash | letterbox | crop | auto; the device runs the same resize bit-exactly
    channels: int = 3
    split: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    # a folder already split into train/ (val/) test/ subfolders: auto (keep the given split when train/ holds every
    # class, else pool) | keep (always; an error when train/ lacks a class) | pool (split everything by data.split)
    split_folders: str = "auto"
    batch_size: int = 32
    cache: str = "auto"
    on_bad_image: str = "fail"
    good_label: str | None = "good"
    label_rule: str = "largest_area"
    sampling: str = "auto"  # shuffle | balanced (each class equally often per batch; detection: repeat factors) | auto
    duplicates: str = "drop"  # identical files: drop (keep the first copy) | fail
    subsample: dict[str, float] = field(default_factory=dict)
    # another run's split lists (train/val/test by path) instead of a new split: a detector warm-started from a
    # classifier takes the classifier's split, so its test images were never training images of the backbone
    split_from: str = ""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """The network: a registered backbone plus head options."""

    backbone: str = "tiny_cnn"
    weights: str = "none"
    alpha: float = 1.0
    attention: str = "none"
    attention_in_blocks: bool = False
    pooling: str = "avg"
    dropout: float = 0.2


@dataclass
class LossConfig:
    """Loss for (possibly imbalanced) classes."""

    name: str = "crossentropy"
    class_weights: str = "none"
    beta: float = 0.999
    gamma: float = 2.0
    alpha: str = "class_weights"
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation and the transfer-learning schedule."""

    epochs: int = 10
    freeze_epochs: int = 0
    fine_tune_layers: int = -1
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    lr_schedule: str = "plateau"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    patience: int = 0
    steps_per_epoch: int | None = None
    strategy: str = "default"
    time_budget_s: float | None = None
    # resume snapshot (fit --resume) at the first epoch end this many seconds after the last one; 0 = every epoch
    snapshot_every_s: float = 30.0
    # which epoch to keep (and early-stop on): auto = val_frr_at_escape with a good class, else val_macro_recall
    monitor: str = "auto"


@dataclass
class DetectConfig:
    """Detection-only settings (used when ``task: detect``)."""

    architecture: str = "yolov8"
    backbone: str = "yolo_v8_xs"
    fpn_depth: int = 1
    score_threshold: float = 0.25
    iou_threshold: float = 0.5
    max_detections: int = 100
    augment_mosaic: bool = False
    jitter: list[float] = field(default_factory=lambda: [0.75, 1.25])  # JitteredResize scale range; [] = off
    head_convs: int = 3  # RetinaNet head depth (3 = the paper; 1-2 for CPU budgets)
    # RetinaNet anchors (one size per pyramid level P3-P7, each at 3 scales and these aspect ratios h/w) and the IoU
    # that makes an anchor background (below match_iou[0]) or positive (at or above match_iou[1]); YOLOv8 is anchor-free
    anchor_sizes: list[float] = field(default_factory=lambda: [32.0, 64.0, 128.0, 256.0, 512.0])
    anchor_aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    match_iou: list[float] = field(default_factory=lambda: [0.4, 0.5])
    max_boxes: int = 50  # boxes per image after padding (more are dropped in training)
    class_agnostic_nms: bool = False
    eval_score_threshold: float = 0.001  # candidates kept for COCO mAP (recall is reported at score_threshold)
    # warm start: a classification run (its model.keras) or a weights file whose layers fill the backbone's by
    # name and shape; "none" trains from scratch
    backbone_weights: str = "none"
    backbone_min_match: float = 0.9  # the share of the backbone's weights that must load, or the fit stops
    # training tricks (kdefect.tasks.detect_tricks), off until a benchmark shows they help
    ema: bool = False  # validate and keep an exponential moving average of the weights (YOLOv8)
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0  # steps over which the EMA decay ramps up
    warmup_epochs: float = 0.0  # linear learning-rate warm-up (0 = off)
    mosaic_epochs: int = 0  # with augment_mosaic: only the first N epochs use it (0 = every epoch)


@dataclass
class TargetsConfig:
    """What a model must show on the held-out test split to be READY for the line (``trust.targets``)."""

    max_escape_upper: float = 0.05  # 95% Clopper-Pearson upper bound of the escape rate at the operating point
    min_class_recall: float = 0.80  # every class, at the operating point
    max_review_share: float = 0.20  # parts sent to human review
    max_false_reject: float = 0.25  # good parts rejected at the operating point


@dataclass
class TrustConfig:
    """Calibration after ``fit`` and the READY / NOT READY verdict."""

    calibrate: bool = True
    target_escape: float = 0.01  # escape rate allowed on validation when choosing the operating point
    target_risk: float = 0.005  # residual error allowed on parts not sent to review
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class Config:
    """A whole run: what to learn, from what data, how."""

    task: str = "classify"
    name: str = "run"
    runs_dir: str = "runs"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


CHOICES: dict[str, tuple[str, ...]] = {
    "task": ("classify", "detect"),
    "data.format": ("auto", "folder", "voc", "yolo", "coco", "csv", "names", "synthetic", "tfds"),
    "data.cache": ("auto", "memory", "none"),
    "data.on_bad_image": ("fail", "skip"),
    "data.label_rule": ("largest_area", "most_boxes", "first", "filename"),
    "data.resize": ("auto", "squash", "letterbox", "crop"),
    "data.sampling": ("auto", "shuffle", "balanced"),
    "data.duplicates": ("drop", "fail"),
    "data.split_folders": ("auto", "keep", "pool"),
    "train.monitor": ("auto", "val_loss", "val_macro_recall", "val_frr_at_escape", "val_map50"),
    "model.attention": ("none", "se", "cbam"),
    "model.pooling": ("avg", "max"),
    "loss.name": ("crossentropy", "focal"),
    "loss.class_weights": ("none", "inverse", "effective"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.lr_schedule": ("constant", "cosine", "plateau"),
    "train.strategy": ("default", "mirrored", "one_device", "multi_worker", "tpu"),
    "detect.architecture": ("yolov8", "retinanet"),
    "data.channels": (1, 3),
}


@dataclass(frozen=True)
class Range:
    """The finite numbers ``lo <= v <= hi`` (``<`` where ``*_open``; None: unbounded); lists are checked per item."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, value: Any) -> str | None:
        items = value if isinstance(value, list) else [value]
        ok = all(v is None or (math.isfinite(v) and self._within(v)) for v in items)
        return None if ok else f"{value!r} is out of range; allowed: {self}"

    def _within(self, v: float) -> bool:
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return lo_ok and hi_ok

    def __str__(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return " and ".join(b for b in (lo, hi) if b) or "a finite number"


def _split_rule(value: list[float]) -> str | None:
    ok = (len(value) == 3 and all(math.isfinite(v) and 0 <= v <= 1 for v in value)
          and abs(sum(value) - 1) <= 1e-6 and value[0] > 0 and value[1] + value[2] > 0)
    return None if ok else (f"{value!r} is not allowed; use three fractions [train, val, test], each 0 to 1, "
                            "summing to 1, with train > 0 and val + test > 0 (a split to evaluate on)")


def _anchor_sizes_rule(value: list[float]) -> str | None:
    ok = len(value) == 5 and all(math.isfinite(v) and v > 0 for v in value)
    return None if ok else (f"{value!r} is not allowed; use five positive anchor sizes in pixels, one per pyramid "
                            "level P3-P7 (default [32, 64, 128, 256, 512])")


def _ratios_rule(value: list[float]) -> str | None:
    ok = 1 <= len(value) <= 9 and all(math.isfinite(v) and v > 0 for v in value) and len(set(value)) == len(value)
    return None if ok else f"{value!r} is not allowed; use 1 to 9 distinct positive aspect ratios (h/w), e.g. [0.5, 1, 2]"


def _match_iou_rule(value: list[float]) -> str | None:
    ok = len(value) == 2 and all(math.isfinite(v) for v in value) and 0 < value[0] <= value[1] <= 1
    return None if ok else (f"{value!r} is not allowed; use [background_below, positive_from] with "
                            "0 < background_below <= positive_from <= 1 (default [0.4, 0.5])")


def _jitter_rule(value: list[float]) -> str | None:
    ok = not value or (len(value) == 2 and all(math.isfinite(v) and v > 0 for v in value) and value[0] <= value[1])
    return None if ok else f"{value!r} is not allowed; use [] (off) or [min_scale, max_scale] with 0 < min <= max"


RUN_NAME = re.compile(r"\w[\w.-]{0,127}")  # one plain folder name: no separator, no "..", no leading dot


def _name_rule(value: str) -> str | None:
    return None if RUN_NAME.fullmatch(value) else (
        f"{value!r} is not a plain folder name; use letters, digits, '.', '-' and '_' "
        "(starting with a letter or digit, at most 128 characters)")


_FRACTION, _POSITIVE, _COUNT = Range(0, 1), Range(0, lo_open=True), Range(1)
# Allowed values per key: a rule returns None when the value is fine, else why not (prefixed with the key).
RULES: dict[str, Callable[[Any], str | None]] = {
    "name": _name_rule,
    "seed": Range(0),
    "data.max_auto_size": Range(8),
    "data.split": _split_rule,
    "data.batch_size": _COUNT,
    "data.synthetic.n_per_class": _COUNT,
    "data.synthetic.size": Range(8),
    "data.synthetic.seed": Range(0),
    "data.synthetic.contrast": _POSITIVE,
    "data.augment.brightness": _FRACTION,
    "data.augment.contrast": _FRACTION,
    "data.augment.crop_min_area": Range(0, 1, lo_open=True),
    "data.augment.noise_std": Range(0),
    "model.alpha": _POSITIVE,
    "model.dropout": Range(0, 1, hi_open=True),
    "loss.beta": Range(0, 1, hi_open=True),
    "loss.gamma": Range(0),
    "loss.label_smoothing": Range(0, 1, hi_open=True),
    "train.epochs": _COUNT,
    "train.freeze_epochs": Range(0),
    "train.fine_tune_layers": Range(-1),
    "train.learning_rate": _POSITIVE,
    "train.fine_tune_learning_rate": _POSITIVE,
    "train.weight_decay": Range(0),
    "train.patience": Range(0),
    "train.steps_per_epoch": _COUNT,
    "train.time_budget_s": _POSITIVE,
    "train.snapshot_every_s": Range(0),
    "detect.fpn_depth": _COUNT,
    "detect.score_threshold": _FRACTION,
    "detect.iou_threshold": _FRACTION,
    "detect.max_detections": _COUNT,
    "detect.jitter": _jitter_rule,
    "detect.head_convs": _COUNT,
    "detect.anchor_sizes": _anchor_sizes_rule,
    "detect.anchor_aspect_ratios": _ratios_rule,
    "detect.match_iou": _match_iou_rule,
    "detect.max_boxes": _COUNT,
    "detect.eval_score_threshold": _FRACTION,
    "detect.backbone_min_match": Range(0, 1, lo_open=True),
    "detect.ema_decay": Range(0, 1, lo_open=True, hi_open=True),
    "detect.ema_tau": _POSITIVE,
    "detect.warmup_epochs": Range(0),
    "detect.mosaic_epochs": Range(0),
    "trust.target_escape": Range(0, 1, lo_open=True, hi_open=True),
    "trust.target_risk": Range(0, 1, lo_open=True, hi_open=True),
    "trust.targets.max_escape_upper": Range(0, 1, lo_open=True),  # an upper bound of 0 no test set can show
    "trust.targets.min_class_recall": _FRACTION,
    "trust.targets.max_review_share": _FRACTION,
    "trust.targets.max_false_reject": _FRACTION,
}


def _check_value(where: str, value: Any) -> None:
    """Apply ``RULES[where]``; any other float must at least be finite (no NaN / inf anywhere)."""
    rule = RULES.get(where)
    why = rule(value) if rule is not None else None
    if why is None and isinstance(value, float) and not math.isfinite(value):
        why = f"{value!r} is not allowed; use a finite number"
    if why:
        raise ConfigError(f"{where}: {why}.")


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else f" Valid keys: {', '.join(sorted(valid))}."


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last: ConfigError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                last = exc
        raise last or ConfigError(f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {value!r}.")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}.")
        kt, vt = args or (str, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}.")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}.")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}.")
        return str(value) if value is not None else "none"
    return value


def _image_size(value: Any) -> list[int] | str:
    if value == "auto":
        return "auto"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v >= 8 for v in value):
        return value
    raise ConfigError(f"data.image_size: expected [height, width] (each >= 8) or auto, got {value!r}.")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{where}'.{_suggest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], where)
        if where == "data.image_size":
            kwargs[key] = _image_size(kwargs[key])
        choices = CHOICES.get(where)
        if choices and kwargs[key] not in choices:
            names = [str(c) for c in choices]
            raise ConfigError(
                f"{where}: '{kwargs[key]}' is not one of {', '.join(names)}.{_suggest(str(kwargs[key]), names)}"
            )
        _check_value(where, kwargs[key])
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "subsample":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b=value`` into ``{'a': {'b': value}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value (e.g. model.backbone=mobilenet_v2).")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: dict[str, Any] = {}
    cur = node
    parts = key.split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> Config:
    """Resolve defaults <- YAML file <- ``extra`` dict <- ``--set`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist. Shipped configs are in the configs/ folder.")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"config file '{p}' is not UTF-8 text (a binary file?). Pass a YAML file, "
                              "e.g. one from configs/.") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{p}' is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping of settings at the top level.")
        values = _merge(values, loaded)
    if extra:
        values = _merge(values, extra)
    for ov in overrides:
        values = _merge(values, parse_override(ov))
    return _build(Config, values)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Strictly build a Config from a plain dict (e.g. a saved ``config.yaml``)."""
    return _build(Config, values)


def validate_config(cfg: Config) -> Config:
    """Re-check every key of a Config built or changed in code (attributes set directly skip ``load_config``)."""
    return config_from_dict(cfg.to_dict())
