"""tf.data pipeline: shapes, dtypes, ranges, augmentation only when training, decode of every format."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdefect.config import AugmentConfig, DataConfig
from kdefect.data.pipeline import load_images, make_dataset, should_cache
from kdefect.data.sources import index_dataset

NO_AUG = AugmentConfig(flip=False, rot90=False, brightness=0.0, contrast=0.0, crop_min_area=1.0, noise_std=0.0)
ALL_AUG = AugmentConfig(flip=True, rot90=True, brightness=0.2, contrast=0.2, crop_min_area=0.5, noise_std=0.02)


@pytest.fixture(scope="module")
def syn_index(synthetic_root):
    return index_dataset(DataConfig(source=str(synthetic_root)))


def _ds(idx, training, aug=NO_AUG, **kw):
    cfg = DataConfig(image_size=[24, 24], resize="squash", batch_size=8, augment=aug, **kw)
    return make_dataset(idx.paths, idx.labels, idx.num_classes, cfg, training=training, seed=0)


def test_shapes_dtypes_range(syn_index):
    batches = list(_ds(syn_index, False))
    x, y = batches[0]
    assert x.shape == (8, 24, 24, 3) and x.dtype.name == "float32"
    assert y.shape == (8, 5) and y.dtype.name == "float32"
    allx = np.concatenate([b[0].numpy() for b in batches])
    ally = np.concatenate([b[1].numpy() for b in batches])
    assert len(allx) == len(syn_index) == 60  # eval keeps the remainder
    assert allx.min() >= 0 and allx.max() <= 255 and allx.max() > 1  # 0..255, not 0..1
    np.testing.assert_array_equal(ally.argmax(1), syn_index.labels)  # eval keeps order
    np.testing.assert_array_equal(ally.sum(1), 1)


def test_training_drops_remainder_and_shuffles(syn_index):
    ds = _ds(syn_index, True)
    ys = [b[1].numpy() for b in ds]
    assert all(len(y) == 8 for y in ys) and len(ys) == 60 // 8
    order1 = np.concatenate(ys).argmax(1)
    order2 = np.concatenate([b[1].numpy() for b in ds]).argmax(1)
    assert not np.array_equal(order1, order2)  # reshuffled each epoch
    again = np.concatenate([b[1].numpy() for b in _ds(syn_index, True)]).argmax(1)
    np.testing.assert_array_equal(order1, again)  # but seeded


def test_augmentation_only_in_training(syn_index):
    plain = np.concatenate([b[0].numpy() for b in _ds(syn_index, False)])
    evald = np.concatenate([b[0].numpy() for b in _ds(syn_index, False, ALL_AUG)])
    np.testing.assert_array_equal(plain, evald)
    sub = syn_index.subset(np.arange(8))
    cfg = DataConfig(image_size=[24, 24], resize="squash", batch_size=8, augment=ALL_AUG, cache="none")
    plain8 = np.concatenate([b[0].numpy() for b in _ds(sub, False)])
    ((x, _),) = list(make_dataset(sub.paths, sub.labels, 5, cfg, training=True, seed=0))
    x = x.numpy()
    # the training batch is shuffled, so compare against every clean image: none survives unchanged
    assert x.shape == plain8.shape and x.min() >= 0 and x.max() <= 255
    assert not any(np.allclose(x[i], plain8[j]) for i in range(8) for j in range(8))


def test_no_aug_training_is_identity(syn_index):
    sub = syn_index.subset(np.arange(8))
    plain = {tuple(v.ravel()[:16]) for v in np.concatenate([b[0].numpy() for b in _ds(sub, False)])}
    train = {tuple(v.ravel()[:16]) for v in np.concatenate([b[0].numpy() for b in _ds(sub, True)])}
    assert plain == train


def test_formats_modes_and_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    files = {
        "a.png": Image.fromarray(rgb), "b.jpg": Image.fromarray(rgb), "c.bmp": Image.fromarray(rgb),
        "d.tif": Image.fromarray(rgb), "e.png": Image.fromarray(grey), "f.tiff": Image.fromarray(grey),
        "g.png": Image.fromarray(np.dstack([rgb, np.full((20, 30), 7, np.uint8)])),
        "h.bmp": Image.fromarray(grey),
    }
    paths = []
    for name, im in files.items():
        im.save(tmp_path / name)
        paths.append(str(tmp_path / name))
    out = load_images(paths, (16, 24), 3)
    assert out.shape == (8, 16, 24, 3) and out.dtype == np.uint8
    lossless = {n: out[i] for i, n in enumerate(files) if not n.endswith("jpg")}
    np.testing.assert_array_equal(lossless["a.png"], lossless["d.tif"])  # TIFF (Pillow) == PNG (TF)
    np.testing.assert_array_equal(lossless["a.png"], lossless["g.png"])  # alpha dropped
    np.testing.assert_array_equal(lossless["a.png"], lossless["c.bmp"])
    for n in ("e.png", "f.tiff", "h.bmp"):  # grey replicated to 3 equal channels
        assert (lossless[n][..., 0] == lossless[n][..., 2]).all()
    np.testing.assert_array_equal(lossless["e.png"], lossless["f.tiff"])
    one = load_images(paths[:2], (16, 24), 1)
    assert one.shape == (2, 16, 24, 1)


def test_pipeline_matches_load_images_and_pillow(syn_index):
    cfg = DataConfig(image_size=[20, 20], resize="squash", batch_size=4, cache="none")
    piped = np.concatenate([b[0].numpy() for b in make_dataset(syn_index.paths[:8], syn_index.labels[:8], 5, cfg,
                                                                 training=False)])
    ref = load_images(syn_index.paths[:8], (20, 20))
    np.testing.assert_array_equal(piped, ref.astype(np.float32))
    pil = np.stack([np.asarray(Image.open(p).convert("RGB").resize((20, 20), Image.BILINEAR))
                    for p in syn_index.paths[:8]]).astype(int)
    assert np.abs(pil - ref).mean() < 1.5 and np.abs(pil - ref).max() <= 8  # TF-free runtimes can use Pillow


def test_cache_decision():
    assert should_cache(1000, DataConfig(cache="auto", image_size=[64, 64]))
    assert not should_cache(10**7, DataConfig(cache="auto", image_size=[224, 224]))
    assert should_cache(10**7, DataConfig(cache="memory"))
    assert not should_cache(10, DataConfig(cache="none"))


def test_load_dataset_api(synthetic_root):
    from kdefect.data import load_dataset

    tr, va, te, idx = load_dataset(str(synthetic_root), image_size=(16, 16), batch_size=4)
    n = [sum(int(b[1].shape[0]) for b in d) for d in (va, te)]
    assert n == [10, 10] and idx.num_classes == 5
    x, y = next(iter(tr))
    assert x.shape == (4, 16, 16, 3) and y.shape == (4, 5)
