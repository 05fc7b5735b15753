"""The device must see the pixels the model was trained and validated on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdefect.edge.preprocess import ImagePolicy, ImageRejected, load_image, prepare, resize_bilinear, rgb_to_gray


@pytest.mark.parametrize(("src", "dst"), [((200, 200), (224, 224)), ((200, 200), (64, 64)), ((200, 200), (128, 96)),
                                          ((37, 53), (48, 48)), ((480, 640), (224, 224))])
def test_resize_is_bit_exact_with_tf_antialiased_bilinear(src, dst):
    from kdefect.keras import tf

    x = np.random.default_rng(0).integers(0, 256, (*src, 3)).astype(np.uint8)
    ref = tf.image.resize(x, dst, method="bilinear", antialias=True).numpy()
    np.testing.assert_array_equal(resize_bilinear(x, dst), ref)


def test_gray_conversion_matches_tf():
    from kdefect.keras import tf

    x = np.random.default_rng(1).integers(0, 256, (17, 19, 3)).astype(np.uint8)
    np.testing.assert_array_equal(rgb_to_gray(x), tf.image.rgb_to_grayscale(x).numpy())


@pytest.mark.neu
@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("size", [(200, 200), (224, 224), (64, 64)])
def test_matches_training_pipeline_on_neu(size, channels):
    """Decode (JPEG fast DCT) + resize + round: identical to kdefect.data.pipeline.load_images on NEU files."""
    from kdefect.data.neu import neu_dir
    from kdefect.data.pipeline import load_images

    root = neu_dir()
    if root is None:
        pytest.skip("NEU-DET not found (set KDEFECT_NEU_DIR or place it at ../shared/datasets/neu-det)")
    files = sorted((root / "images").glob("*.jpg"))[::300]
    ref = load_images([str(f) for f in files], size, channels)
    mine = np.stack([prepare(load_image(f, channels), size, channels) for f in files])
    np.testing.assert_array_equal(mine, ref.astype(np.float32))


def test_matches_training_pipeline_on_synthetic_png(synthetic_root):
    from kdefect.data.pipeline import load_images

    files = sorted(synthetic_root.rglob("*.png"))[:6]
    ref = load_images([str(f) for f in files], (48, 48), 3)
    mine = np.stack([prepare(load_image(f), (48, 48)) for f in files])
    np.testing.assert_array_equal(mine, ref.astype(np.float32))


@pytest.mark.parametrize(("kind", "reason"), [("truncated", "truncated"), ("text", "not an image"),
                                              ("empty", r"empty \(0 bytes\)"), ("gray", "grayscale"),
                                              ("rgba", "alpha channel")])
def test_bad_inputs_are_rejected_with_a_reason(bad_files, kind, reason):
    with pytest.raises(ImageRejected, match=reason):
        load_image(bad_files[kind])


def test_expect_size_and_convert_policy(bad_files):
    with pytest.raises(ImageRejected, match="20x24 but the line expects 32x32"):
        load_image(bad_files["small"], policy=ImagePolicy(expect_size=(32, 32)))
    gray = load_image(bad_files["gray"], policy=ImagePolicy(color="convert"))
    assert gray.shape[-1] == 3 and (gray[..., 0] == gray[..., 2]).all()  # replicated like the training decoder
    rgba = load_image(bad_files["rgba"], policy=ImagePolicy(color="convert"))
    np.testing.assert_array_equal(rgba, np.asarray(Image.open(bad_files["rgba"]))[..., :3])  # alpha dropped
    assert load_image(bad_files["gray"], channels=1).shape[-1] == 3  # a grey model accepts grey input


def test_missing_file_and_camera_frames(tmp_path):
    with pytest.raises(ImageRejected, match="disappeared"):
        load_image(tmp_path / "gone.png")
    frame = np.zeros((40, 50, 3), np.uint8)
    assert load_image(frame).shape == (40, 50, 3)
    with pytest.raises(ImageRejected, match="alpha"):
        load_image(np.zeros((40, 50, 4), np.uint8))
