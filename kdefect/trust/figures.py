"""The report's plots (matplotlib, Agg), each written as a PNG through ``atomic_path``.

Kept apart from ``report.py`` so the HTML assembly stays readable and each
figure can be reused (CLI, benchmark) on its own.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kdefect.utils.io import atomic_path


def _plt():
    import matplotlib  # lazy: matplotlib loads only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only when a plot is drawn

    return plt


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    _plt().close(fig)
    return Path(path)


def read_history(path: str | Path) -> dict[str, list[float]]:
    """history.csv (one row per epoch) as column -> values; non-numeric cells become NaN."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            try:
                cols.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                cols.setdefault(k, []).append(float("nan"))
    return cols


def training_curves(history: dict[str, list[float]], path: str | Path) -> Path:
    """Loss and every other metric, train vs val, per epoch."""
    plt = _plt()
    names = [k for k in history if k not in ("epoch", "lr", "learning_rate") and not k.startswith("val_")]
    names = sorted(names, key=lambda k: k != "loss") or ["loss"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, k in zip(axes[0], names, strict=True):
        epochs = history.get("epoch", list(range(len(history.get(k, [])))))
        for key, style in ((k, "-"), (f"val_{k}", "--")):
            if key in history:
                ax.plot(epochs[:len(history[key])], history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def pr_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(precision, recall, average precision) of one-vs-rest ``scores``."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    pos = np.asarray(positive, bool)[order]
    tp = np.cumsum(pos)
    k = np.arange(1, len(pos) + 1)
    n_pos = max(int(pos.sum()), 1)
    precision, recall = tp / k, tp / n_pos
    ap = float((precision * pos).sum() / n_pos)
    return precision, recall, ap


def pr_curves(probs: np.ndarray, y: np.ndarray, classes: list[str], path: str | Path) -> tuple[Path, dict[str, float]]:
    """One-vs-rest precision-recall curve per class; returns the PNG and the average precision per class."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    aps = {}
    for i, c in enumerate(classes):
        p, r, ap = pr_curve(probs[:, i], y == i)
        aps[c] = ap
        ax.plot(np.r_[0, r], np.r_[1, p], label=f"{c} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall (test, one-vs-rest)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, path), aps


def risk_coverage_plot(rc: dict[str, np.ndarray], path: str | Path, review_below: float | None = None,
                       target: float | None = None) -> Path:
    """Residual error vs share of parts decided automatically; marks the chosen review threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(rc["coverage"], 100 * rc["risk"], "-", color="tab:blue", label="test")
    if target is not None:
        ax.axhline(100 * target, color="tab:red", ls="--", lw=1, label=f"target {100 * target:.2f}%")
    if review_below is not None and len(rc["threshold"]):
        i = np.searchsorted(-rc["threshold"], -review_below, side="right") - 1
        if 0 <= i < len(rc["coverage"]):
            ax.plot(rc["coverage"][i], 100 * rc["risk"][i], "o", color="tab:red", label="review threshold")
    ax.set_xlabel("coverage (share decided without review)")
    ax.set_ylabel("residual error among decided (%)")
    ax.set_title("Risk-coverage")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def histogram_compare(base: np.ndarray, prod: np.ndarray, path: str | Path, title: str, bins: int = 20) -> Path:
    """Overlaid normalised histograms (baseline vs production), used by the monitor."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    edges = np.linspace(0, 1, bins + 1)
    ax.hist(base, edges, density=True, alpha=0.5, label="validation baseline")
    ax.hist(prod, edges, density=True, alpha=0.5, label="production")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
