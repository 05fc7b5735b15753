"""``data.source: tfds:NAME``: a TensorFlow Datasets set, converted once to files.

Why convert: everything downstream (split lists in the run folder, evaluation,
export's representative data, the edge runtime) works on image files, so a
TFDS dataset is written out as PNG (class folders to classify, VOC to detect)
in the kdefect cache, once.  Loading is offline: the dataset must already be
prepared or, like ``neu_det``, build from a local manual folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kdefect.errors import DataError
from kdefect.utils.io import atomic_dir

from .synthetic import cache_root
from .voc import voc_xml

log = logging.getLogger(__name__)


def materialize_tfds(name: str, image_labels: bool = True, cache_dir: str | Path | None = None,
                     data_dir: str | None = None) -> Path:
    """Prepare TFDS dataset ``name`` offline and write it as PNG files; returns the root.

    ``image_labels``: class folders (one label per image), else VOC (images/ + annotations/ with boxes).
    """
    from PIL import Image  # lazy: Pillow loads only when images are read

    import kdefect.keras  # noqa: F401  (sets the Keras switch before TFDS imports TensorFlow)

    from . import tfds_neu  # noqa: F401  (registers neu_det)

    import tensorflow_datasets as tfds  # isort: skip

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
    except Exception as exc:
        raise DataError(
            f"TFDS dataset '{name}' could not be loaded offline ({type(exc).__name__}: {exc}). "
            "Prepare it first (tfds build) or use a local folder as data.source."
        ) from exc
    feats = builder.info.features
    img_key, lab_key = builder.info.supervised_keys or ("image", "label")
    if not image_labels and "objects" not in feats:
        raise DataError(f"TFDS dataset '{name}' has no 'objects' feature, so it cannot train a detector.")
    if image_labels and lab_key not in feats:
        raise DataError(f"TFDS dataset '{name}' has no '{lab_key}' feature to classify by.")
    layout = "classify" if image_labels else "detect"  # the cache folder's suffix, kept so existing caches stay valid
    root = cache_root(cache_dir) / f"tfds-{name.replace('/', '_')}-{builder.info.version}-{layout}"
    if (root / ".complete").is_file():
        return root
    splits = "+".join(builder.info.splits.keys())
    log.info("writing TFDS '%s' (%s) as files to %s", name, splits, root)
    with atomic_dir(root) as tmp:
        for i, ex in enumerate(tfds.as_numpy(builder.as_dataset(split=splits))):
            img = np.asarray(ex[img_key])
            img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
            stem = Path(ex["image/filename"].decode()).stem if "image/filename" in ex else f"{i:06d}"
            if image_labels:
                out = tmp / feats[lab_key].int2str(int(ex[lab_key])) / f"{stem}.png"
            else:
                out = tmp / "images" / f"{stem}.png"
                h, w = img.shape[:2]
                boxes = np.asarray(ex["objects"]["bbox"], np.float32).reshape(-1, 4)[:, [1, 0, 3, 2]] * [w, h, w, h]
                names = [feats["objects"]["label"].int2str(int(k)) for k in ex["objects"]["label"]]
                ann = tmp / "annotations" / f"{stem}.xml"
                ann.parent.mkdir(parents=True, exist_ok=True)
                ann.write_text(voc_xml(out.name, w, h, boxes, names), encoding="utf-8")
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out, compress_level=1)  # speed over size: a cache
        (tmp / ".complete").write_text(name, encoding="utf-8")
    return root
