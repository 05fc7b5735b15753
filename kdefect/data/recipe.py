"""``auto`` settings chosen from the data profile, each with its reason.

Why: the shipped defaults were tuned on balanced, square NEU images.  On a
line's own data (a dominant good class, elongated parts, small defects) the
same defaults trained a model that passed every defect.  Each ``auto`` key is
resolved here, once, from ``data_profile.json``; the concrete value is written
into the run's ``config.yaml`` (so the run is reproducible) and the reason is
printed and saved (``recipe`` in ``data_profile.json``).  Any key set
explicitly is left alone.  TF-free.

Rules (documented in docs/own-data.md):

- ``data.sampling``: ``balanced`` when the training split's largest class is
  >= ``IMBALANCE_BALANCE`` x its smallest, else ``shuffle``.  Classifiers then
  draw every class equally often per batch; detectors (classes counted by each
  image's dominant class) draw the images of rare classes more often by repeat
  factors (measured: tools/results/detect_rare.md);
- ``data.resize``: ``squash``.  For varied, elongated parts (aspect p90 / p10 > ``ASPECT_SPREAD`` and p90 >=
  ``ELONGATED``) a letterbox would keep each part's shape, but measured on such parts (``tools/tile_like.py``,
  tools/results/recipe.md, ``tile*`` sections) it lost to squashing at an equal input size in every seed, at the
  128 px cap (where it shrinks a part by its long side on both axes) and where the parts fit; the reason line
  says so.  ``letterbox`` stays an explicit choice;
- ``data.image_size``: square, the median short side (letterbox, and squashed varied, elongated parts: the long
  side, measured better on ``tile_small``) rounded down to a multiple of 32, between 32 and ``data.max_auto_size``.  Detection instead sizes
  the input so that the smallest boxes (p10 of each box's smaller side) keep ``MIN_BOX_PX`` pixels:
  between 128 and ``DETECT_SIZE_FACTOR`` x ``data.max_auto_size``; a fixed size that shrinks them
  below that is warned about (``small_box_warning``);
- ``train.monitor``: ``val_frr_at_escape`` with a good class, else ``val_macro_recall``.

Not a setting but an error: a class that looks defect-free (``ok``, ``normal``, ``MT_Free``, ``NODefect_images``,
or the good label in another case or spelling) while ``data.good_label`` names no class (``good_label_problem``:
without a good class there is no escape rate and no operating point). Not settings but warnings
(``few_images_warning``): a class with fewer than ``FEW_TRAIN`` training or
``FEW_TEST`` test images can hardly be learnt, and its test recall proves little (1 of 1 found has a 95 %
lower bound of 2.5 %), whatever the verdict says of it. RetinaNet only (``anchor_warning``): a class of which
under ``ANCHOR_MIN_COVER`` of the boxes reach an anchor at the positive IoU is never learned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdefect.core.registry import loose_name

IMBALANCE_BALANCE = 3.0
# a box below 8 px at the input is smaller than one cell of the detectors' finest feature map (stride 8)
MIN_BOX_PX = 8.0
ANCHOR_MIN_COVER = 0.8  # RetinaNet: share of a class's boxes that must reach an anchor at the positive IoU
DETECT_MIN_SIZE = 128
DETECT_SIZE_FACTOR = 4  # detection may go to 4 x data.max_auto_size (512 by default): small defects need pixels
# class names that usually mean "defect-free": whole words (or a prefix such as NODefect_images), any case
GOOD_NAME = re.compile(r"(^|[_\-\s])(good|ok|okay|normal|free|pass|passed|clean|intact|healthy|negative|"
                       r"no[_\-\s]?defects?|non[_\-\s]?defective|defect[_\-\s]?free|undamaged)($|[_\-\s])",
                       re.IGNORECASE)
NOT_GOOD = re.compile(r"(^|[_\-\s])(not|bad|ng|fail|failed|reject|rejected)($|[_\-\s])", re.IGNORECASE)  # not_ok
FEW_TRAIN = 20  # training images of a class below which it is hardly learnt from scratch
FEW_TEST = 10  # test images of a class below which its recall is anecdotal (10 of 10: 95 % lower bound 0.69)
ASPECT_SPREAD = 1.25
ELONGATED = 1.5


@dataclass(frozen=True)
class Choice:
    key: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value}  ({self.reason})"


def _stat(profile: dict[str, Any], name: str, q: str, default: float) -> float:
    v = (profile.get("geometry") or {}).get(name, {}).get(q)
    return float(v) if v is not None else default


def _floor32(v: float, hi: int) -> int:
    return int(min(max(32, 32 * (int(v) // 32)), hi))


def _ceil32(v: float) -> int:
    return int(32 * -(-v // 32))


def _small_box_share(profile: dict[str, Any]) -> float | None:
    """p10 of each box's smaller side as a share of its image side (detection profiles; None otherwise)."""
    return ((profile.get("boxes") or {}).get("min_side_share") or {}).get("p10")


