"""A procedural stand-in for the data issue 10 was filed on: elongated parts of many sizes, small defects, a dominant
good class and a very rare defect.

Why: every real set in the benchmarks so far (NEU, ELPV) has square images of one size, so the ``auto`` recipe's
geometry rules (``data.resize: letterbox`` for varied, elongated parts; the input size from the long side) were
never measured on the kind of data that made the shipped defaults fail.  The set mimics the statistics the issue
gives for it, not its pictures:

- class counts 952 good, then 115 / 85 / 57 / 32 defective (the magnetic-tile set's counts, less one defect class:
  the built-in generator draws four): 76.7 % good, rarest class 2.6 %, imbalance 30:1;
- grayscale JPEGs, short side 100-250 px, aspect ratio log-uniform in 1:1 .. 1:4 (long side at most 600 px), half of
  them turned upright;
- each defect is drawn by ``kdefect.data.synthetic`` inside one square of the short side, at a random place along
  the long side: it covers a quarter of the part's length at aspect 1:4.  Good parts carry the generator's faint
  benign smears in the same way.

Usage: ``python tools/tile_like.py OUT_DIR`` writes ``OUT_DIR/<class>/<class>_<i>.jpg`` (deterministic per seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kdefect.data.synthetic import CLASSES, _defect, _surface

COUNTS = {"good": 952, "scratch": 115, "spot": 85, "crack": 57, "patch": 32}
SHORT = (100, 250)
MAX_ASPECT, MAX_LONG = 4.0, 600


def render_part(cls: str, rng: np.random.Generator, short_range: tuple[int, int] = SHORT, max_long: int = MAX_LONG
                ) -> np.ndarray:
    """One uint8 grayscale part (short x long, or turned upright) of class ``cls``."""
    short = int(rng.integers(short_range[0], short_range[1] + 1))
    long = int(min(round(short * np.exp(rng.uniform(0, np.log(MAX_ASPECT)))), max_long))
    img = _surface(long, rng)[:short]  # a strip of a square surface: the same grain and light along the part
    x0 = int(rng.integers(0, long - short + 1))
    if cls != "good":
        sign = -1.0 if rng.random() < (0.5 if cls == "patch" else 0.75) else 1.0
        strength = rng.uniform(25, 50) if cls == "patch" else rng.uniform(35, 80)
        for m in _defect(cls, short, rng):
            img[:, x0:x0 + short] += sign * strength * m
    elif rng.random() < 0.3:  # benign look-alike, as in the built-in set
        img[:, x0:x0 + short] += rng.choice([-1, 1]) * rng.uniform(3, 8) * _defect("patch", short, rng)[0]
    out = np.clip(img, 0, 255).round().astype(np.uint8)
    return out.T.copy() if rng.random() < 0.5 else out


def write_tile_like(root: Path, seed: int = 0, scale: float = 1.0, short_range: tuple[int, int] = SHORT,
                    max_long: int = MAX_LONG) -> Path:
    """Class folders of grayscale JPEGs under ``root``; ``scale`` shrinks every class count (tests, smoke runs);
    ``short_range`` and ``max_long`` size the parts (``tile_small`` in bench_recipe: parts that fit 128 px)."""
    from PIL import Image

    for ci, (cls, n) in enumerate(COUNTS.items()):
        assert cls in CLASSES
        rng = np.random.default_rng([seed, ci])
        out = root / cls
        out.mkdir(parents=True, exist_ok=True)
        for i in range(max(1, round(n * scale))):
            Image.fromarray(render_part(cls, rng, short_range, max_long), mode="L").save(out / f"{cls}_{i}.jpg", quality=90)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--short", type=int, nargs=2, default=list(SHORT), help="the range of the parts' short side")
    ap.add_argument("--max-long", type=int, default=MAX_LONG)
    args = ap.parse_args()
    print(write_tile_like(args.out, args.seed, args.scale, tuple(args.short), args.max_long))


if __name__ == "__main__":
    main()
