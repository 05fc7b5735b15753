"""Procedural steel-like surfaces with planted defects (the embedded default data).

Why procedural: the quickstart and the fast tests need labelled images with
boxes, offline, in seconds.  Each class has a distinct *shape* (straight thin
line, small round pits, jagged branching line, large soft area) while position,
size, orientation, polarity and contrast vary and the background carries grain,
streaks and uneven light, so a tiny CNN learns it in a few epochs but a single
pixel statistic cannot.  numpy only (no TensorFlow), vectorised, deterministic
per ``numpy.random.Generator``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from kdefect.errors import ConfigError
from kdefect.utils.io import atomic_dir

log = logging.getLogger(__name__)

CLASSES = ("good", "scratch", "spot", "crack", "patch")


def _blur1d(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Box blur along one axis via cumulative sums (cheap, vectorised)."""
    if k <= 1:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (k // 2, k - 1 - k // 2)
    c = np.cumsum(np.pad(a, pad, mode="wrap"), axis=axis)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    n = a.shape[axis]
    return (np.take(c, np.arange(k, k + n), axis=axis) - np.take(c, np.arange(n), axis=axis)) / k


def _surface(size: int, rng: np.random.Generator) -> np.ndarray:
    """Grainy, streaky, unevenly lit grey surface (float, ~0..255)."""
    base = rng.uniform(80, 170)
    fine = rng.normal(0, rng.uniform(2, 6), (size, size))
    streak = _blur1d(rng.normal(0, 1, (size, size)), max(2, size // 4), axis=1) * rng.uniform(4, 12)
    blotch = _blur1d(_blur1d(rng.normal(0, 1, (size, size)), size // 6 + 1, 0), size // 6 + 1, 1)
    blotch *= rng.uniform(3, 10)
    if rng.random() < 0.5:
        streak = streak.T
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    gx, gy = rng.uniform(-25, 25, 2)
    light = gx * xx + gy * yy - rng.uniform(0, 30) * (xx**2 + yy**2)
    return base + fine + streak + blotch + light


def _seg_dist(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the segments a[i]->b[i]; returns the min over segments."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0, 1)
    return np.sqrt((px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2).min(axis=0)


def _line_profile(d: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-((d / width) ** 2))


def _defect(cls: str, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Unit-peak intensity maps (one per object) of the planted defect."""
    py, px = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if cls == "scratch":
        length = rng.uniform(0.35, 0.85) * size
        ang = rng.uniform(0, np.pi)
        c = rng.uniform(0.3, 0.7, 2) * size
        h = 0.5 * length * np.array([np.cos(ang), np.sin(ang)])
        d = _seg_dist(px, py, (c - h)[None], (c + h)[None])
        return [_line_profile(d, rng.uniform(0.9, 1.8) * size / 64)]
    if cls == "spot":
        maps = []
        for _ in range(rng.integers(1, 4)):
            c = rng.uniform(0.15, 0.85, 2) * size
            r = rng.uniform(0.04, 0.08) * size
            ar = rng.uniform(0.7, 1.3)
            maps.append(np.exp(-(((px - c[0]) / (r * ar)) ** 2 + ((py - c[1]) / (r / ar)) ** 2)))
        return maps
    if cls == "crack":
        n = int(rng.integers(5, 9))
        step = rng.uniform(0.06, 0.1) * size
        ang = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.9, n))
        start = rng.uniform(0.3, 0.7, 2) * size
        pts = start + np.concatenate([[[0, 0]], np.cumsum(step * np.stack([np.cos(ang), np.sin(ang)], 1), 0)])
        pts = np.clip(pts, 1, size - 1)
        a, b = pts[:-1], pts[1:]
        if rng.random() < 0.6:  # a branch from a random vertex
            k = int(rng.integers(1, n))
            bang = ang[k - 1] + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2)
            tip = np.clip(pts[k] + rng.uniform(1.5, 3) * step * np.array([np.cos(bang), np.sin(bang)]), 1, size - 1)
            a, b = np.vstack([a, pts[k]]), np.vstack([b, tip])
        return [_line_profile(_seg_dist(px, py, a, b), rng.uniform(0.9, 1.5) * size / 64)]
    if cls == "patch":
        c = rng.uniform(0.3, 0.7, 2) * size
        rx, ry = rng.uniform(0.12, 0.25, 2) * size
        rot = rng.uniform(0, np.pi)
        x, y = px - c[0], py - c[1]
        u, v = x * np.cos(rot) + y * np.sin(rot), -x * np.sin(rot) + y * np.cos(rot)
        theta = np.arctan2(v, u)
        wobble = 1 + sum(rng.uniform(0, 0.15) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5))
        rr = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / wobble
        return [1 / (1 + np.exp((rr - 1) * 8))]
    raise ConfigError(f"synthetic class '{cls}' is unknown; use one of {', '.join(CLASSES)}.")


def render_sample(cls: str, size: int, rng: np.random.Generator, contrast: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One uint8 (size, size, 3) image of class ``cls`` and its float32 (N, 4) xyxy pixel boxes.

    ``contrast`` scales the defect's strength: 1 is the realistic default, 2-3
    makes an easy set on which tiny models learn in a few dozen steps (tests).
    """
    img = _surface(size, rng)
    boxes = []
    if cls != "good":
        maps = _defect(cls, size, rng)
        sign = -1.0 if rng.random() < (0.5 if cls == "patch" else 0.75) else 1.0
        strength = contrast * (rng.uniform(25, 50) if cls == "patch" else rng.uniform(35, 80))
        for m in maps:
            img += sign * strength * m
            ys, xs = np.nonzero(m > 0.3)
            if len(xs):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    elif rng.random() < 0.3:  # benign look-alike: a faint broad smear, so "any blob" is not a defect
        smear = _defect("patch", size, rng)[0]
        img += rng.choice([-1, 1]) * rng.uniform(3, 8) * smear
    tint = 1 + rng.normal(0, 0.03, 3)
    rgb = np.clip(img[..., None] * tint, 0, 255).round().astype(np.uint8)
    return rgb, np.asarray(boxes, np.float32).reshape(-1, 4)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where kdefect keeps generated / converted data: arg, $KDEFECT_CACHE, ~/.cache/kdefect."""
    return Path(cache_dir or os.environ.get("KDEFECT_CACHE") or Path.home() / ".cache" / "kdefect").expanduser()


def materialize_synthetic(cfg, layout: str = "folder", cache_dir: str | Path | None = None) -> Path:
    """Write the synthetic set as PNG files once (atomically) and return its root.

    ``layout='folder'``: ``<root>/<class>/<class>_<i>.png``; ``layout='voc'``:
    ``<root>/images/*.png`` + ``<root>/annotations/*.xml``.  The folder name
    hashes the config and layout, so a changed config never reuses stale files.
    """
    from PIL import Image  # lazy: Pillow loads only when images are read

    from .voc import voc_xml

    if layout not in ("folder", "voc"):
        raise ConfigError(f"synthetic layout '{layout}' is unknown; use 'folder' or 'voc'.")
    bad = [c for c in cfg.classes if c not in CLASSES]
    if bad:
        raise ConfigError(f"data.synthetic.classes: unknown {bad}; choose from {', '.join(CLASSES)}.")
    if cfg.n_per_class < 1 or cfg.size < 8:
        raise ConfigError("data.synthetic: n_per_class must be >= 1 and size >= 8.")
    key = json.dumps({"classes": list(cfg.classes), "n": cfg.n_per_class, "size": cfg.size, "seed": cfg.seed,
                      "layout": layout, "contrast": cfg.contrast, "v": 2}, sort_keys=True)
    root = cache_root(cache_dir) / f"synthetic-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (root / ".complete").is_file():
        return root
    log.info("generating synthetic data (%d x %d images, %d px) in %s", len(cfg.classes), cfg.n_per_class,
             cfg.size, root)
    with atomic_dir(root) as tmp:
        for ci, cls in enumerate(cfg.classes):
            rng = np.random.default_rng([cfg.seed, ci, CLASSES.index(cls)])
            for i in range(cfg.n_per_class):
                img, boxes = render_sample(cls, cfg.size, rng, cfg.contrast)
                name = f"{cls}_{i}.png"
                if layout == "folder":
                    out = tmp / cls / name
                else:
                    out = tmp / "images" / name
                    ann = tmp / "annotations" / f"{cls}_{i}.xml"
                    ann.parent.mkdir(parents=True, exist_ok=True)
                    ann.write_text(voc_xml(name, cfg.size, cfg.size, boxes, [cls] * len(boxes)), encoding="utf-8")
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(out)
        (tmp / ".complete").write_text(key, encoding="utf-8")
    return root