def resolve_auto(cfg: Any, profile: dict[str, Any], has_val: bool = True) -> list[Choice]:
    """Replace every ``auto`` in ``cfg`` (in place) with a concrete value; return the choices made.

    The label kind comes from ``profile['image_labels']`` (``profile_index`` records the index's), so the
    rules never ask for the task by name.
    """
    d, out = cfg.data, []
    image_labels = bool(profile.get("image_labels", True))  # the task's label kind; False: boxes (detection)
    if d.sampling == "auto":
        ratio = float(profile.get("imbalance_ratio") or 1.0)
        balanced = ratio >= IMBALANCE_BALANCE
        d.sampling = "balanced" if balanced else "shuffle"
        how = "each class equally often per batch" if image_labels else "images of rare classes drawn more often"
        out.append(Choice("data.sampling", d.sampling, f"imbalance {ratio:.1f}:1 "
                          + (f">= {IMBALANCE_BALANCE:g}:1 -> {how}" if balanced else "-> plain shuffling")))
    p10, p90 = _stat(profile, "aspect", "p10", 1.0), _stat(profile, "aspect", "p90", 1.0)
    varied = image_labels and p90 / max(p10, 1e-9) > ASPECT_SPREAD and p90 >= ELONGATED
    if d.resize == "auto":
        d.resize = "squash"
        why = ("varied and elongated, but a letterbox lost to squashing on such parts at an equal size -> "
               "use every pixel (set data.resize=letterbox to keep each part's shape)" if varied
               else "similar -> use every pixel" if image_labels else "detection")
        out.append(Choice("data.resize", d.resize, f"aspect ratios p10 {p10:.2f} .. p90 {p90:.2f}: {why}"))
    share = _small_box_share(profile)
    if d.image_size == "auto" and not image_labels and share:
        hi = DETECT_SIZE_FACTOR * int(d.max_auto_size)
        need = MIN_BOX_PX / share
        side = min(max(DETECT_MIN_SIZE, _ceil32(need)), hi)
        d.image_size = [side, side]
        out.append(Choice("data.image_size", d.image_size,
                          f"10% of boxes are under {100 * share:.1f}% of the image side; {side} px keeps them "
                          f"{share * side:.0f} px or more" + (f" (capped at {hi}: {need:.0f} px would keep "
                                                              f"{MIN_BOX_PX:.0f} px)" if need > hi else "")))
    if d.image_size == "auto":
        squashed_long = varied and d.resize == "squash"  # elongated parts squashed to their short side lose pixels
        name = "long_side" if d.resize == "letterbox" or squashed_long else "short_side"
        med = _stat(profile, name, "median", 64.0)
        side = _floor32(med, int(d.max_auto_size))
        d.image_size = [side, side]
        out.append(Choice("data.image_size", d.image_size, f"median {name.replace('_', ' ')} {med:.0f} px"
                          + (" (elongated parts: squashing keeps the long side's pixels)" if squashed_long else "")
                          + f", capped at data.max_auto_size {d.max_auto_size}"))
    if cfg.train.monitor == "auto":
        good = d.good_label is not None and d.good_label in profile.get("classes", [])
        if not image_labels:
            cfg.train.monitor, why = "val_loss", "detection keeps the epoch with the lowest validation loss"
        else:
            cfg.train.monitor = "val_frr_at_escape" if good else "val_macro_recall"
            why = (f"good class '{d.good_label}': the cost of meeting the {cfg.trust.target_escape:.0%} escape "
                   "target" if good else "no good class: every class counts alike")
        if not has_val:
            why += "; no validation split, so the training loss decides"
        out.append(Choice("train.monitor", cfg.train.monitor, why))
    return out


def small_box_warning(profile: dict[str, Any], image_size: list[int]) -> str | None:
    """A warning when the input size shrinks the smallest boxes (p10) below ``MIN_BOX_PX`` pixels, else None."""
    share = _small_box_share(profile)
    side = min(int(v) for v in image_size)
    if not share or share * side >= MIN_BOX_PX:
        return None
    want = _ceil32(MIN_BOX_PX / share)
    return (f"at {side} px input, 10% of the boxes are under {share * side:.1f} px, smaller than one cell of the "
            f"detector's finest feature map ({MIN_BOX_PX:.0f} px): small defects may vanish. Set data.image_size "
            f"to [{want}, {want}] (or auto) if the machine allows, or crop the images into tiles.")


