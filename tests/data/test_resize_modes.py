"""data.resize (squash | letterbox | crop): host tf.data pipeline == TF-free device runtime, bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from kdefect.config import DataConfig
from kdefect.core.sidecar import InputSpec, Sidecar
from kdefect.data.pipeline import load_images, make_dataset, tf_crop_box, tf_letterbox_size
from kdefect.edge.preprocess import ImagePolicy, crop_box, letterbox_size, load_image, prepare, resize_mode
from kdefect.errors import ConfigError
from kdefect.keras import tf

MODES = ("squash", "letterbox", "crop")
SHAPES = [(37, 211), (211, 37), (64, 64), (100, 50), (4, 9), (33, 20)]
SIZE = (24, 32)
CONVERT = ImagePolicy(color="convert")  # grey files too, converted like the training decoder


def _write(folder, h, w, grey, seed):
    rng = np.random.default_rng(seed)
    if grey:
        arr, mode = rng.integers(0, 256, (h, w), dtype=np.uint8), "L"
    else:
        arr, mode = rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB"
    path = folder / f"img_{h}x{w}_{'L' if grey else 'RGB'}.png"
    Image.fromarray(arr, mode).save(path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resize")
    return [_write(folder, h, w, grey, i) for i, ((h, w), grey) in enumerate(itertools.product(SHAPES, (False, True)))]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("mode", MODES)
def test_host_equals_device_bit_exact(files, mode, channels):
    host = load_images(files, SIZE, channels, resize=mode)
    device = np.stack([prepare(load_image(f, channels, CONVERT), SIZE, channels, resize=mode) for f in files])
    assert host.shape == device.shape == (len(files), *SIZE, channels)
    np.testing.assert_array_equal(host, device.astype(np.uint8))
    assert np.array_equal(host.astype(np.float32), device)


def test_integer_helpers_match_tf_ops():
    hs = np.array([4, 5, 7, 9, 16, 33, 37, 64, 100, 211, 480, 1023], np.int64)
    targets = [(8, 8), (24, 32), (32, 24), (64, 64), (96, 160), (224, 224), (13, 7)]
    for height, width in targets:
        h, w = np.meshgrid(hs, hs, indexing="ij")
        h, w = h.ravel(), w.ravel()
        nh, nw = (t.numpy() for t in tf_letterbox_size(tf.constant(h), tf.constant(w), height, width))
        box = [t.numpy() for t in tf_crop_box(tf.constant(h), tf.constant(w), height, width)]
        for i in range(len(h)):
            assert letterbox_size(h[i], w[i], height, width) == (nh[i], nw[i])
            assert crop_box(h[i], w[i], height, width) == tuple(b[i] for b in box)


@pytest.mark.parametrize("h,w", [(37, 211), (211, 37), (64, 64), (100, 50), (4, 9), (1000, 3)])
def test_letterbox_size_keeps_aspect(h, w):
    height, width = SIZE
    nh, nw = letterbox_size(h, w, height, width)
    assert 1 <= nh <= height and 1 <= nw <= width and (nh == height or nw == width)
    scale = min(height / h, width / w)
    for got, exact in ((nh, h * scale), (nw, w * scale)):
        assert abs(got - exact) <= 0.5 + 1e-9 or (got == 1 and exact < 1)  # rounded, never below 1 px
    top, left, ch, cw = crop_box(h, w, height, width)
    assert top >= 0 and left >= 0 and top + ch <= h and left + cw <= w and (ch == h or cw == w)
    assert abs(ch / cw - height / width) <= max(1 / cw, height / width / cw) + 1e-9  # target aspect, to a pixel


def test_letterbox_pads_with_zeros_where_expected(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((20, 80, 3), 200, np.uint8)).save(path)  # 1:4 into 32x32 -> 8 rows x 32 cols
    (img,) = load_images([str(path)], (32, 32), resize="letterbox")
    assert letterbox_size(20, 80, 32, 32) == (8, 32)
    assert (img[:12] == 0).all() and (img[20:] == 0).all()
    assert (img[12:20] == 200).all()


def test_crop_with_target_aspect_equals_squash(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "same_aspect.png"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)  # 3:4 like (24, 32)
    crop, squash = (load_images([str(path)], SIZE, resize=m) for m in ("crop", "squash"))
    np.testing.assert_array_equal(crop, squash)
    assert crop_box(48, 64, *SIZE) == (0, 0, 48, 64)


def test_crop_keeps_the_centre(tmp_path):
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, 20:40] = 255  # the centred 20x20 square is white, the sides black
    path = tmp_path / "centre.png"
    Image.fromarray(arr).save(path)
    (img,) = load_images([str(path)], (10, 10), resize="crop")
    assert crop_box(20, 60, 10, 10) == (0, 20, 20, 20)
    assert (img == 255).all()


def test_squash_unchanged(files):
    for channels in (3, 1):
        got = load_images(files, SIZE, channels)  # default: squash
        for f, g in zip(files, got):
            rgb = np.asarray(Image.open(f).convert("RGB"))
            ref = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(rgb, SIZE, "bilinear", antialias=True)), 0, 255),
                          tf.uint8)
            if channels == 1:
                ref = tf.image.rgb_to_grayscale(ref)
            np.testing.assert_array_equal(g, ref.numpy())


def test_old_sidecar_reads_as_squash():
    d = Sidecar(sha256="x", task="classify", labels=["a"], input=InputSpec(size=[8, 8])).to_dict()
    del d["input"]["resize"]
    assert Sidecar.from_dict(d).input.resize == "squash"
    assert InputSpec(size=[8, 8], resize="letterbox").resize == "letterbox"


def test_resize_mode_of_old_configs():
    assert resize_mode(DataConfig()) == "squash"  # a config.yaml without the key reads as "auto"
    assert resize_mode(DataConfig(resize="crop")) == "crop"
    assert resize_mode(object()) == "squash"


@pytest.mark.parametrize("key", ["image_size", "resize"])
def test_make_dataset_refuses_auto(key):
    kw = {"image_size": [16, 16], "resize": "squash", key: "auto"}
    with pytest.raises(ConfigError, match="resolve_auto"):
        make_dataset(["a.png"], [0], 2, DataConfig(**kw), training=False)


def test_unknown_mode_refused():
    with pytest.raises(ConfigError):
        prepare(np.zeros((8, 8, 3), np.uint8), (4, 4), resize="stretch")
    with pytest.raises(ConfigError):
        load_images(["a.png"], (4, 4), resize="auto")


def test_grey_conversion_matches_tf_sum_order():
    """BLAS ``@`` (fused multiply-add) gave 93 / 132 where TF gives 92 / 133: the device now sums like TF."""
    from kdefect.edge.preprocess import rgb_to_gray

    x = np.concatenate([np.array([[[190, 27, 177], [103, 143, 158]]], np.uint8),
                        np.random.default_rng(0).integers(0, 256, (1, 200_000, 3), dtype=np.uint8)], axis=1)
    np.testing.assert_array_equal(rgb_to_gray(x), tf.image.rgb_to_grayscale(x).numpy())


def test_old_config_yaml_without_resize_loads_as_squash():
    import yaml

    from kdefect.config import config_from_dict

    cfg = config_from_dict(yaml.safe_load("task: classify\ndata:\n  image_size: [32, 32]\n  channels: 3\n"))
    assert cfg.data.resize == "auto" and resize_mode(cfg.data) == "squash"


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_detection_supports_squash_only(mode):
    from kdefect.config import Config
    from kdefect.tasks.detect import input_size

    cfg = Config()
    cfg.task, cfg.data.image_size = "detect", [64, 64]
    assert input_size(cfg) == (64, 64)  # auto: squash
    cfg.data.resize = mode
    with pytest.raises(ConfigError, match="detection supports squash only"):
        input_size(cfg)
