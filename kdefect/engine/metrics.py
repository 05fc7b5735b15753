"""Classification metrics that auditors ask for, computed in numpy (TF-free).

Per-class precision / recall / F1, the confusion matrix and the escape rate:
the share of defective parts the model passes as good, the number that
matters most on a production line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdefect.utils.io import atomic_path


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def escape_rate(y_true: np.ndarray, y_pred: np.ndarray, good_index: int) -> tuple[float, int, int]:
    """(rate, escapes, defective) where an escape is a defective part predicted as good."""
    y_true = np.asarray(y_true)
    defective = y_true != good_index
    n = int(defective.sum())
    esc = int((np.asarray(y_pred)[defective] == good_index).sum())
    return (esc / n if n else 0.0), esc, n


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    good_label: str | None = None,
    skipped: int = 0,
) -> dict[str, Any]:
    """Every metric kdefect reports for a classifier, as a JSON-ready dict."""
    y_true = np.asarray(y_true, int)
    probs = np.asarray(probs, np.float64)
    y_pred = probs.argmax(axis=1)
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    out: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "skipped_images": int(skipped),
    }
    if good_label is not None and good_label in classes:
        rate, esc, n_def = escape_rate(y_true, y_pred, classes.index(good_label))
        good = classes.index(good_label)
        n_good = int((y_true == good).sum())
        false_rej = int(((y_true == good) & (y_pred != good)).sum())
        out["escape_rate"] = rate
        out["escapes"] = esc
        out["defective"] = n_def
        out["false_reject_rate"] = false_rej / n_good if n_good else 0.0
    return out


def plot_confusion_matrix(cm: np.ndarray, classes: list[str], path: str, title: str = "Confusion matrix") -> None:
    """Write a labelled confusion-matrix PNG atomically (matplotlib, Agg backend)."""
    import matplotlib  # lazy: matplotlib loads only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only when a plot is drawn

    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > thresh else "black")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