def anchor_warning(detect: Any, image_size: list[int], boxes: list[np.ndarray], box_labels: list[np.ndarray],
                   image_sizes: list[tuple[int, int]], classes: list[str]) -> str | None:
    """RetinaNet only: a warning naming the classes of which under ``ANCHOR_MIN_COVER`` of the boxes (squashed to
    the input) have an anchor at ``detect.match_iou[1]``: those boxes get no positive anchor, so they are never
    learned (NEU-DET's scratches at the default anchors: 21 %, tools/results/anchor_coverage.md)."""
    from kdefect.core.detect_decode import best_anchor_iou
    from kdefect.data.boxes import scale_boxes

    if detect.architecture != "retinanet":
        return None
    h, w = int(image_size[0]), int(image_size[-1])
    keep = [i for i, (b, (iw, ih)) in enumerate(zip(boxes, image_sizes)) if len(b) and iw > 0 and ih > 0]
    if not keep:
        return None
    scaled = np.concatenate([scale_boxes(boxes[i], image_sizes[i], (w, h)) for i in keep])
    labels = np.concatenate([np.asarray(box_labels[i], np.int64).reshape(-1) for i in keep])
    covered = best_anchor_iou(scaled, (h, w), detect.anchor_sizes, detect.anchor_aspect_ratios) >= detect.match_iou[1]
    share = {classes[k]: float(covered[labels == k].mean()) for k in np.unique(labels)}
    poor = {c: v for c, v in share.items() if v < ANCHOR_MIN_COVER}
    if not poor:
        return None
    names = ", ".join(f"{c} {v:.0%}" for c, v in sorted(poor.items(), key=lambda kv: kv[1]))
    return (f"RetinaNet anchors (aspect ratios {list(detect.anchor_aspect_ratios)}, positive IoU "
            f"{detect.match_iou[1]:g}, smallest size {detect.anchor_sizes[0]:g} px) reach only this share of the boxes "
            f"of: {names}; the others get no positive anchor and are never learned. For long thin boxes add longer "
            "anchors (detect.anchor_aspect_ratios=[0.25,0.5,1,2,4]); for small ones smaller anchors "
            "(detect.anchor_sizes=[16,32,64,128,256]) or a larger data.image_size; or lower detect.match_iou "
            "(e.g. [0.3,0.4]), or use the anchor-free detect.architecture=yolov8.")


def few_images_warning(profile: dict[str, Any]) -> str | None:
    """A warning naming the classes with too few training or test images to learn or judge them, else None."""
    counts = profile.get("split_counts") or {}
    train, val, test = (counts.get(s, {}) for s in ("train", "val", "test"))
    few = [c for c in profile.get("classes", []) if train.get(c, 0) < FEW_TRAIN or test.get(c, 0) < FEW_TEST]
    if not few or not counts:
        return None
    n = min(test.get(c, 0) for c in few)
    proof = (f"{n} of {n} found would have a 95% lower bound of {(0.025 ** (1 / n)):.1%}" if n else
             "with no test image it is not measured at all")
    listed = "; ".join(f"'{c}' {train.get(c, 0)} train / {val.get(c, 0)} val / {test.get(c, 0)} test" for c in few)
    return (f"few images: {listed}. A class needs about {FEW_TRAIN}+ training images to be learnt and "
            f"{FEW_TEST}+ test images for its recall to mean something ({proof}). Add images of these classes, "
            "or merge a rare class into a related one.")


def good_label_problem(classes: list[str], good_label: str | None) -> str | None:
    """Why ``data.good_label`` is wrong for these classes (it names none, yet one looks defect-free), else None.

    ``fit`` and ``data check`` stop on it: trained on, the run would have no escape rate, no operating point and
    no pass/fail rule, and its verdict would judge recall alone. ``data.good_label=null`` says no class is good.
    """
    if not good_label or good_label in classes:
        return None
    same = [c for c in classes if loose_name(c) == loose_name(good_label)]  # 'Good', 'OK_parts' for 'ok-parts'
    likely = same or [c for c in classes if GOOD_NAME.search(c) and not NOT_GOOD.search(c)]
    if not likely:
        return None
    return (f"data.good_label '{good_label}' is not a class, but {', '.join(repr(c) for c in likely)} looks "
            "defect-free: without a good class there is no escape rate, no operating point and no pass/fail rule. "
            f"Set data.good_label={likely[0]} (or data.good_label=null if no class is defect-free).")
