"""TensorFlow Datasets builder for NEU-DET, built from a local folder (no download).

Importing this module registers ``neu_det``, after which
``tfds.load('neu_det', data_dir=...)`` works offline.  The manual folder is the
``manual_dir`` of a ``tfds.download.DownloadConfig`` when given, else
:func:`kdefect.data.neu.neu_dir`.  One split, ``train``: kdefect makes its own
stratified split.  ``label`` is the file-name class (the standard NEU
classification label); ``objects`` holds the VOC boxes (tfds BBox convention:
normalised ``[ymin, xmin, ymax, xmax]``).
"""

from __future__ import annotations

from pathlib import Path

import kdefect.keras  # noqa: F401  (sets the Keras switch before TFDS imports TensorFlow)
from kdefect.errors import DataError

from .neu import NEU_CLASSES, neu_class_of, neu_dir
from .voc import parse_voc

import tensorflow_datasets as tfds  # isort: skip


class NeuDet(tfds.core.GeneratorBasedBuilder):
    """NEU-DET hot-rolled steel surface defects: 1,800 images, 6 classes, 4,189 boxes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Local manual folder (images/ + annotations/)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place NEU-DET (images/*.jpg + annotations/*.xml) in the manual dir, or set $KDEFECT_NEU_DIR."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=list(NEU_CLASSES)),
                "objects": tfds.features.Sequence({
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(names=list(NEU_CLASSES)),
                }),
            }),
            supervised_keys=("image", "label"),
            homepage="http://faculty.neu.edu.cn/songkechen/zh_CN/zdylm/263270/list/index.htm",
            citation="K. Song and Y. Yan, Applied Surface Science 285 (2013) 858-864.",
        )

    def _split_generators(self, dl_manager):
        try:
            root = Path(dl_manager.manual_dir)
            if not (root / "annotations").is_dir():
                raise AssertionError
        except Exception:
            root = neu_dir()
        if root is None:
            raise DataError("NEU-DET manual folder not found: pass DownloadConfig(manual_dir=...) or set "
                            "$KDEFECT_NEU_DIR to the folder holding images/ and annotations/.")
        return {"train": self._generate_examples(root)}

    def _generate_examples(self, root: Path):
        for xml in sorted((root / "annotations").glob("*.xml")):
            rec = parse_voc(xml, list(NEU_CLASSES))
            w, h = float(rec.width), float(rec.height)
            yield xml.stem, {
                "image": str(rec.image_path),
                "image/filename": rec.image_path.name,
                "label": neu_class_of(xml),
                "objects": {
                    "bbox": [tfds.features.BBox(b[1] / h, b[0] / w, b[3] / h, b[2] / w) for b in rec.boxes],
                    "label": rec.labels,
                },
            }
