"""``tiny_cnn`` and ``tiny_cnn_s2``: three conv-BN-ReLU blocks (~24k parameters) for CPUs, tests and smoke runs.

``tiny_cnn`` runs its first block at full resolution, then max-pools.  ``tiny_cnn_s2`` strides its first
convolution by 2 instead of pooling after it: the same weights (one pooling layer fewer), and every later block
sees the same resolution.  On a 2-core CPU the full-resolution first block is about half of a training step, so the
stride makes the quick start about 1.5x as fast; a 3x3 kernel at stride 2 still reads every pixel, so a one-pixel
scratch is not skipped.  Striding *and* pooling (a quarter of the resolution after block 1) was faster still but
escaped more small synthetic defects.  Measured side by side: ``tools/results/quickstart_stem.md`` and the ``stem``
section of ``tools/results/recipe.md``.  ``tiny_cnn_s2`` is the quick start's backbone.
"""

from __future__ import annotations

from collections.abc import Callable

from kdefect.core.catalogue import BACKBONE_FACTS
from kdefect.keras import keras, tf
from kdefect.models.attention import apply_attention
from kdefect.models.backbones._common import finish, width
from kdefect.models.registry import register_backbone

FILTERS = (16, 32, 64)


def _tiny(name: str, stem_stride: int) -> Callable[..., tf.Tensor]:
    def build(
        inputs: tf.Tensor,
        *,
        weights: str = "none",
        alpha: float = 1.0,
        attention: str = "none",
        attention_in_blocks: bool = False,
    ) -> tf.Tensor:
        """Conv3x3-BN-ReLU blocks with max-pooling between them (a strided stem replaces the first); attention
        after each block if asked.

        BatchNorm momentum 0.9 (not 0.99): short smoke runs of a few dozen steps still end with
        usable moving statistics, so inference-mode predictions match training.
        """
        x = inputs
        for i, f in enumerate(FILTERS, start=1):
            x = keras.layers.Conv2D(width(f, alpha, 4), 3, strides=stem_stride if i == 1 else 1, padding="same",
                                    use_bias=False, name=f"tiny_conv{i}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"tiny_bn{i}")(x)
            x = keras.layers.ReLU(name=f"tiny_relu{i}")(x)
            if attention_in_blocks:
                x = apply_attention(x, attention, name=f"tiny_att{i}")
            if i < len(FILTERS) and not (i == 1 and stem_stride > 1):  # a strided stem replaces the first pool
                x = keras.layers.MaxPooling2D(2, name=f"tiny_pool{i}")(x)
        return finish(inputs, x, weights, name)

    return build


# one registration per first-block variant: a full-resolution first block (stride 1), or a stride-2 stem
for _name, _stride in (("tiny_cnn", 1), ("tiny_cnn_s2", 2)):
    register_backbone(_name, **BACKBONE_FACTS[_name])(_tiny(_name, _stride))
del _name, _stride
