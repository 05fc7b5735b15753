"""The kNN unknown-defect gate on the device: a feature output and a bank fitted with the exported model.

Why fitted on the exported model: INT8 features are not the float features
that ``kdefect calibrate`` scored on the host, so the bank (training split)
and the threshold (a quantile of the validation split) are computed from
the TFLite model's own feature output, exactly as the device will see them.
The NEU leave-one-class-out benchmark (tools/results/trust_neu.md) is why:
kNN on features separates unseen defect types better than 1 - max probability.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from kdefect.core.knn import KNN, save_bank
from kdefect.edge.interpreter import TFLiteRunner
from kdefect.errors import ExportError, ModelError
from kdefect.keras import keras

log = logging.getLogger(__name__)

GATES = ("msp", "knn", "none")


def with_features(model: Any) -> Any:
    """``model`` with a second output: the penultimate feature vector (class output stays first in Keras)."""
    from kdefect.trust.outputs import feature_output

    try:
        feats = feature_output(model)
    except ModelError as exc:
        raise ExportError(f"{exc} Export with --ood-gate msp instead.") from exc
    return keras.Model(model.inputs, [model.outputs[0], feats], name=f"{model.name}_with_features")


def locate_outputs(tflite_path: str | Path, model: Any, probe: np.ndarray) -> tuple[int, int]:
    """(class output position, feature output position) in the converted model.

    The converter does not keep the Keras output order, so each TFLite output
    is matched to the Keras outputs on one probe image (shape first, then values).
    """
    runner = TFLiteRunner(tflite_path, roles={"main": 0})
    got = [o.reshape(-1) for o in runner(probe.astype(np.float32))]
    want = [np.asarray(o).reshape(-1) for o in model.predict(probe[None].astype(np.float32), verbose=0)]
    if len(got) != 2:
        raise ExportError(f"'{tflite_path}' has {len(got)} outputs; the kNN gate export expects 2 (class, features).")

    def cost(g: np.ndarray, w: np.ndarray) -> float:
        return float(np.abs(g - w).mean()) if g.shape == w.shape else float("inf")

    straight = cost(got[0], want[0]) + cost(got[1], want[1])
    swapped = cost(got[1], want[0]) + cost(got[0], want[1])
    if not np.isfinite(min(straight, swapped)):
        raise ExportError(f"cannot match the outputs of '{tflite_path}' to the Keras model's "
                          f"(shapes {[g.shape for g in got]} vs {[w.shape for w in want]}).")
    return (0, 1) if straight <= swapped else (1, 0)


def device_features(tflite_path: str | Path, images: np.ndarray, feature_index: int) -> np.ndarray:
    """The TFLite model's (dequantised) feature output for every image, batch 1 as on the device."""
    return TFLiteRunner(tflite_path, roles={"main": 1 - feature_index, "features": feature_index}).run_all(images)[1]


def device_knn(train_features: np.ndarray, k: int = 10) -> KNN:
    """The kNN gate over device training features, with the bank rounded to float16 as saved for the device."""
    knn = KNN.fit(train_features, k=k)
    knn.bank = knn.bank.astype(np.float16).astype(np.float32)  # what the device loads: threshold on the same bank
    return knn


def fit_gate(tflite_path: str | Path, feature_index: int, split: dict[str, tuple[list[str], list[str]]],
             size: tuple[int, int], channels: int, k: int = 10, tpr: float = 0.95, max_bank: int = 5000,
             seed: int = 0, resize: str = "squash") -> dict[str, Any]:
    """Bank = device features of the training split; threshold = ``tpr`` quantile of validation scores.

    ``max_bank``: a larger training split is subsampled (stratified by class) so the bank stays small on the
    device (5,000 x 256 float16 = 2.5 MB; one matrix-vector product per part).
    ``resize``: the run's resize mode (the sidecar's ``input.resize``): the bank sees the device's pixels.
    Writes ``<model>.knn.npy`` beside the model and returns the sidecar's ``ood`` entry.
    """
    from kdefect.data.pipeline import load_images
    from kdefect.export.representative import stratified_indices

    if not split.get("train", ([], []))[0] or not split.get("val", ([], []))[0]:
        raise ExportError("the kNN gate needs the run's train and val splits (split/train.txt, split/val.txt); "
                          "export a run folder or use --ood-gate msp.")
    paths = {s: list(split[s][0]) for s in ("train", "val", "test") if split.get(s, ([], []))[0]}
    if len(paths["train"]) > max_bank:
        keep = np.sort(stratified_indices(split["train"][1], max_bank, seed))
        paths["train"] = [paths["train"][i] for i in keep]
    feats = {s: device_features(tflite_path, load_images(p, size, channels, resize=resize), feature_index)
             for s, p in paths.items()}
    knn = device_knn(feats["train"], k)
    val_scores = knn.score(feats["val"])
    thr = float(np.quantile(val_scores, tpr))
    bank = Path(tflite_path).with_suffix(".knn.npy")
    sha = save_bank(bank, knn)
    gate = {"method": "knn", "k": knn.k, "threshold": thr, "val_tpr": tpr, "bank": bank.name, "bank_sha256": sha,
            "bank_size": len(knn.bank), "features": "device: the exported model's own feature output",
            "val_flag_share": float((val_scores > thr).mean())}
    if "test" in feats:
        gate["test_flag_share"] = float((knn.score(feats["test"]) > thr).mean())
    log.info("kNN OOD gate: bank of %d x %d device features, threshold %.4f (%.0f%% of val kept)", *knn.bank.shape,
             thr, 100 * tpr)
    return gate
